"""llama-quantize: rewrite a GGUF model with its weights in another GGML type.

>>> quantize_file("model-f16.gguf", "model-q8_0.gguf", QuantizeParams(ftype=7, nthread=2))

- `ftypes`: llama.cpp's file types (Q8_0 = 7 ...), name parsing, the supported set
- `policy`: which tensors are quantized and to what (llama.cpp's rules)
- the row quantizers themselves: kernels/quantizers.py (numba; bit-exact with ggml's reference and gguf-py)
- `driver`: reading, converting, writing, progress
"""

from ..kernels.quantizers import quantize
from .driver import QuantizeResult, default_output, quantize_file
from .ftypes import QUANT_OPTIONS, SUPPORTED, QuantizeError, parse_ftype
from .policy import QuantizeParams

__all__ = ["QUANT_OPTIONS", "SUPPORTED", "QuantizeError", "QuantizeParams", "QuantizeResult", "default_output",
           "parse_ftype", "quantize", "quantize_file"]
