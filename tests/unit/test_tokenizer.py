"""Tokenizer: the same token ids and text as llama.cpp (llama-vocab.cpp, unicode.cpp).

Facts come from llama.cpp itself: its test vectors (models/ggml-vocab-*.gguf.inp/.out), `llama-server`'s
/tokenize on the catalog models (copied below), and unicode_regex_split's output on a few tricky strings.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path

import pytest

from llamacpy.gguf import GGUFFile
from llamacpy.tokenizer import Tokenizer
from llamacpy.tokenizer import pretokenize as pt
from llamacpy.tokenizer.libstdcxx import hash_bytes, hash_strings
from llamacpy.tokenizer.tokenizer import _clean_spaces, _incomplete_tail

# -- llama.cpp's tokenizer test vectors -----------------------------------------------------------------

# every ggml-vocab-*.gguf in llama.cpp 0.3.36's models/ that has .inp/.out vectors; value: xfail reason
VOCABS_WITH_VECTORS: dict[str, str | None] = {
    "bert-bge": None,
    "command-r": None,
    "deepseek-coder": None,
    "deepseek-llm": None,
    "falcon": None,
    "gemma-4": None,
    "gpt-2": None,
    "llama-bpe": None,
    "llama-spm": None,
    "mpt": None,
    "phi-3": None,
    "qwen2": None,
    "qwen35": None,
    "refact": None,
    "starcoder": None,
}

SEP = "\n__ggml_vocab_test__\n"


@cache
def _vocab_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_gguf(GGUFFile(path))


def _read_vectors(path: Path) -> dict[str, list[int]]:
    """test-tokenizer-0.cpp's reader: inputs split on the separator, one line of ids per input."""
    raw = path.with_name(path.name + ".inp").read_bytes().decode()
    inputs = raw.split(SEP)
    if inputs and inputs[-1] == "":
        inputs.pop()
    lines = path.with_name(path.name + ".out").read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert len(inputs) == len(lines)
    return {s: [int(t) for t in line.split()] for s, line in zip(inputs, lines)}


@pytest.mark.slow
def test_vector_list_covers_all_vocabs(llama_cpp_data):
    found = {p.name[len("ggml-vocab-"):-len(".gguf.inp")] for p in (llama_cpp_data / "models").glob("*.inp")}
    assert found == set(VOCABS_WITH_VECTORS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VOCABS_WITH_VECTORS))
def test_llama_cpp_vectors(llama_cpp_data, name):
    if VOCABS_WITH_VECTORS[name]:
        pytest.xfail(VOCABS_WITH_VECTORS[name])
    path = llama_cpp_data / "models" / f"ggml-vocab-{name}.gguf"
    tok = _vocab_tokenizer(path)
    vectors = _read_vectors(path)
    wrong = [s for s, ids in vectors.items() if tok.encode(s, add_special=False, parse_special=False) != ids]
    assert not wrong, f"{len(vectors) - len(wrong)}/{len(vectors)} agree; first wrong: {wrong[0]!r}"


# Unigram (t5 / XLM-R) has no vectors upstream; these ids come from llama.cpp's llama_vocab on the same file
UGM_CASES = [
    ("Hello world, ÉMILE!  ok", [0, 35378, 8999, 4, 3050, 594, 52099, 38, 3664, 2]),
    ("  multiple   spaces\tand\nnewlines ", [0, 48716, 32628, 7, 136, 3525, 59801, 2]),
    ("ﬁ ① Ｆｕｌｌ 日本語 <mask> end", [0, 809, 106, 9312, 6, 98449, 250001, 3564, 2]),
]


@pytest.mark.slow
def test_unigram_matches_llama_cpp(llama_cpp_data):
    tok = _vocab_tokenizer(llama_cpp_data / "models" / "ggml-vocab-nomic-bert-moe.gguf")
    for text, ids in UGM_CASES:
        assert tok.encode(text, add_special=True, parse_special=True) == ids
    assert tok.decode(UGM_CASES[0][1]) == "<s> Hello world, ÉMILE! ok</s>"


# -- llama-server /tokenize on the catalog models (add_special as given, parse_special=true) ---------------

GOLDEN_PROMPTS = [
    # smollm2-135m-instruct-q4_1.json
    ("smollm2", "The capital of France is", True, [504, 3575, 282, 4649, 314]),
    ("smollm2", "def fibonacci(n):", True, [1604, 3987, 46477, 24, 94, 727]),
    ("smollm2", "Once upon a time, in a small village by the sea,", True,
     [6403, 1980, 253, 655, 28, 281, 253, 1165, 6560, 411, 260, 3426, 28]),
    ("smollm2", "<|im_start|>user\nWhat is 2+2? Answer briefly.<|im_end|>\n<|im_start|>assistant\n", False,
     [1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 19842, 13099, 30, 2, 198, 1, 520, 9531, 198]),
    ("smollm2", "Émile a écrit: «Bonjour le monde» — 日本語のテキストも 🚀 here.", True,
     [39614, 19537, 253, 26411, 14871, 42, 23708, 30904, 24583, 425, 283, 31006, 20306, 1841, 17097, 241, 115,
      40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 10391, 220, 15107, 244, 218,
      1535, 30]),
    # qwen2.5-coder-0.5b-instruct-q4_k_m.json
    ("qwen05", "The capital of France is", True, [785, 6722, 315, 9625, 374]),
    ("qwen05", "def fibonacci(n):", True, [750, 75698, 1445, 1648]),
    ("qwen05", "Once upon a time, in a small village by the sea,", True,
     [12522, 5193, 264, 882, 11, 304, 264, 2613, 14126, 553, 279, 9396, 11]),
    ("qwen05", "<|im_start|>user\nWhat is 2+2? Answer briefly.<|im_end|>\n<|im_start|>assistant\n", False,
     [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 21806, 26753, 13, 151645, 198, 151644, 77091, 198]),
    ("qwen05", "Émile a écrit: «Bonjour le monde» — 日本語のテキストも 🚀 here.", True,
     [26789, 66597, 264, 88432, 25, 12486, 81581, 512, 37800, 12992, 1959, 75402, 21894, 102819, 15767, 56833,
      61803, 70534, 31877, 11162, 248, 222, 1588, 13]),
    # gemma-3-270m-q4_k_m.json
    ("gemma", "The capital of France is", True, [2, 818, 5279, 529, 7001, 563]),
    ("gemma", "def fibonacci(n):", True, [2, 2063, 10779, 78113, 236769, 236749, 1473]),
    ("gemma", "Once upon a time, in a small village by the sea,", True,
     [2, 14946, 3324, 496, 990, 236764, 528, 496, 1944, 9744, 684, 506, 5442, 236764]),
    ("gemma", "<|im_start|>user\nWhat is 2+2? Answer briefly.<|im_end|>\n<|im_start|>assistant\n", False,
     [236820, 236909, 548, 236779, 3041, 111038, 2364, 107, 3689, 563, 236743, 236778, 236862, 236778, 236881,
      25685, 21485, 21603, 236909, 548, 236779, 643, 111038, 107, 236820, 236909, 548, 236779, 3041, 111038,
      111457, 107]),
    ("gemma", "Émile a écrit: «Bonjour le monde» — 日本語のテキストも 🚀 here.", True,
     [2, 237642, 33432, 496, 71936, 236787, 2789, 53406, 674, 22150, 237167, 2192, 33375, 238582, 236945, 95830,
      237156, 236743, 242015, 1590, 236761]),
]

MODELS = ["smollm2", "qwen05", "gemma"]


@cache
def _model_tokenizer(path: Path) -> Tokenizer:
    return Tokenizer.from_gguf(GGUFFile(path))


@pytest.fixture
def model_tok(request):
    return lambda name: _model_tokenizer(request.getfixturevalue(f"{name}_path"))


@pytest.mark.slow
@pytest.mark.parametrize("model,prompt,add_special,ids", GOLDEN_PROMPTS)
def test_server_prompt_tokens(model_tok, model, prompt, add_special, ids):
    assert model_tok(model).encode(prompt, add_special=add_special, parse_special=True) == ids


@pytest.mark.slow
def test_special_tokens_parsed_only_when_asked(model_tok):
    tok = model_tok("qwen05")
    assert tok.encode("<|im_start|>", add_special=False, parse_special=True) == [151644]
    assert tok.encode("<|im_start|>", add_special=False, parse_special=False) == [27, 91, 318, 4906, 91, 29]


@pytest.mark.slow
def test_special_ids_and_end_of_generation(model_tok):
    qwen, smol, gemma = model_tok("qwen05"), model_tok("smollm2"), model_tok("gemma")
    assert (qwen.bos_id, qwen.eos_id, qwen.eot_id, qwen.add_bos) == (151643, 151645, 151645, False)
    # </s>, <|endoftext|>, <|im_end|>, <|fim_pad|>, <|repo_name|>, <|file_sep|>
    assert qwen.eog_ids == {128247, 151643, 151645, 151662, 151663, 151664}
    # SmolLM2 has two EOT-looking tokens; llama.cpp's hash-map walk meets <|endoftext|> (0) first
    assert (smol.bos_id, smol.eos_id, smol.eot_id, smol.add_bos) == (1, 2, 0, False)
    assert smol.eog_ids == {0, 2, 4}  # <|endoftext|>, <|im_end|>, <reponame> (FIM repo)
    assert (gemma.bos_id, gemma.eos_id, gemma.eot_id, gemma.add_bos) == (2, 1, 106, True)
    assert gemma.eog_ids == {1, 106, 212}  # <eos>, <end_of_turn>, </s>
    assert gemma.is_eog(106) and not gemma.is_eog(2)
    assert gemma.token_text(106) == "<end_of_turn>"
    assert gemma.n_vocab == 262144 and qwen.n_vocab == 151936


@pytest.mark.slow
def test_control_tokens_render_unless_skipped(model_tok):
    tok = model_tok("qwen05")
    assert tok.token_to_piece(151645) == b"<|im_end|>"
    assert tok.token_to_piece(151645, special=False) == b""
    ids = [151644, 872, 198, 151645]
    assert tok.decode(ids) == "<|im_start|>user\n<|im_end|>"
    assert tok.decode(ids, skip_special=True) == "user\n"


@pytest.mark.slow
def test_bad_input_does_not_crash(model_tok):
    tok = model_tok("qwen05")
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffd\ufffd\ufffdb"  # a lone surrogate is not UTF-8
    with pytest.raises(IndexError):
        tok.decode([-1])
    assert tok.encode("", add_special=True) == [] and model_tok("gemma").encode("") == [2]


ROUND_TRIP_TEXTS = [
    "Hello world",
    "  leading spaces, trailing spaces  ",
    "Tabs\tand\nnewlines\r\n\n",
    "Émile a écrit: «Bonjour le monde» — 日本語のテキストも 🚀 here.",
    "def f(x):\n    return x ** 2  # 😀👍🏽\n",
    "ﬁ ligature, 한국어, العربية, ٣٤٥, ½",
]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_decode_encode_round_trips(model_tok, model, text):
    tok = model_tok(model)
    assert tok.decode(tok.encode(text, add_special=False)) == text


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_streaming_never_breaks_characters(model_tok, model):
    tok = model_tok(model)
    text = "日本語のテキスト 🚀🦙 emoji 👍🏽 and CJK 漢字 mixed"
    ids = tok.encode(text, add_special=False)
    # the test only means something if some character really is split across tokens
    assert any(not _is_utf8(tok.token_to_piece(t)) for t in ids)
    stream = tok.detokenizer()
    pieces = [stream.feed(t) for t in ids] + [stream.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == tok.decode(ids) == text


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.slow
def test_streaming_skips_control_tokens(model_tok):
    tok = model_tok("qwen05")
    stream = tok.detokenizer(skip_special=True)
    assert [stream.feed(t) for t in (151644, 872, 151645)] == ["", "user", ""]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["qwen05", "gemma"])
def test_construction_is_fast(request, model):
    g = GGUFFile(request.getfixturevalue(f"{model}_path"))
    g.metadata  # noqa: B018 - parse the GGUF outside the timed part
    start = time.perf_counter()
    Tokenizer.from_gguf(g)
    assert time.perf_counter() - start < 2.0


# -- llama.cpp quirks, no model needed --------------------------------------------------------------------

# unicode_regex_split output (llama.cpp, collapsed-category regexes): non-ASCII spaces and digits included
SPLITS = [
    ("gpt2", "Hello  world!\n\n  x", ["Hello", " ", " world", "!", "\n\n ", " x"]),
    ("gpt2", "I'm   don'T 12345\t\tok", ["I", "'m", "  ", " don", "'", "T", " 12345", "\t", "\t", "ok"]),
    ("gpt2", " \xa0\u3000a\u2000b\x85c", [" \xa0", "\u3000", "a", "\u2000", "b", "\x85", "c"]),
    ("llama3", "I'm   don'T 12345\t\tok", ["I", "'m", "  ", " don", "'T", " ", "123", "45", "\t", "\tok"]),
    ("llama3", "héllo wörld 日本語 🚀🚀 ٣٤٥", ["héllo", " wörld", " 日本語", " 🚀🚀", " ", "٣٤٥"]),
    ("qwen2", "Hello  world!\n\n  x", ["Hello", " ", " world", "!\n\n", " ", " x"]),
    ("qwen2", " \xa0\u3000a\u2000b\x85c", [" \xa0", "\u3000a", "\u2000b", "\x85c"]),
    ("default", "a..b--c<=>d $5,000.00",
     ["a", "..", "b", "--", "c", "<=>", "d", " ", "$", "5", ",", "000", ".", "00"]),
    ("deepseek_coder", "héllo wörld 日本語 🚀🚀 ٣٤٥", ["héllo", " wörld", " ", "日本語", " 🚀🚀 ", "٣", "٤", "٥"]),
]


@pytest.mark.parametrize("regex_type,text,words", SPLITS)
def test_pre_tokenizer_splits_like_llama_cpp(regex_type, text, words):
    assert pt.splitter_for(regex_type).split(text) == words


def test_every_pre_tokenizer_name_has_regexes():
    for name, settings in pt.PRE_NAMES.items():
        assert settings.regex_type in pt.REGEXES, name


@pytest.mark.parametrize("raw,clean", [
    (b"Hello , world !", b"Hello, world!"),
    (b"it ' s", b"it's"),
    (b"they 're here , we 've been", b"they're here, we've been"),
    (b"don 't", b"don 't"),
    (b"", b""),
])
def test_clean_spaces_matches_llama_detokenize(raw, clean):
    assert bytes(_clean_spaces(bytearray(raw))) == clean


@pytest.mark.parametrize("data,tail", [
    (b"abc", 0), ("日".encode()[:2], 2), ("日".encode(), 0), ("🚀".encode()[:3], 3), (b"a\x80", 0), (b"\xff", 0),
])
def test_incomplete_utf8_tail(data, tail):
    assert _incomplete_tail(data) == tail


def test_std_hash_matches_libstdcxx():
    # std::hash<std::string> values printed by a g++ 12 build
    known = {"abc": 3663726644998027833, "": 6142509188972423790, "12345678": 10113836418918046885,
             "123456789abc": 4852100995784122604}
    assert {k: hash_bytes(k.encode()) for k in known} == known
    texts = [*known, "x" * 100, "é" * 40, "日本語🚀"]
    assert hash_strings(texts).tolist() == [hash_bytes(t.encode()) for t in texts]
