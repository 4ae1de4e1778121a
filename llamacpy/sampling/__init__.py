"""Sampling: parameters and the seeded sampler chain."""

from .chain import Sampler, SamplingParams

__all__ = ["Sampler", "SamplingParams"]
