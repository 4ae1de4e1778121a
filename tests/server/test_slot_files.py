"""/slots/{id}?action=save|restore|erase with --slot-save-path, as llama-server: a slot's cached prompt written to
a file, restored into another slot (or after a restart) so that prefix is not evaluated again, and the same
greedy reply; bad file names, missing or foreign files and unknown slots are clear 400s."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PROMPT = "What is the capital of France? Answer in one word."
OTHER = "What is the capital of France? Answer in one sentence."


def complete(c, prompt: str, slot: int) -> dict:
    r = c.post("/completion", json={"prompt": prompt, "n_predict": 6, "temperature": 0, "id_slot": slot,
                                    "cache_prompt": True})
    assert r.status_code == 200
    return r.json()


def test_save_restore_erase_and_a_restart(start_server, smollm2_path, tmp_path):
    # no RAM prompt cache: it would bring an erased slot's prompt back (as llama-server's does)
    flags = ("-np", "2", "-c", "1024", "--slot-save-path", str(tmp_path), "--cache-ram", "0")
    server = start_server(smollm2_path, *flags)
    with server.client() as c:
        first = complete(c, PROMPT, 1)
        assert first["timings"]["cache_n"] == 0
        saved = c.post("/slots/1?action=save", json={"filename": "slot1.bin"}).json()
        n = saved["n_saved"]
        assert saved["id_slot"] == 1 and saved["filename"] == "slot1.bin" and n >= first["tokens_evaluated"]
        assert saved["n_written"] == (tmp_path / "slot1.bin").stat().st_size and "save_ms" in saved["timings"]
        other = complete(c, OTHER, 1)  # slot 1 moves on
        restored = c.post("/slots/0?action=restore", json={"filename": "slot1.bin"}).json()
        assert restored["n_restored"] == n and restored["n_read"] == saved["n_written"]
        again = complete(c, PROMPT, 0)
        assert again["timings"]["cache_n"] == first["tokens_evaluated"] - 1  # all but the last prompt token
        assert again["content"] == first["content"]
        assert complete(c, OTHER, 1)["content"] == other["content"]  # slot 1 untouched by the restore
        held = c.post("/slots/0?action=save", json={"filename": "probe.bin"}).json()["n_saved"]
        assert c.post("/slots/0?action=erase").json() == {"id_slot": 0, "n_erased": held}
        assert complete(c, PROMPT, 0)["timings"]["cache_n"] == 0
    server.stop()
    restarted = start_server(smollm2_path, *flags)  # the file outlives the server
    with restarted.client() as c:
        assert c.post("/slots/1?action=restore", json={"filename": "slot1.bin"}).json()["n_restored"] == n
        after = complete(c, PROMPT, 1)
        assert after["timings"]["cache_n"] == first["tokens_evaluated"] - 1
        assert after["content"] == first["content"]


def test_bad_actions(start_server, smollm2_path, tmp_path):
    server = start_server(smollm2_path, "-np", "2", "-c", "512", "--slot-save-path", str(tmp_path / "slots"))
    with server.client() as c:
        complete(c, PROMPT, 0)
        for name in ("../escape.bin", "a/b.bin", "..", "x.", " x", "a\x01b", ""):
            r = c.post("/slots/0?action=save", json={"filename": name})
            assert r.status_code == 400 and r.json()["error"]["message"] == "Invalid filename", name
        assert not (tmp_path / "escape.bin").exists()
        r = c.post("/slots/0?action=restore", json={"filename": "missing.bin"})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("Unable to restore slot")
        path = tmp_path / "slots" / "s.bin"
        c.post("/slots/0?action=save", json={"filename": "s.bin"})
        data = bytearray(path.read_bytes())
        data[12] ^= 0xFF  # the model fingerprint
        path.write_bytes(bytes(data))
        r = c.post("/slots/0?action=restore", json={"filename": "s.bin"})
        assert r.status_code == 400 and "saved with another model" in r.json()["error"]["message"]
        assert c.post("/slots/7?action=erase").status_code == 400
        assert c.post("/slots/0?action=dance").json()["error"]["message"] == "Invalid action"
        assert c.post("/slots/x?action=erase").status_code == 400
        assert complete(c, PROMPT, 0)["timings"]["cache_n"] == 0  # the failed restore left the slot empty


def test_without_a_save_path_it_is_501(start_server, smollm2_path):
    server = start_server(smollm2_path, "-np", "1", "-c", "256")
    with server.client() as c:
        r = c.post("/slots/0?action=erase")
        assert r.status_code == 501 and "--slot-save-path" in r.json()["error"]["message"]
