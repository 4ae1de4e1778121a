"""Embeddings for the Python API (`Llama.embed`, `Llama.create_embedding`, as llama-cpp-python has them):
texts -> token ids -> the model's hidden states, batched, pooled and normalized."""

from __future__ import annotations

import time

import numpy as np

from ..ops.pooling import POOLING, POOLING_NAMES, normalize, pool
from .thread_tuner import ThreadTuner


def pooling_name(pooling_type: int | str | None, model) -> str:
    """llama-cpp-python's `pooling_type` (an int, -1/None = the model's) or a name; decoders default to none."""
    if pooling_type is None or pooling_type == -1:
        return model.args.pooling if getattr(model, "is_encoder", False) else "none"
    name = POOLING_NAMES.get(pooling_type) if isinstance(pooling_type, int) else pooling_type
    if name not in POOLING or name == "rank":
        raise ValueError(f"pooling_type must be one of none, mean, cls, last (or 0-3), not {pooling_type!r}")
    return name


def rerank_prompts(tok, template: str | None, query: str, docs: list[str]) -> list[list[int]]:
    """llama-server's format_prompt_rerank for each document: the GGUF's rerank template
    (tokenizer.chat_template.rerank) with {query} and {document} filled in (special tokens parsed), else
    [BOS] query [EOS or SEP] [SEP] document [EOS or SEP], each marker where the vocabulary adds it."""
    if template:
        return [tok.encode(template.replace("{query}", query).replace("{document}", doc), add_special=False,
                           parse_special=True) for doc in docs]
    eos = tok.eos_id if tok.eos_id is not None else tok.sep_id
    head = [tok.bos_id] if tok.add_bos else []
    head += tok.encode(query, add_special=False)  # once for every document
    head += [eos] if tok.add_eos else []
    head += [tok.sep_id] if tok.add_sep else []
    tail = [eos] if tok.add_eos else []
    return [head + tok.encode(doc, add_special=False) + tail for doc in docs]


def embed_tokens(model, prompts: list[list[int]], pooling: str, embd_normalize: float,
                 n_batch: int, tuner: ThreadTuner | None = None) -> list[np.ndarray]:
    """One array per prompt: (n_embd,) pooled and normalized, or (n_tokens, n_embd) for pooling "none".
    Prompts run together in batches of up to `n_batch` tokens (a longer prompt runs alone). `tuner` picks
    each batch's kernel threads (timed per token within a batch-size class, as the server's engine does)."""
    out: list[np.ndarray] = []
    i = 0
    while i < len(prompts):
        j, n = i + 1, len(prompts[i])
        while j < len(prompts) and n + len(prompts[j]) <= n_batch:
            n += len(prompts[j])
            j += 1
        lengths = [len(p) for p in prompts[i:j]]
        if tuner is not None:
            tuner.threads_for_next_step()
        t0 = time.perf_counter()
        hidden = model.hidden_states(np.concatenate(prompts[i:j]).astype(np.int64), lengths)
        if tuner is not None:
            tuner.record((time.perf_counter() - t0) / n, n.bit_length(), True)
        if pooling == "rank":  # a reranker's classification scores, unnormalized
            out.extend(model.classify(hidden, lengths))
        else:
            for v in pool(hidden, lengths, pooling):
                out.append(v if pooling == "none" else normalize(v, embd_normalize)[0])
        i = j
    return out
