"""llama-server's RAM prompt cache (--cache-ram, --cache-idle-slots) as its own test_kv_keep_only_active runs it: with a
unified KV cache, a new request saves the idle slots' prompts to RAM and clears them; a later request for one of
those prompts gets it back from RAM (cache_n > 0, fewer tokens evaluated) and the same reply as evaluating it
afresh; --cache-ram 0 and --no-cache-idle-slots turn that off."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow

LONG_PROMPT = ("Once upon a time in a land far away, there lived a brave knight who traveled across mountains and "
               "rivers to find the legendary golden sword hidden deep within the enchanted forest of whispers. He met "
               "many creatures along the way including dragons and fairies and wizards who helped him on his noble "
               "quest to save the kingdom.")
SHORT = "The quick brown fox"


def complete(url: str, prompt: str, **kw) -> dict:
    r = httpx.post(f"{url}/completion", json={"prompt": prompt, "n_predict": 4, "temperature": 0,
                                              "cache_prompt": True, **kw}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_idle_slots_go_to_ram_and_come_back(start_server, smollm2_path):
    server = start_server(smollm2_path, "-np", "2", "-kvu", "-c", "1024", "-v")
    first = complete(server.url, LONG_PROMPT, id_slot=0)
    assert "__TEST_TAG_CACHE_IDLE_SLOT__" not in server.log_text()  # slot 0 is the one working
    complete(server.url, SHORT, id_slot=1)
    assert "__TEST_TAG_CACHE_IDLE_SLOT__" in server.log_text()  # slot 0, idle: saved, its cells freed
    slots = httpx.get(f"{server.url}/slots").json()
    assert slots[0]["n_ctx"] == 1024
    again = complete(server.url, LONG_PROMPT)
    assert "updating prompt cache" in server.log_text()
    assert again["timings"]["cache_n"] > 0 and again["timings"]["prompt_n"] < first["timings"]["prompt_n"]
    assert again["content"] == first["content"]
    longer = complete(server.url, LONG_PROMPT + " The knight finally reached the castle gates.")
    assert longer["timings"]["cache_n"] >= again["timings"]["cache_n"] and longer["timings"]["prompt_n"] < 20


@pytest.mark.parametrize("flags", [("--cache-ram", "0"), ("--no-cache-idle-slots",)])
def test_off(start_server, smollm2_path, flags):
    server = start_server(smollm2_path, "-np", "2", "-kvu", "-c", "1024", "-v", *flags)
    complete(server.url, LONG_PROMPT, id_slot=0)
    complete(server.url, SHORT, id_slot=1)
    assert "__TEST_TAG_CACHE_IDLE_SLOT__" not in server.log_text()
    again = complete(server.url, LONG_PROMPT)
    assert again["timings"]["cache_n"] > 0  # slot 0 kept its cells: there is room for both
