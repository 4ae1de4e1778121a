"""Flags shared by several subcommands, declared once with llama.cpp's names."""

from __future__ import annotations

import argparse

from ..catalog import DEFAULT_MODEL
from ..engine.speculative import DraftParams
from ..ops.kv_quant import CACHE_TYPES, cache_type
from ..sampling import SamplingParams
from ..sampling.chain import sampler_names


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default=DEFAULT_MODEL,
                   help=f"GGUF file path or catalog name (default: {DEFAULT_MODEL}; pulled on first use)")


def add_runtime(p: argparse.ArgumentParser, ctx_default: int = 4096) -> None:
    p.add_argument("-t", "--threads", type=int, default=None, help="threads (default: physical cores)")
    p.add_argument("-c", "--ctx-size", type=int, default=ctx_default,
                   help=f"context size in tokens (default: {ctx_default}; 0 = the model's)")
    p.add_argument("-b", "--batch-size", type=int, default=512, help="prompt tokens per batch (default: 512)")
    for kv in ("k", "v"):
        p.add_argument(f"-ct{kv}", f"--cache-type-{kv}", type=_cache_type, default="f16", metavar="TYPE",
                       help=f"KV cache type for {kv.upper()}: {', '.join(CACHE_TYPES)} (default: f16)")


def _cache_type(name: str) -> str:
    """A -ctk/-ctv value, checked, as its lowercase name (the settings turn it into a GGML type)."""
    try:
        cache_type(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name.lower()


def add_draft(p: argparse.ArgumentParser) -> None:
    """Speculative decoding with a draft model (llama.cpp's flags)."""
    d = DraftParams()
    g = p.add_argument_group("speculative decoding")
    g.add_argument("-md", "--model-draft", metavar="FNAME", default=None,
                   help="draft model (GGUF path or catalog name) with the model's vocabulary: speculative decoding")
    g.add_argument("--draft-max", "--draft", "--draft-n", "--spec-draft-n-max", dest="draft_max", type=int, default=d.n_max, metavar="N",
                   help=f"most tokens drafted per round (default: {d.n_max})")
    g.add_argument("--draft-min", "--draft-n-min", "--spec-draft-n-min", dest="draft_min", type=int, default=d.n_min, metavar="N",
                   help=f"fewest drafted tokens worth checking (default: {d.n_min})")
    g.add_argument("--draft-p-min", type=float, default=d.p_min, metavar="P",
                   help=f"stop drafting at a token the draft model gives less than P (default: {d.p_min})")
    g.add_argument("-cd", "--ctx-size-draft", type=int, default=0, metavar="N",
                   help="the draft model's context (default: 0 = the model's context)")
    g.add_argument("-td", "--threads-draft", type=int, default=None, metavar="N",
                   help="threads of the draft model (default: as -t)")
    for kv in ("k", "v"):
        g.add_argument(f"-ct{kv}d", f"--cache-type-{kv}-draft", f"--spec-draft-type-{kv}", type=_cache_type,
                       default="f16", metavar="TYPE", dest=f"cache_type_{kv}_draft",
                       help=f"the draft model's KV cache type for {kv.upper()} (default: f16)")


def draft_kwargs(a: argparse.Namespace) -> dict:
    """`Llama`'s draft arguments from the flags of `add_draft` (none without -md)."""
    if not a.model_draft:
        return {}
    return {"draft_model": a.model_draft, "draft_max": a.draft_max, "draft_min": a.draft_min,
            "draft_p_min": a.draft_p_min, "n_ctx_draft": a.ctx_size_draft, "n_threads_draft": a.threads_draft,
            "type_k_draft": a.cache_type_k_draft, "type_v_draft": a.cache_type_v_draft}


def add_sampling(p: argparse.ArgumentParser) -> None:
    d = SamplingParams()
    g = p.add_argument_group("sampling")
    g.add_argument("--temp", type=float, default=d.temperature, help=f"temperature (default: {d.temperature}; 0 = greedy)")
    g.add_argument("--top-k", type=int, default=d.top_k, help=f"top-k (default: {d.top_k}; 0 = off)")
    g.add_argument("--top-p", type=float, default=d.top_p, help=f"top-p (default: {d.top_p}; 1.0 = off)")
    g.add_argument("--min-p", type=float, default=d.min_p, help=f"min-p (default: {d.min_p}; 0 = off)")
    g.add_argument("--typical", type=float, default=d.typical_p, help="locally typical sampling p (1.0 = off)")
    g.add_argument("--top-nsigma", type=float, default=d.top_n_sigma, help="top-n-sigma (-1 = off)")
    g.add_argument("--xtc-probability", type=float, default=d.xtc_probability, help="XTC probability (0 = off)")
    g.add_argument("--xtc-threshold", type=float, default=d.xtc_threshold,
                   help=f"XTC threshold (default: {d.xtc_threshold}; > 0.5 = off)")
    g.add_argument("--dynatemp-range", type=float, default=d.dynatemp_range, help="dynamic temperature range (0 = off)")
    g.add_argument("--dynatemp-exp", type=float, default=d.dynatemp_exponent, help="dynamic temperature exponent")
    g.add_argument("--repeat-penalty", type=float, default=d.repeat_penalty,
                   help=f"repetition penalty (default: {d.repeat_penalty}; 1.0 = off)")
    g.add_argument("--repeat-last-n", type=int, default=d.repeat_last_n,
                   help=f"tokens considered for penalties (default: {d.repeat_last_n}; 0 = off, -1 = context)")
    g.add_argument("--presence-penalty", type=float, default=d.presence_penalty, help="presence penalty (default: 0)")
    g.add_argument("--frequency-penalty", type=float, default=d.frequency_penalty, help="frequency penalty (default: 0)")
    g.add_argument("--dry-multiplier", type=float, default=d.dry_multiplier, help="DRY multiplier (0 = off)")
    g.add_argument("--dry-base", type=float, default=d.dry_base, help=f"DRY base (default: {d.dry_base})")
    g.add_argument("--dry-allowed-length", type=int, default=d.dry_allowed_length,
                   help=f"DRY allowed repeat length (default: {d.dry_allowed_length})")
    g.add_argument("--dry-penalty-last-n", type=int, default=d.dry_penalty_last_n,
                   help=f"tokens DRY scans (default: {d.dry_penalty_last_n}; 0 = off)")
    g.add_argument("--dry-sequence-breaker", action="append", default=None, metavar="STRING",
                   help="a DRY sequence breaker, replacing the defaults (repeatable; 'none' for none)")
    g.add_argument("--mirostat", type=int, default=d.mirostat, choices=(0, 1, 2), help="mirostat version (0 = off)")
    g.add_argument("--mirostat-lr", type=float, default=d.mirostat_eta, help="mirostat learning rate (eta)")
    g.add_argument("--mirostat-ent", type=float, default=d.mirostat_tau, help="mirostat target entropy (tau)")
    g.add_argument("--samplers", default=None, metavar="NAMES",
                   help=f"sampler order, ';'-separated (default: {';'.join(d.samplers)})")
    g.add_argument("--sampler-seq", default=None, metavar="LETTERS", help="sampler order as letters (edskypmxt)")
    g.add_argument("-s", "--seed", type=int, default=-1, help="random seed (default: -1 = random)")
    g.add_argument("-l", "--logit-bias", action="append", default=[], metavar="TOKEN(+/-)BIAS",
                   help="e.g. '15043+1' or '15043-inf'; repeatable")
    g.add_argument("--ignore-eos", action="store_true", help="keep generating after end-of-generation tokens")


def parse_logit_bias(items: list[str]) -> dict[int, float]:
    out: dict[int, float] = {}
    for item in items:
        for sign in ("+", "-"):
            tok, sep, val = item.partition(sign)
            if sep and tok.strip().isdigit():
                out[int(tok)] = float(sign + val) if val.strip() != "inf" else float(sign + "inf")
                break
        else:
            raise SystemExit(f"error: bad --logit-bias {item!r} (expected TOKEN+BIAS or TOKEN-BIAS)")
    return out


def sampling_kwargs(a: argparse.Namespace) -> dict:
    kw = {"temperature": a.temp, "top_k": a.top_k, "top_p": a.top_p, "min_p": a.min_p, "typical_p": a.typical,
          "top_n_sigma": a.top_nsigma, "xtc_probability": a.xtc_probability, "xtc_threshold": a.xtc_threshold,
          "dynatemp_range": a.dynatemp_range, "dynatemp_exponent": a.dynatemp_exp,
          "repeat_penalty": a.repeat_penalty, "repeat_last_n": a.repeat_last_n,
          "presence_penalty": a.presence_penalty, "frequency_penalty": a.frequency_penalty,
          "dry_multiplier": a.dry_multiplier, "dry_base": a.dry_base, "dry_allowed_length": a.dry_allowed_length,
          "dry_penalty_last_n": a.dry_penalty_last_n, "mirostat": a.mirostat, "mirostat_eta": a.mirostat_lr,
          "mirostat_tau": a.mirostat_ent, "seed": a.seed, "logit_bias": parse_logit_bias(a.logit_bias)}
    if a.dry_sequence_breaker is not None:  # the first one clears the defaults; "none" clears all
        breakers: list[str] = []
        for b in a.dry_sequence_breaker:
            breakers = [] if b == "none" else [*breakers, b]
        kw["dry_sequence_breakers"] = tuple(breakers)
    if a.sampler_seq is not None:
        kw["samplers"] = sampler_names(a.sampler_seq)
    if a.samplers is not None:
        kw["samplers"] = sampler_names(a.samplers.split(";"))
    return kw


def load_llama(a: argparse.Namespace, **kw):
    from ..api import Llama

    return Llama(a.model, n_ctx=a.ctx_size, n_threads=a.threads, n_batch=a.batch_size, type_k=a.cache_type_k,
                 type_v=a.cache_type_v, **kw)
