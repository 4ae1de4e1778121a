"""Model-agnostic transformer steps on float32 numpy arrays."""

from .attention import attention
from .basic import geglu, gelu_tanh, relu_sqr, rms_norm, silu, softmax, swiglu
from .rope import RopeTable

__all__ = ["RopeTable", "attention", "geglu", "gelu_tanh", "relu_sqr", "rms_norm", "silu", "softmax", "swiglu"]
