"""Model-agnostic transformer steps on float32 numpy arrays."""

from .attention import attention
from .basic import gelu_tanh, rms_norm, silu, softmax
from .rope import RopeTable

__all__ = ["RopeTable", "attention", "gelu_tanh", "rms_norm", "silu", "softmax"]
