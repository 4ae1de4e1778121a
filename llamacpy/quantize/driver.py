"""llama_model_quantize: read a GGUF, choose each tensor's type, convert, write the new GGUF.

Tensors go in llama.cpp's order (the other tensors by name, then blk.0, blk.1 ... each by name); metadata
is copied entry for entry (raw bytes, so types and tokenizer arrays are untouched), then
general.quantization_version = 2 and general.file_type = the new ftype are set, split keys dropped.
A tensor that changes type is dequantized to f32 (as ggml's to_float) and quantized row by row; one that
keeps its type is copied. The file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gguf import GGMLType, GGUFError, GGUFFile, Tensor
from ..gguf.constants import DEFAULT_ALIGNMENT
from ..gguf.writer import GGUFStreamWriter, TensorInfo, kv_u32
from ..kernels.quantizers import NO_WEIGHTS, QUANTIZERS, quantize_rows, row_bytes
from .ftypes import DEFAULT_TYPE, GUESS_FTYPE, SUPPORTED, QuantizeError, type_name
from .policy import ModelFacts, QuantizeParams, TypeChooser, is_quantized, requires_imatrix

QNT_VERSION = 2  # GGML_QNT_VERSION
DROPPED_KEYS = ("split.no", "split.count", "split.tensors.count")
SLAB_BYTES = 64 << 20  # f32 bytes converted at a time: bounds memory on large tensors
# Fewer elements than this are converted on one thread: waking numba's pool costs more than the work
# (measured on 2 busy cores: a 0.9M-element Q4_1 -> Q8_0 tensor took 1 ms on one thread, 13 ms on two).
PARALLEL_MIN_ELEMS = 1 << 21


def _log(msg: str, end: str = "\n") -> None:
    print(msg, end=end, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class QuantizeResult:
    n_tensors: int
    size_in: int  # tensor bytes, before and after
    size_out: int
    n_elements: int
    n_fallback: int
    seconds: float


def tensor_order(names: list[str]) -> list[str]:
    """llama-model-loader's weights_map order: layer number (none = -1) first, then the name."""

    def key(name: str) -> tuple[int, str]:
        m = re.match(r"blk\.(-?\d+)\.", name)
        return (int(m.group(1)) if m else -1, name)

    return sorted(names, key=key)


def file_ftype(g: GGUFFile) -> int:
    """The input's llama_ftype: general.file_type, else guessed from its most common tensor type."""
    if "general.file_type" in g.metadata:
        return int(g.metadata["general.file_type"])
    most = Counter(t.type for t in g.tensors.values()).most_common(1)
    return GUESS_FTYPE.get(most[0][0], 0) if most else 0


def ne_of(t: Tensor) -> tuple[int, ...]:
    return tuple(reversed(t.shape))


def _mib(n: int) -> float:
    return n / 1024.0 / 1024.0


def _shape(ne: tuple[int, ...]) -> str:
    return ", ".join(f"{d:6d}" for d in (*ne, 1, 1, 1, 1)[:4])


def open_input(path: str | os.PathLike) -> GGUFFile:
    try:
        return GGUFFile(path)
    except GGUFError as e:
        raise QuantizeError(f"failed to read the input: {e}") from None


def quantize_file(inp: str | os.PathLike, out: str | os.PathLike | None, p: QuantizeParams,
                  log: Callable[..., None] = _log) -> QuantizeResult:
    """Quantize GGUF `inp` into `out` (None with p.dry_run) as llama-quantize does; progress goes to `log`."""
    t0 = time.perf_counter()
    g = open_input(inp)
    ftype = file_ftype(g) if p.only_copy else p.ftype
    default = DEFAULT_TYPE.get(ftype)
    if default is None and not p.only_copy:
        raise QuantizeError(f"file type {ftype} is not supported; supported: {', '.join(SUPPORTED)}")
    if p.imatrix:
        log(f"\nllama_model_quantize_impl: have importance matrix data with {len(p.imatrix)} entries")
    names = tensor_order(list(g.tensors))
    chooser = TypeChooser(p, default or GGMLType.F32, ModelFacts.from_metadata(g.metadata), names,
                          lambda m: log(m), has_imatrix=bool(p.imatrix))
    targets = {n: chooser.choose(n, g.tensors[n].type, ne_of(g.tensors[n])) for n in names}
    _check(g, targets, p, ftype)
    infos = [TensorInfo(n, ne_of(g.tensors[n]), targets[n], g.tensors[n].data.shape[0]
                        * row_bytes(targets[n], g.tensors[n].shape[-1])) for n in names]
    n_threads = _threads(p.nthread)
    if p.dry_run:
        for i, info in enumerate(infos, 1):
            _report_dry(log, i, len(infos), g.tensors[info.name], info)
    else:
        _write(g, Path(out), infos, ftype, n_threads, log, p)
    size_in = sum(g.tensors[n].data.nbytes for n in names)
    size_out = sum(i.nbytes for i in infos)
    n_el = sum(g.tensors[n].n_elements for n in names)
    log(f"llama_model_quantize_impl: model size  = {_mib(size_in):8.2f} MiB ({size_in * 8.0 / n_el:.2f} BPW)")
    log(f"llama_model_quantize_impl: quant size  = {_mib(size_out):8.2f} MiB ({size_out * 8.0 / n_el:.2f} BPW)")
    if chooser.n_fallback:
        log(f"llama_model_quantize_impl: WARNING: {chooser.n_fallback} of {len(names)} tensor(s) required "
            f"fallback quantization")
    g.close()
    return QuantizeResult(len(names), size_in, size_out, n_el, chooser.n_fallback, time.perf_counter() - t0)


def _check(g: GGUFFile, targets: dict[str, GGMLType], p: QuantizeParams, ftype: int) -> None:
    """Refuse before writing anything: requantizing without the flag, types llamacpy cannot convert, a file
    type that needs an importance matrix without one."""
    from ..kernels import KERNELS

    for name, new in targets.items():
        cur = g.tensors[name].type
        if cur == new:
            continue
        if not p.imatrix and not p.dry_run and requires_imatrix(name, new, ftype):
            raise QuantizeError(f"this quantization requires an imatrix! (offending tensor: {name}, target type: "
                                f"{type_name(new)}; `llamacpy imatrix -m MODEL -f TEXT` makes one)")
        if is_quantized(cur) and not p.allow_requantize:
            raise QuantizeError(f"failed to quantize: requantizing from type {type_name(cur)} is disabled "
                                f"({name}; --allow-requantize allows it, at some loss of quality)")
        if cur not in KERNELS:
            raise QuantizeError(f"{name}: cannot dequantize type {type_name(cur)}")
        if new not in QUANTIZERS and not p.dry_run:
            hint = ""
            kinds = ", ".join(type_name(t) for t in QUANTIZERS)
            raise QuantizeError(f"{name}: llamacpy cannot quantize to {type_name(new)} yet{hint}; "
                                f"tensor types it can write: {kinds}")


def _threads(n: int) -> int:
    """The thread count to use: n, or every CPU for n <= 0 (as llama-quantize), within numba's pool."""
    import numba

    if n <= 0:
        n = os.cpu_count() or 1
    return max(1, min(n, numba.config.NUMBA_NUM_THREADS))


def _report_dry(log, i: int, n: int, t: Tensor, info: TensorInfo) -> None:
    head = f"[{i:4d}/{n:4d}] {t.name:<36s} - [{_shape(info.ne)}], type = {type_name(t.type):>6s}, "
    if info.type != t.type:
        log(head + f"size = {_mib(t.data.nbytes):8.2f} MiB -> {_mib(info.nbytes):8.2f} MiB "
                   f"({type_name(info.type)})")
    else:
        log(head + f"size = {_mib(t.data.nbytes):8.3f} MiB")


def _kvs(g: GGUFFile, ftype: int, extra: list[bytes]) -> list[bytes]:
    """The input's entries, then quantization_version and file_type, then the --imatrix overrides (each new key
    goes last, as gguf_set_val removes and appends)."""
    keys = [k for k in g.metadata if k not in {"general.quantization_version", "general.file_type", *DROPPED_KEYS}]
    extra_keys = {e[8 : 8 + int.from_bytes(e[:8], "little")].decode() for e in extra}
    kvs = [g.raw_kv(k) for k in keys if k not in extra_keys]
    return [*kvs, kv_u32("general.quantization_version", QNT_VERSION), kv_u32("general.file_type", ftype), *extra]


def _importance(p: QuantizeParams, t: Tensor, log) -> np.ndarray | None:
    """The tensor's imatrix entry, as llama_model_quantize_impl looks it up (a wrong size is an error but for
    the token embedding, which is then quantized without)."""
    if not p.imatrix:
        return None
    qw = p.imatrix.get(t.name)
    if qw is None:
        log(f"\n====== llama_model_quantize_impl: did not find weights for {t.name}")
        return None
    n_mat = t.shape[0] if len(t.shape) == 3 else 1
    if qw.size != t.shape[-1] * n_mat:
        msg = f"imatrix size {qw.size} is different from tensor size {t.shape[-1] * n_mat} for {t.name}"
        log(f"\n====== llama_model_quantize_impl: {msg}")
        if t.name not in ("token_embd.weight", "per_layer_token_embd.weight"):
            raise QuantizeError(msg)
        return None
    return qw


def _write(g: GGUFFile, out: Path, infos: list[TensorInfo], ftype: int, n_threads: int, log,
           p: QuantizeParams) -> None:
    align = int(g.metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            w = GGUFStreamWriter(fh, _kvs(g, ftype, p.imatrix_kvs), infos, align)
            for i, info in enumerate(infos, 1):
                t = g.tensors[info.name]
                head = f"[{i:4d}/{len(infos):4d}] {t.name:<36s} - [{_shape(info.ne)}], type = {type_name(t.type):>6s}, "
                if info.type == t.type:
                    log(head + f"size = {_mib(t.data.nbytes):8.3f} MiB")
                    w.write_tensor_data(memoryview(t.data.reshape(-1)))
                    continue
                qw = _importance(p, t, log)
                log(head + f"converting to {type_name(info.type)} .. ", end="")
                for chunk in convert_rows(t, info.type, n_threads, qw):
                    w.write_tensor_data(memoryview(chunk.reshape(-1)))
                log(f"size = {_mib(t.data.nbytes):8.2f} MiB -> {_mib(info.nbytes):8.2f} MiB")
            w.close()
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def convert_rows(t: Tensor, new: GGMLType, n_threads: int = 1, qw: np.ndarray | None = None):
    """Yield `t`'s rows converted to `new` (u8 blocks), a slab of rows at a time: f32 from ggml's to_float
    (bit-exact, llamacpy.kernels), then the row quantizer, on `n_threads` threads for large slabs. `qw`: the
    importance of each column, one run of ne0 per expert matrix (slabs stop at an expert's last row)."""
    import numba

    from ..kernels import kernels_for
    from ..kernels._common import F16_TO_F32

    n_rows, n = t.data.shape[0], t.shape[-1]
    per_mat = t.shape[-2] if len(t.shape) == 3 else n_rows
    slab = max(1, min(per_mat, SLAB_BYTES // (4 * n)))
    x = np.empty((slab, n), np.float32)
    dequant = kernels_for(t.type).dequant_rows
    r0 = 0
    while r0 < n_rows:
        rows = t.data[r0 : min(r0 + slab, (r0 // per_mat + 1) * per_mat)]
        weights = NO_WEIGHTS if qw is None else qw[(r0 // per_mat) * n : (r0 // per_mat + 1) * n]
        r0 += rows.shape[0]
        numba.set_num_threads(n_threads if rows.shape[0] * n >= PARALLEL_MIN_ELEMS else 1)
        if t.type == GGMLType.F32:
            xs = rows.view(np.float32)
        else:
            xs = x[: rows.shape[0]]
            dequant(rows, np.arange(rows.shape[0]), xs, F16_TO_F32)
        out = np.empty((rows.shape[0], row_bytes(new, n)), np.uint8)
        quantize_rows(QUANTIZERS[new], xs, out, weights)
        yield out


def default_output(inp: str, ftype_name: str) -> str:
    """llama-quantize's output name when none is given: [input's folder]/ggml-model-[TYPE].gguf."""
    return os.path.join(os.path.dirname(inp), f"ggml-model-{ftype_name}.gguf")
