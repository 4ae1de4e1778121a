"""llama-server's whole command line on `llamacpy server`.

Every option of llama-server (llama_server_table.py, recorded from `llama-server --help`) is a flag here:
  - llamacpy's own flags (settings.py, options.py) get llama-server's other names for them as aliases;
  - the rest are accepted and then judged by what they ask for (`check`):
      GPU       GPU/offload placement: logged as having no effect on the CPU;
      NO_EFFECT ggml's CPU tuning knobs with no counterpart here, or the behaviour llamacpy always has:
                logged, with the reason;
      UNTIL     a feature llamacpy does not have yet: accepted at the value that means "off" (which is what
                llamacpy does), any other value stops the server with an error naming the flag;
    so nothing is accepted and silently ignored.
  - every option also reads its `LLAMA_ARG_*` environment variable (a flag given on the command line wins),
    with llama.cpp's rules: booleans take on/enabled/true/1 or off/disabled/false/0, LLAMA_ARG_NO_X turns X off;
  - `--flag_name` is read as `--flag-name`, as llama.cpp does.
"""

from __future__ import annotations

import argparse
import difflib
import os

from .llama_server_table import FLAGS

COMPAT_PREFIX = "lcpp_"  # dest of the flags llamacpy only accepts (not its own settings)

GPU = {
    "--n-gpu-layers", "--split-mode", "--tensor-split", "--main-gpu", "--device", "--kv-offload", "--no-host",
    "--override-tensor", "--fit", "--fit-target", "--fit-ctx", "--op-offload", "--rpc", "--cpu-moe",
    "--n-cpu-moe", "--n-cpu-ffn", "--spec-draft-device", "--spec-draft-ngl", "--spec-draft-override-tensor",
    "--spec-draft-cpu-moe", "--spec-draft-n-cpu-moe", "--mmproj-offload", "--mmproj-device",
    "--spec-draft-backend-sampling", "--backend-sampling",
}

_THREADS = "llamacpy's numba threads are sized by -t and the thread tuner"
NO_EFFECT = {
    "--threads-batch": "prompt and generation share -t here",
    "--ubatch-size": "the prompt is computed in -b sized batches",
    "--cpu-mask": _THREADS, "--cpu-range": _THREADS, "--cpu-strict": _THREADS, "--prio": _THREADS,
    "--poll": _THREADS, "--cpu-mask-batch": _THREADS, "--cpu-range-batch": _THREADS,
    "--cpu-strict-batch": _THREADS, "--prio-batch": _THREADS, "--poll-batch": _THREADS, "--numa": _THREADS,
    "--spec-draft-threads-batch": _THREADS, "--spec-draft-cpu-mask": _THREADS, "--spec-draft-cpu-range": _THREADS,
    "--spec-draft-cpu-strict": _THREADS, "--spec-draft-prio": _THREADS, "--spec-draft-poll": _THREADS,
    "--spec-draft-cpu-mask-batch": _THREADS, "--spec-draft-cpu-strict-batch": _THREADS,
    "--spec-draft-prio-batch": _THREADS, "--spec-draft-poll-batch": _THREADS,
    "--flash-attn": "llamacpy has one attention kernel; its numerics follow llama.cpp's CPU path",
    "--cont-batching": "continuous batching is always on",
    "--repack": "llamacpy repacks the types whose kernels need it",
    "--load-mode": "weights are always read from the memory map",
    "--lazy-mode": "weights are always read from the memory map",
    "--check-tensors": "tensor data is checked when a tensor is first used",
    "--warmup": "kernels are compiled on load (numba cache), there is no warm-up run",
    "--perf": "timings are always reported in the responses",
    "--swa-full": "sliding-window layers keep the full context in their cache",
    "--defrag-thold": "a slot's cache is one contiguous block, never fragmented",
    "--threads-http": "HTTP runs on one asyncio loop",
    "--reuse-port": "the socket is bound once",

    "--log-disable": "llamacpy logs at INFO", "--log-file": "llamacpy logs to stderr",
    "--log-colors": "llamacpy logs without colours", "--log-prefix": "llamacpy logs with its own prefix",
    "--log-timestamps": "llamacpy logs with timestamps", "--log-jsonl": "llamacpy logs text lines",
    "--offline": "llamacpy never downloads at run time except `pull` of catalog models",
    "--escape": "escapes are processed by the shell here",
    "--cache-prompt": "prompt caching is per request (`cache_prompt`)",
    "--props": "POST /props changes nothing in llama-server either",
    "--skip-chat-parsing": "replies are parsed for tool calls only when a request has tools",
    "--prefill-assistant": "a trailing assistant message is continued (prefill)",
    "--ctx-checkpoints": "no recurrent/SWA checkpoints are needed by the architectures here",
    "--checkpoint-min-step": "no recurrent/SWA checkpoints are needed by the architectures here",
    "--slot-prompt-similarity": "a request goes to the idle slot sharing the longest cached prefix with it",
}

# parameters of a sampler or a speculative mode that is off here: they change nothing until it is on
_SPEC_NGRAM = "--spec-type ngram-*, which llamacpy does not have yet"
PARAMETER_OF = {
    "--adaptive-decay": "--adaptive-target",
    "--spec-synth-len": _SPEC_NGRAM, "--spec-synth-rates": _SPEC_NGRAM,
    **{f"--spec-ngram-{k}": _SPEC_NGRAM for k in (
        "mod-n-min", "mod-n-max", "mod-n-match", "simple-size-n", "simple-size-m", "simple-min-hits",
        "map-k-size-n", "map-k-size-m", "map-k-min-hits", "map-k4v-size-n", "map-k4v-size-m", "map-k4v-min-hits",
        "size-n", "size-m", "min-hits")},
}

# feature not built yet: (the values that mean off, what is missing)
_OFF = ("off", "disabled", "false", "0", False)
UNTIL = {
    "--control-vector": ((), "control vectors"), "--control-vector-scaled": ((), "control vectors"),
    "--control-vector-layer-range": ((), "control vectors"),
    "--override-kv": ((), "GGUF metadata overrides"),
    "--rope-scaling": (("none",), "RoPE scaling"), "--rope-scale": (("1", "1.0"), "RoPE scaling"),
    "--rope-freq-base": ((), "RoPE base overrides"), "--rope-freq-scale": (("1", "1.0"), "RoPE scaling"),
    "--yarn-orig-ctx": (("0",), "YaRN"), "--yarn-ext-factor": (("-1", "-1.0"), "YaRN"),
    "--yarn-attn-factor": (("-1", "-1.0"), "YaRN"), "--yarn-beta-slow": (("-1", "-1.0"), "YaRN"),
    "--yarn-beta-fast": (("-1", "-1.0"), "YaRN"),
    "--adaptive-target": (("-1", "-1.0"), "the adaptive-p sampler"),
    "--grammar": ((), "a server-wide grammar (requests may send `grammar`)"),
    "--grammar-file": ((), "a server-wide grammar (requests may send `grammar`)"),
    "--json-schema": ((), "a server-wide JSON schema (requests may send `json_schema`)"),
    "--json-schema-file": ((), "a server-wide JSON schema (requests may send `json_schema`)"),
    "--backend-sampling": (_OFF, "backend sampling"),
    "--reasoning-budget-message": ((), "a reasoning budget"),
    "--reasoning-effort": ((), "reasoning control"),
    "--reasoning-preserve": (_OFF, "reasoning control"),
    "--mmproj": ((), "multimodal input (--mmproj)"), "--mmproj-url": ((), "multimodal input (--mmproj)"),
    "--mmproj-auto": (_OFF, "multimodal input (--mmproj)"),
    "--image-min-tokens": ((), "multimodal input"), "--image-max-tokens": ((), "multimodal input"),
    "--mtmd-batch-max-tokens": ((), "multimodal input"), "--video-fps": ((), "multimodal input"),
    "--video-timestamp-interval": ((), "multimodal input"), "--video-ffmpeg-dir": ((), "multimodal input"),
    "--media-path": ((), "multimodal input"),
    "--model-url": ((), "downloads by URL (use a path or a catalog name)"),
    "--docker-repo": ((), "downloads from Docker Hub (use a path or a catalog name)"),
    "--hf-repo": ((), "Hugging Face downloads (use a path or a catalog name)"),
    "--hf-file": ((), "Hugging Face downloads (use a path or a catalog name)"),
    "--hf-token": ((), "Hugging Face downloads (use a path or a catalog name)"),
    "--spec-draft-hf": ((), "Hugging Face downloads (use a path or a catalog name)"),
    "--spec-type": (("none", "draft-simple"), "speculative decoding other than a draft model"),
    "--spec-draft-p-split": ((), "split drafts"),
    "--api-prefix": ((), "an API prefix"),
    "--path": ((), "serving static files from a folder"),
    "--ui-config": ((), "web UI settings"), "--ui-config-file": ((), "web UI settings"),
    "--log-prompts-dir": ((), "prompt logging"),
    "--spm-infill": (_OFF, "SPM infill order"),
    "--kv-unified-per-slot": ((), "a unified KV cache"),
    "--lookup-cache-static": ((), "lookup decoding"), "--lookup-cache-dynamic": ((), "lookup decoding"),
    "--reverse-prompt": ((), "a server-wide stop string (requests may send `stop`)"),
    "--special": (_OFF, "printing special tokens"),
    "--completion-bash": ((), "bash completion"),
}
# what the options in no table (llama-server's `--*-default` / `--*-spec` download presets) are refused as
PRESETS = "preset of llama-server's downloads (use -m with a path or a catalog name)"


def _long(names: tuple[str, ...]) -> str:
    """An option's first positive long name (its dest here)."""
    pos = _positive(names)
    return next((n for n in pos if n.startswith("--")), pos[0])


def _dest(names: tuple[str, ...]) -> str:
    """The namespace attribute of an option llamacpy only accepts."""
    return COMPAT_PREFIX + _long(names).lstrip("-").replace("-", "_")


def _key(names: tuple[str, ...]) -> str:
    """The name of an option in the tables above: the first of its names they hold."""
    return next((n for n in names if n in GPU or n in NO_EFFECT or n in UNTIL or n in PARAMETER_OF), _long(names))


def _positive(names: tuple[str, ...]) -> tuple[str, ...]:
    """An option's names that turn it on; those after are its negations (llama.cpp lists them last)."""
    if all(n.startswith("--no-") for n in names):
        return names
    for i, n in enumerate(names):
        nxt = names[i + 1] if i + 1 < len(names) else ""
        if n.startswith("--no-") or (not n.startswith("--") and nxt.startswith("--no-")):
            return names[:i]
    return names


def _truthy(text: str) -> bool:
    v = text.strip().lower()
    if v in ("on", "enabled", "true", "1"):
        return True
    if v in ("off", "disabled", "false", "0"):
        return False
    raise ValueError(f"expected on/off, true/false, 1/0 or enabled/disabled, got {text!r}")


def _version() -> str:
    from .. import __version__

    return f"llamacpy {__version__} (the command line of llama-server, llama.cpp 0c1e570)"


def _cache_list() -> str:
    from ..catalog import cache_dir, catalog

    pulled = [m for m in catalog().values() if (cache_dir() / "models" / m.file).is_file()]
    lines = [f"  {m.name:32} {cache_dir() / 'models' / m.file}" for m in pulled]
    return "\n".join([f"Models pulled into {cache_dir() / 'models'}:", *lines] if pulled else ["No models pulled."])


# options that print something and exit, as llama-server's do
INFO = {
    "--version": _version,
    "--list-devices": lambda: "Available devices:\n  CPU (llamacpy runs on the CPU only)",
    "--cache-list": _cache_list,
}


class _Info(argparse.Action):
    def __init__(self, option_strings, dest, show, **kw):
        super().__init__(option_strings, dest, nargs=0, **kw)
        self.show = show

    def __call__(self, parser, namespace, values, option_string=None):
        print(self.show())
        parser.exit()


class _Given(argparse.Action):
    """A llama-server option llamacpy only accepts: records (flag as given, value)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if self.nargs == 0:
            values = option_string in self.const
        setattr(namespace, self.dest, (option_string, values))


def add_flags(p: argparse.ArgumentParser) -> None:
    """Give llamacpy's flags llama-server's other names, and accept the rest of llama-server's options."""
    known = p._option_string_actions
    for names, value, env, _default in FLAGS:
        if "--help" in names:
            continue
        info = next((INFO[n] for n in names if n in INFO), None)
        if info is not None:
            p.add_argument(*names, action=_Info, show=info, help=argparse.SUPPRESS)
            continue
        own = next((known[n] for n in names if n in known), None)
        if own is not None:
            for n in names:  # another name of a flag llamacpy has: the same action
                if n not in known:
                    own.option_strings.append(n)
                    known[n] = own
        else:
            dest = _dest(names)
            kw = {"nargs": 0, "const": _positive(names)} if value is None else {"metavar": value.split()[-1]}
            own = p.add_argument(*names, dest=dest, action=_Given, default=None, help=argparse.SUPPRESS, **kw)
        own.env = env  # its LLAMA_ARG_* variable (the router reads preset keys spelled so)


def env_defaults(p: argparse.ArgumentParser, environ=os.environ) -> None:
    """Each option's LLAMA_ARG_* variable becomes its default, so a flag on the command line wins."""
    actions = p._option_string_actions
    for names, _value, env, _default in FLAGS:
        action = next((actions[n] for n in names if n in actions), None)
        if env is None or action is None:
            continue
        has_neg = _positive(names) != names
        raw, name = environ.get(env), env
        if has_neg and env.replace("LLAMA_ARG_", "LLAMA_ARG_NO_") in environ:
            raw, name = "0", env.replace("LLAMA_ARG_", "LLAMA_ARG_NO_")
        if raw is None:
            continue
        try:
            value = _env_value(action, raw, name)
        except (ValueError, argparse.ArgumentTypeError) as e:
            p.error(f"environment variable {name}: {e}")
        p.set_defaults(**{action.dest: value})
    if "LLAMA_API_KEY" in environ and "--api-key" in actions:
        p.set_defaults(api_key=[k.strip() for k in environ["LLAMA_API_KEY"].split(",") if k.strip()])


def _env_value(action: argparse.Action, raw: str, name: str):
    if isinstance(action, _Given):  # shown in check()'s notes as the variable
        return (name, _truthy(raw) if action.nargs == 0 else raw)
    if action.nargs == 0:  # store_true / BooleanOptionalAction
        return _truthy(raw)
    value = action.type(raw) if action.type else raw
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{raw!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def normalize_argv(argv: list[str], p: argparse.ArgumentParser) -> list[str]:
    """llama.cpp reads `--flag_name` as `--flag-name`."""
    out = []
    for arg in argv:
        name, eq, rest = arg.partition("=")
        if name.startswith("--") and "_" in name and name.replace("_", "-") in p._option_string_actions:
            arg = name.replace("_", "-") + eq + rest
        out.append(arg)
    return out


def check(a: argparse.Namespace) -> list[str]:
    """Judge the accepted-only options given (flags or env): log lines for those without effect; a
    SystemExit naming the first one asking for a feature llamacpy lacks."""
    notes = []
    for names, _value, _env, _default in FLAGS:
        given = getattr(a, _dest(names), None)
        if given is None:
            continue
        flag, value = given
        key = _key(names)
        if key in GPU:
            notes.append(f"{flag}: no effect, llamacpy runs on the CPU")
        elif key in NO_EFFECT:
            notes.append(f"{flag}: no effect ({NO_EFFECT[key]})")
        elif key in PARAMETER_OF:
            notes.append(f"{flag}: no effect while {PARAMETER_OF[key]} is off")
        elif key in UNTIL and value in UNTIL[key][0]:
            notes.append(f"{flag} {value}: as llamacpy does")
        else:
            what = UNTIL[key][1] if key in UNTIL else PRESETS if key.endswith(("-default", "-spec")) else key.lstrip("-")
            shown = flag if isinstance(value, bool) else f"{flag} {value}"
            raise SystemExit(f"llamacpy server: error: {shown}: llamacpy does not support {what} yet")
    return notes


def unknown_flag_error(p: argparse.ArgumentParser, arg: str) -> str:
    """The message for a flag no llama-server or llamacpy option has, naming the closest known one."""
    name = arg.partition("=")[0]
    close = difflib.get_close_matches(name, list(p._option_string_actions), n=1, cutoff=0.6)
    return f"unknown argument: {name}" + (f" (did you mean {close[0]}?)" if close else "")
