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


# -- opt-in: fuzz against llama.cpp's own llama_vocab, compiled from the sdist ---------------------------------
#
#     LLAMACPY_TOKENIZER_ORACLE=1 python -m pytest tests/unit/test_tokenizer.py -k oracle
#
# Builds llama-vocab.cpp + unicode.cpp + gguf with a stub model loader (about a minute of g++), then compares
# random texts (special tokens, odd whitespace, any codepoint) and random id sequences in both directions.

_ORACLE_LOADER = r"""
#pragma once
#include "llama-arch.h"
#include "llama-impl.h"
#include "gguf.h"
#include <stdexcept>
#include <string>
struct llama_model_loader {
    gguf_context * metadata; LLM_KV llm_kv;
    llama_model_loader(gguf_context * m, llm_arch a) : metadata(m), llm_kv(a) {}
    template<typename T> bool get_key(enum llm_kv kid, T & r, bool required = true) {
        const std::string key = llm_kv(kid); int id = gguf_find_key(metadata, key.c_str());
        if (id < 0) { if (required) throw std::runtime_error("missing " + key); return false; }
        set(id, r); return true;
    }
    void chk(int id, gguf_type t) { if (gguf_get_kv_type(metadata, id) != t) throw std::runtime_error("type"); }
    void set(int id, std::string & r) { chk(id, GGUF_TYPE_STRING); r = gguf_get_val_str(metadata, id); }
    void set(int id, uint32_t & r) { chk(id, GGUF_TYPE_UINT32); r = gguf_get_val_u32(metadata, id); }
    void set(int id, bool & r) { chk(id, GGUF_TYPE_BOOL); r = gguf_get_val_bool(metadata, id); }
};
"""

_ORACLE_MAIN = r"""
#include "llama-vocab.h"
#include "llama-model-loader.h"
#include <cstdarg>
#include <cstdio>
#include <vector>
void llama_log_internal(ggml_log_level, const char *, ...) {}
void llama_log_callback_default(ggml_log_level, const char *, void *) {}
std::string format(const char * fmt, ...) {
    va_list ap, ap2; va_start(ap, fmt); va_copy(ap2, ap); int n = vsnprintf(NULL, 0, fmt, ap);
    std::vector<char> b(n + 1); vsnprintf(b.data(), n + 1, fmt, ap2); va_end(ap2); va_end(ap); return std::string(b.data(), n);
}
void replace_all(std::string & s, const std::string & a, const std::string & b) {
    std::string out; size_t pos = 0, last = 0;
    while ((pos = s.find(a, last)) != std::string::npos) { out.append(s, last, pos - last); out += b; last = pos + a.size(); }
    out.append(s, last, std::string::npos); s = out;
}
extern "C" {
void ggml_backend_tensor_get(const ggml_tensor *, void *, size_t, size_t) { __builtin_trap(); }
void ggml_backend_tensor_set(ggml_tensor *, const void *, size_t, size_t) { __builtin_trap(); }
void ggml_backend_tensor_memset(ggml_tensor *, uint8_t, size_t, size_t) { __builtin_trap(); }
enum ggml_backend_buffer_usage ggml_backend_buffer_get_usage(ggml_backend_buffer_t) { __builtin_trap(); }
}
static uint32_t rd() { uint32_t v; if (fread(&v, 4, 1, stdin) != 1) exit(0); return v; }
static void wr(uint32_t v) { fwrite(&v, 4, 1, stdout); }
int main(int, char ** argv) {
    gguf_init_params p = { true, nullptr };
    gguf_context * ctx = gguf_init_from_file(argv[1], p);
    llm_arch arch = llm_arch_from_string(gguf_get_val_str(ctx, gguf_find_key(ctx, "general.architecture")));
    llama_model_loader ml(ctx, arch);
    llama_vocab vocab;
    vocab.load(ml, LLM_KV(arch));
    std::vector<uint32_t> eog;
    for (uint32_t i = 0; i < vocab.n_tokens(); i++) if (vocab.is_eog(i)) eog.push_back(i);
    wr(vocab.token_eot()); wr(eog.size()); for (auto e : eog) wr(e);
    for (;;) {
        uint32_t op = rd(), flags = rd(), n = rd();
        if (op == 1) {
            std::string t(n, '\0'); if (n) fread(&t[0], 1, n, stdin);
            auto ids = vocab.tokenize(t, flags & 1, flags & 2); wr(ids.size()); for (auto i : ids) wr(i);
        } else {
            std::vector<llama_token> ids(n); for (auto & i : ids) i = rd();
            std::string t = vocab.detokenize(ids, flags & 1); wr(t.size()); fwrite(t.data(), 1, t.size(), stdout);
        }
    }
}
"""


@pytest.fixture(scope="module")
def llama_vocab_oracle(llama_cpp_data, tmp_path_factory) -> Path:
    import os
    import shutil
    import subprocess
    import tarfile

    from llamacpy.catalog import cache_dir

    if os.environ.get("LLAMACPY_TOKENIZER_ORACLE") != "1" or not shutil.which("g++"):
        pytest.skip("set LLAMACPY_TOKENIZER_ORACLE=1 (needs g++) to fuzz against llama.cpp's llama_vocab")
    root = tmp_path_factory.mktemp("oracle")
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    with tarfile.open(cache_dir() / "testdata" / "sdist" / "llama_cpp_python-0.3.36.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and (
            m.name.startswith((prefix + "src/", prefix + "include/", prefix + "ggml/include/"))
            or (m.name.startswith(prefix + "ggml/src/") and m.name.count("/") == prefix.count("/") + 2)
            or (m.name.startswith(prefix + "ggml/src/ggml-cpu/") and m.name.endswith(".h")))]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(root, members=members, filter="data")
    work = root / "work"
    work.mkdir()
    shutil.copy(root / "src" / "llama-vocab.cpp", work)  # so "llama-model-loader.h" resolves to the stub
    (work / "llama-model-loader.h").write_text(_ORACLE_LOADER)
    (work / "main.cpp").write_text(_ORACLE_MAIN)
    (work / "ggml-version.h").write_text('#define GGML_VERSION "0"\n#define GGML_COMMIT "0"\n')
    inc = [f"-I{work}", f"-I{root / 'src'}", f"-I{root / 'include'}", f"-I{root / 'ggml/include'}",
           f"-I{root / 'ggml/src'}"]
    sources = [work / "llama-vocab.cpp", work / "main.cpp", root / "src/llama-arch.cpp", root / "src/unicode.cpp",
               root / "src/unicode-data.cpp", root / "ggml/src/gguf.cpp", root / "ggml/src/ggml.cpp",
               root / "ggml/src/ggml-threading.cpp", root / "ggml/src/ggml.c", root / "ggml/src/ggml-quants.c"]
    objects = []
    for src in sources:
        obj = work / (src.name + ".o")
        cc = ["gcc", "-D_GNU_SOURCE"] if src.suffix == ".c" else ["g++", "-std=c++17"]
        subprocess.run([*cc, "-O1", "-w", *inc, "-c", str(src), "-o", str(obj)], check=True)
        objects.append(str(obj))
    subprocess.run(["g++", *objects, "-o", str(work / "vocab"), "-lm", "-lpthread"], check=True)
    return work / "vocab"


def _oracle_texts(rng, specials: list[str]) -> list[str]:
    pool = list("abcXYZ019 \t\n\r\v\x0c'.,!?-_()<>|/\\") + ["'s", "'LL", "  ", "\n\n", " ,", " ' ", "日本語", "🚀",
                                                         "é", "e\u0301", "\u00a0", "\u3000", "٣٤", "ﬁ", "▁", "<0x0A>"]
    texts = []
    for _ in range(400):
        parts = []
        for _ in range(rng.randint(0, 24)):
            r = rng.random()
            if r < 0.25:
                cp = rng.choice([0x80, 0x800, 0x10000, 0x110000])
                cp = rng.randrange(cp)
                parts.append(chr(cp) if not 0xD800 <= cp < 0xE000 else "x")
            elif r < 0.9 or not specials:
                parts.append(rng.choice(pool))
            else:
                parts.append(rng.choice(["", " ", "\n"]) + rng.choice(specials) + rng.choice(["", " ", "\n"]))
        texts.append("".join(parts))
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("name", [*sorted(VOCABS_WITH_VECTORS), "nomic-bert-moe", "aquila", "baichuan", "gpt-neox",
                                  *MODELS])
def test_oracle_fuzz_against_llama_vocab(request, llama_vocab_oracle, llama_cpp_data, name):
    import random
    import struct
    import subprocess

    if name in MODELS:
        path = request.getfixturevalue(f"{name}_path")
    else:
        path = llama_cpp_data / "models" / f"ggml-vocab-{name}.gguf"
    tok = _vocab_tokenizer(path)
    rng = random.Random(name)
    specials = [tok.token_text(i) for i in tok.vocab.special_cache[:100]]
    cases = [(t, rng.random() < 0.5, rng.random() < 0.5) for t in _oracle_texts(rng, specials)]
    seqs = [[rng.randrange(tok.n_vocab) for _ in range(rng.randint(1, 10))] for _ in range(300)]
    req = b"".join(struct.pack("<3I", 1, add | parse << 1, len(b := t.encode())) + b for t, add, parse in cases)
    req += b"".join(struct.pack(f"<3I{len(q)}I", 2, sp, len(q), *q) for q in seqs for sp in (0, 1))
    out = subprocess.run([str(llama_vocab_oracle), str(path)], input=req, capture_output=True, check=True).stdout
    pos = 0

    def take(n: int) -> tuple[int, ...]:
        nonlocal pos
        pos += 4 * n
        return struct.unpack_from(f"<{n}I", out, pos - 4 * n)

    eot = take(1)[0]
    assert (None if eot == 0xFFFFFFFF else eot) == tok.eot_id
    assert set(take(take(1)[0])) == tok.eog_ids
    for text, add, parse in cases:
        assert tok.encode(text, add_special=add, parse_special=parse) == list(take(take(1)[0])), (text, add, parse)
    for q in seqs:
        for sp in (0, 1):
            n = take(1)[0]
            pos += n
            assert tok.decode(q, skip_special=not sp) == out[pos - n:pos].decode("utf-8", "replace"), (q, sp)
