"""engine/precompile.py: a first start serves the layer-by-layer path while a child process compiles the fused
step into the numba cache; the model takes the fused step once the child is done, with the same bits."""

from __future__ import annotations

import time

import numpy as np

from llamacpy.engine import precompile
from llamacpy.gguf import GGUFFile
from llamacpy.models import Segment, llama_step, load_model


def _model(path):
    return load_model(GGUFFile(path))


def test_a_closed_gate_serves_layer_by_layer_with_the_fused_bits(tiny_model, monkeypatch):
    model = _model(tiny_model("llama"))
    calls = []
    real = llama_step.layer_step
    monkeypatch.setattr("llamacpy.models.llama.layer_step", lambda *a: (calls.append(1), real(*a))[1])
    tokens, seg = np.arange(5, dtype=np.int64), [Segment(0, 0, 5)]
    fused = model.forward(tokens, seg, model.new_cache(16, 1))
    assert calls
    calls.clear()
    model.fused_gate = lambda: False
    gated = model.forward(tokens, seg, model.new_cache(16, 1))
    assert not calls and model.fused_gate is not None
    np.testing.assert_array_equal(gated, fused)
    model.fused_gate = lambda: True  # the child is done: the fused step from here on
    model.forward(tokens, seg, model.new_cache(16, 1))
    assert calls and model.fused_gate is None


def test_the_child_compiles_into_the_cache_and_marks_it(tiny_model, tmp_path, monkeypatch):
    """A real child on an empty numba cache (a cold compile: ~20 s of the other core)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    model = _model(tiny_model("llama"))
    gate = precompile.start(model)
    assert gate is not None
    t0 = time.monotonic()
    while not gate():
        assert time.monotonic() - t0 < 600, "the child did not finish"
        time.sleep(0.2)
    assert [p.name for p in tmp_path.glob("fused-step-*.ok")] == [f"fused-step-{model._layer_steps()[0][2]:x}.ok"]
    assert any(p.name.startswith("llama_step.layer_step") for p in tmp_path.rglob("*.nbi"))
    assert precompile.start(model) is None  # marked: a warm start spawns nothing


def test_no_child_where_there_is_no_fused_step_or_no_cache_folder(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    gemma = _model(tiny_model("gemma3"))
    assert precompile.start(gemma) is None  # sliding window: no fused step
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert precompile.start(_model(tiny_model("llama"))) is None


def test_a_step_compiled_here_is_marked_and_spawns_nothing(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    model = _model(tiny_model("llama"))
    model.forward(np.arange(3, dtype=np.int64), [Segment(0, 0, 3)], model.new_cache(8, 1))
    precompile.mark_compiled(model)
    assert precompile.start(model) is None
