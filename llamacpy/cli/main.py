"""`llamacpy SUBCOMMAND ...`: llama.cpp's programs with llama.cpp's flag names."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .llama_server_compat import normalize_argv, unknown_flag_error

# subcommand -> (module, one-line help); each module has add_arguments(parser) and run(args) -> int
SUBCOMMANDS = {
    "complete": ("complete", "continue a prompt (llama-completion)"),
    "chat": ("chat", "interactive chat with the model's template (llama-cli)"),
    "perplexity": ("perplexity", "perplexity of a text file (llama-perplexity)"),
    "tokenize": ("tokenize", "print the token ids of a text (llama-tokenize)"),
    "pull": ("pull", "download a catalog model into the cache"),
    "convert": ("convert", "convert a Hugging Face model folder to GGUF (convert_hf_to_gguf.py)"),
    "imatrix": ("imatrix", "importance matrix of a model over a text, for quantize --imatrix (llama-imatrix)"),
    "quantize": ("quantize", "quantize a GGUF model to another type (llama-quantize)"),
    "server": ("server", "OpenAI-compatible HTTP server with continuous batching (llama-server)"),
    "bench": ("bench", "prompt and generation speed (llama-bench)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamacpy", description="llama.cpp, rebuilt in Python.")
    parser.add_argument("--version", action="version", version=f"llamacpy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        # no abbreviations: llama.cpp has none, and `--draft` must not be read as `--draft-max`'s prefix
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        importlib.import_module(f".{module}", __package__).add_arguments(p)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse; a flag no option has is an error naming the closest one."""
    sub = parser._subparsers._group_actions[0].choices if parser._subparsers else {}
    command = sub.get(argv[0]) if argv else None
    if command is not None:
        argv = [argv[0], *normalize_argv(argv[1:], command)]
    args, rest = parser.parse_known_args(argv)
    if rest:
        target = command or parser
        flag = next((r for r in rest if r.startswith("-")), None)
        target.error(unknown_flag_error(target, flag) if flag else f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, sys.argv[1:] if argv is None else list(argv))
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(f".{SUBCOMMANDS[args.command][0]}", __package__)
    try:
        return module.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"llamacpy {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
