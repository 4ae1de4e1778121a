"""`llamacpy quantize [opts] in.gguf [out.gguf] TYPE [nthreads]`: llama-quantize, its flags and output lines."""

from __future__ import annotations

import argparse
import os
import sys
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..quantize.ftypes import usage_types

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "allowed quantization types:\n" + usage_types()
    p.add_argument("args", nargs="+", metavar="in.gguf [out.gguf] TYPE [nthreads]",
                   help="TYPE is a name or numeric ftype (below); out.gguf defaults to ggml-model-TYPE.gguf "
                        "beside the input; nthreads defaults to all CPUs")
    p.add_argument("--allow-requantize", action="store_true",
                   help="allow requantizing tensors that have already been quantized (loses quality)")
    p.add_argument("--leave-output-tensor", action="store_true", help="leave output.weight un(re)quantized")
    p.add_argument("--pure", action="store_true",
                   help="quantize all tensors to the same type (no output/embedding type rules)")
    p.add_argument("--output-tensor-type", metavar="TYPE", help="use this ggml_type for output.weight")
    p.add_argument("--token-embedding-type", metavar="TYPE", help="use this ggml_type for token_embd.weight")
    p.add_argument("--tensor-type", action="append", default=[], metavar="NAME=TYPE",
                   help="quantize tensors whose name matches the regex NAME to TYPE (repeatable)")
    p.add_argument("--tensor-type-file", metavar="FILE", help="NAME=TYPE entries, whitespace-separated")
    p.add_argument("--dry-run", action="store_true",
                   help="calculate and show the final quantization size without quantizing")
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix (llamacpy imatrix or llama-imatrix, GGUF or "
                   ".dat) for importance-weighted rounding")
    p.add_argument("--include-weights", action="append", default=[], metavar="NAME",
                   help="use the importance matrix only for tensors whose name contains NAME (repeatable)")
    p.add_argument("--exclude-weights", action="append", default=[], metavar="NAME",
                   help="do not use the importance matrix for tensors whose name contains NAME (repeatable)")


def parse_positionals(args: list[str], dry_run: bool):
    """llama-quantize's positionals -> (input, output, option, nthreads)."""
    from ..quantize import SUPPORTED, QuantizeError, default_output, parse_ftype

    if len(args) < 2 or len(args) > 4:
        raise QuantizeError("usage: llamacpy quantize [opts] in.gguf [out.gguf] TYPE [nthreads]")
    inp, rest = args[0], args[1:]
    opt = parse_ftype(rest[0])
    if opt is not None:
        out, rest = (None if dry_run else default_output(inp, opt.name)), rest[1:]
    else:
        if len(rest) < 2:
            raise QuantizeError(f"invalid ftype '{rest[0]}'; supported: {', '.join(SUPPORTED)}")
        out, opt, rest = rest[0], parse_ftype(rest[1]), rest[2:]
        if opt is None:
            raise QuantizeError(f"invalid ftype '{args[2]}'; supported: {', '.join(SUPPORTED)}")
    if opt.name not in SUPPORTED:
        raise QuantizeError(f"{opt.name} is not supported by llamacpy yet; supported: {', '.join(SUPPORTED)}")
    if len(rest) > 1:
        raise QuantizeError(f"unexpected arguments: {' '.join(rest[1:])}")
    try:
        nthread = int(rest[0]) if rest else 0
    except ValueError:
        raise QuantizeError(f"invalid nthread '{rest[0]}'") from None
    return inp, out, opt, nthread


def _tensor_types(a: argparse.Namespace) -> list:
    from ..quantize import QuantizeError
    from ..quantize.ftypes import parse_ggml_type

    entries = list(a.tensor_type)
    if a.tensor_type_file:
        with open(a.tensor_type_file, encoding="utf-8") as fh:
            entries += fh.read().split()
    out = []
    for e in entries:
        name, sep, typ = e.partition("=")
        if not sep or not name or not typ:
            raise QuantizeError(f"malformed tensor type '{e}' (expected NAME=TYPE)")
        out.append((name.lower(), parse_ggml_type(typ)))
    return out


def _strncpy127(s: str) -> str:
    """llama-quantize keeps 127 bytes of these strings (strncpy into a 128-byte override)."""
    return s.encode()[:127].decode("utf-8", "ignore")


def _imatrix(a: argparse.Namespace) -> tuple[dict | None, list[bytes]]:
    """prepare_imatrix: load, filter by --include/--exclude-weights, and the quantize.imatrix.* entries."""
    from ..gguf.constants import ValueType
    from ..gguf.writer import kv
    from ..quantize import QuantizeError
    from ..quantize.imatrix_file import load

    if a.include_weights and a.exclude_weights:
        raise QuantizeError("--include-weights and --exclude-weights cannot be used together")
    if not a.imatrix:
        return None, []
    m = load(a.imatrix)
    if m.datasets:
        print("load_imatrix: imatrix datasets=[" + ", ".join(f"'{d}'" for d in m.datasets) + "]")
    data = m.importance()
    print(f"load_imatrix: loaded {len(data)} importance matrix entries from {a.imatrix} computed on "
          f"{m.chunk_count} chunks")
    if a.exclude_weights:
        data = {k: v for k, v in data.items() if not any(x in k for x in a.exclude_weights)}
    if a.include_weights:
        data = {k: v for k, v in data.items() if any(x in k for x in a.include_weights)}
    if not data:
        return None, []
    kvs = [kv("quantize.imatrix.file", ValueType.STRING, _strncpy127(a.imatrix))]
    if m.datasets:
        kvs.append(kv("quantize.imatrix.dataset", ValueType.STRING, _strncpy127(m.datasets[0])))
    kvs.append(kv("quantize.imatrix.entries_count", ValueType.UINT32, len(data)))
    if m.chunk_count > 0:
        kvs.append(kv("quantize.imatrix.chunks_count", ValueType.UINT32, m.chunk_count))
    return data, kvs


def run(a: argparse.Namespace) -> int:
    from ..quantize import QuantizeError, QuantizeParams, quantize_file
    from ..quantize.ftypes import parse_ggml_type

    t0 = time.perf_counter()
    inp, out, opt, nthread = parse_positionals(a.args, a.dry_run)
    if out is not None and os.path.exists(out) and os.path.exists(inp) and os.path.samefile(inp, out):
        raise QuantizeError(f"input and output files are the same: '{inp}'")
    imatrix, imatrix_kvs = _imatrix(a)
    params = QuantizeParams(
        ftype=opt.ftype, nthread=nthread, allow_requantize=a.allow_requantize,
        quantize_output_tensor=not a.leave_output_tensor, only_copy=opt.name == "COPY", pure=a.pure,
        dry_run=a.dry_run, tensor_types=_tensor_types(a), imatrix=imatrix, imatrix_kvs=imatrix_kvs,
        output_tensor_type=parse_ggml_type(a.output_tensor_type) if a.output_tensor_type else None,
        token_embedding_type=parse_ggml_type(a.token_embedding_type) if a.token_embedding_type else None)
    threads = f" using {nthread} threads" if nthread > 0 else ""
    if a.dry_run:
        print(f"main: calculating quantization size for '{inp}' as {opt.name}{threads}", file=sys.stderr)
    else:
        print(f"main: quantizing '{inp}' to '{out}' as {opt.name}{threads}", file=sys.stderr)
    res = quantize_file(inp, out, params)
    print()
    print(f"main: quantize time = {res.seconds * 1000:8.2f} ms")
    print(f"main:    total time = {(time.perf_counter() - t0) * 1000:8.2f} ms")
    return 0
