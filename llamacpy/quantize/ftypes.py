"""llama-quantize's file types (llama_ftype): names, ids, descriptions, and the GGML type each one means.

QUANT_OPTIONS is llama.cpp's table (tools/quantize/quantize.cpp) in its order; SUPPORTED names the ones
llamacpy can write bit for bit as ggml's reference quantizers do.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gguf import GGMLType


class QuantizeError(ValueError):
    """A quantization that cannot be done; the message says why (and what would work)."""


@dataclass(frozen=True)
class QuantOption:
    name: str
    ftype: int
    desc: str


QUANT_OPTIONS = [
    QuantOption("Q1_0", 40, " 1.125 bpw quantization"),
    QuantOption("Q2_0", 41, " 2.25 bpw quantization (group 64)"),
    QuantOption("Q4_0", 2, " 4.34G, +0.4685 ppl @ Llama-3-8B"),
    QuantOption("Q4_1", 3, " 4.78G, +0.4511 ppl @ Llama-3-8B"),
    QuantOption("MXFP4_MOE", 38, " MXFP4 MoE"),
    QuantOption("Q5_0", 8, " 5.21G, +0.1316 ppl @ Llama-3-8B"),
    QuantOption("Q5_1", 9, " 5.65G, +0.1062 ppl @ Llama-3-8B"),
    QuantOption("IQ2_XXS", 19, " 2.06 bpw quantization"),
    QuantOption("IQ2_XS", 20, " 2.31 bpw quantization"),
    QuantOption("IQ2_S", 28, " 2.5  bpw quantization"),
    QuantOption("IQ2_M", 29, " 2.7  bpw quantization"),
    QuantOption("IQ1_S", 24, " 1.56 bpw quantization"),
    QuantOption("IQ1_M", 31, " 1.75 bpw quantization"),
    QuantOption("TQ1_0", 36, " 1.69 bpw ternarization"),
    QuantOption("TQ2_0", 37, " 2.06 bpw ternarization"),
    QuantOption("Q2_K", 10, " 2.96G, +3.5199 ppl @ Llama-3-8B"),
    QuantOption("Q2_K_S", 21, " 2.96G, +3.1836 ppl @ Llama-3-8B"),
    QuantOption("IQ3_XXS", 23, " 3.06 bpw quantization"),
    QuantOption("IQ3_S", 26, " 3.44 bpw quantization"),
    QuantOption("IQ3_M", 27, " 3.66 bpw quantization mix"),
    QuantOption("Q3_K", 12, "alias for Q3_K_M"),
    QuantOption("IQ3_XS", 22, " 3.3 bpw quantization"),
    QuantOption("Q3_K_S", 11, " 3.41G, +1.6321 ppl @ Llama-3-8B"),
    QuantOption("Q3_K_M", 12, " 3.74G, +0.6569 ppl @ Llama-3-8B"),
    QuantOption("Q3_K_L", 13, " 4.03G, +0.5562 ppl @ Llama-3-8B"),
    QuantOption("IQ4_NL", 25, " 4.50 bpw non-linear quantization"),
    QuantOption("IQ4_XS", 30, " 4.25 bpw non-linear quantization"),
    QuantOption("Q4_K", 15, "alias for Q4_K_M"),
    QuantOption("Q4_K_S", 14, " 4.37G, +0.2689 ppl @ Llama-3-8B"),
    QuantOption("Q4_K_M", 15, " 4.58G, +0.1754 ppl @ Llama-3-8B"),
    QuantOption("Q5_K", 17, "alias for Q5_K_M"),
    QuantOption("Q5_K_S", 16, " 5.21G, +0.1049 ppl @ Llama-3-8B"),
    QuantOption("Q5_K_M", 17, " 5.33G, +0.0569 ppl @ Llama-3-8B"),
    QuantOption("Q6_K", 18, " 6.14G, +0.0217 ppl @ Llama-3-8B"),
    QuantOption("Q8_0", 7, " 7.96G, +0.0026 ppl @ Llama-3-8B"),
    QuantOption("F16", 1, "14.00G, +0.0020 ppl @ Mistral-7B"),
    QuantOption("BF16", 32, "14.00G, -0.0050 ppl @ Mistral-7B"),
    QuantOption("F32", 0, "26.00G              @ 7B"),
    # after F32, so that ftype 0 finds F32
    QuantOption("COPY", 0, "only copy tensors, no quantizing"),
]

# llama_ftype -> the GGML type of its tensors (llama_ftype_get_default_type), for the file types llamacpy writes
DEFAULT_TYPE = {
    0: GGMLType.F32,
    1: GGMLType.F16,
    2: GGMLType.Q4_0,
    3: GGMLType.Q4_1,
    7: GGMLType.Q8_0,
    8: GGMLType.Q5_0,
    9: GGMLType.Q5_1,
    10: GGMLType.Q2_K,
    21: GGMLType.Q2_K,  # Q2_K_S
    11: GGMLType.Q3_K,
    12: GGMLType.Q3_K,
    13: GGMLType.Q3_K,
    14: GGMLType.Q4_K,
    15: GGMLType.Q4_K,
    16: GGMLType.Q5_K,
    17: GGMLType.Q5_K,
    18: GGMLType.Q6_K,
    25: GGMLType.IQ4_NL,
    30: GGMLType.IQ4_XS,
    32: GGMLType.BF16,
}
SUPPORTED = [o.name for o in QUANT_OPTIONS if o.ftype in DEFAULT_TYPE]

# the GGML type of most tensors -> llama_ftype, as llama-model-loader guesses a file type without the key
GUESS_FTYPE = {GGMLType.F32: 0, GGMLType.F16: 1, GGMLType.BF16: 32, GGMLType.Q4_0: 2, GGMLType.Q4_1: 3,
               GGMLType.Q5_0: 8, GGMLType.Q5_1: 9, GGMLType.Q8_0: 7, GGMLType.Q2_K: 10, GGMLType.Q3_K: 12,
               GGMLType.Q4_K: 15, GGMLType.Q5_K: 17, GGMLType.Q6_K: 18, GGMLType.IQ4_NL: 25,
               GGMLType.IQ4_XS: 30}


def parse_ftype(text: str) -> QuantOption | None:
    """A TYPE argument (a name in any case, or the numeric ftype) -> its option, or None (llama.cpp's
    try_parse_ftype: the first option of that id wins, so 0 is F32, not COPY)."""
    for o in QUANT_OPTIONS:
        if o.name.lower() == text.lower():
            return o
    try:
        n = int(text)
    except ValueError:
        return None
    return next((o for o in QUANT_OPTIONS if o.ftype == n), None)


def type_name(t: GGMLType) -> str:
    """ggml_type_name: "f16", "q8_0", "q6_K" ..."""
    name = GGMLType(t).name.lower()
    return name[:-2] + "_K" if name.endswith("_k") else name


def parse_ggml_type(text: str) -> GGMLType:
    """A GGML type name as --output-tensor-type takes it (case-insensitive, e.g. q8_0, f16)."""
    for t in GGMLType:
        if t.name.lower() == text.lower():
            return t
    raise QuantizeError(f"invalid ggml_type '{text}'")


def usage_types() -> str:
    """The allowed-types list as llama-quantize prints it ("  %2d  or  %-7s : desc"), marking support."""
    lines = []
    for o in QUANT_OPTIONS:
        mark = "" if o.name in SUPPORTED else "   (not in llamacpy yet)"
        head = f"  {o.ftype:2d}  or  " if o.name != "COPY" else "          "
        lines.append(f"{head}{o.name:<7s} : {o.desc}{mark}")
    return "\n".join(lines)
