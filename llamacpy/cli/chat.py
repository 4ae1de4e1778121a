"""`llamacpy chat -m M`: an interactive conversation (llama-cli's conversation mode).

Ctrl-C stops the reply (the partial reply stays in the history), `/exit` or Ctrl-D leaves,
`/clear` starts over.
"""

from __future__ import annotations

import argparse
import sys

from .options import add_model, add_runtime, add_sampling, load_llama, sampling_kwargs


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("-sys", "--system-prompt", default=None, help="system message")
    p.add_argument("-n", "--n-predict", type=int, default=-1, help="max tokens per reply (default: -1)")
    p.add_argument("--chat-template", default=None, help="a Jinja template or built-in name (default: the model's)")
    add_runtime(p)
    add_sampling(p)


def run(a: argparse.Namespace) -> int:
    llm = load_llama(a, chat_template=a.chat_template)
    kw = sampling_kwargs(a)
    system = [{"role": "system", "content": a.system_prompt}] if a.system_prompt else []
    messages = list(system)
    interactive = sys.stdin.isatty()
    print("== chat: Enter sends; Ctrl-C stops a reply; /clear resets; /exit or Ctrl-D leaves ==", file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        text = line.strip()
        if text in ("/exit", "/quit"):
            return 0
        if text == "/clear":
            messages = list(system)
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": line})
        reply = []
        try:
            for piece in llm.chat(messages, max_tokens=a.n_predict, stream=True, **kw):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
        sys.stdout.write("\n")
        sys.stdout.flush()
        messages.append({"role": "assistant", "content": "".join(reply)})
