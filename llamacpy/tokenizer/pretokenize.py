"""Pre-tokenizer: llama.cpp's regex split (unicode_regex_split), chosen by `tokenizer.ggml.pre`.

llama.cpp does not run these regexes with full Unicode support. When a regex uses \\p{..} it "collapses" the text
to one byte per codepoint (ASCII kept, other codepoints replaced by a byte standing for their category, from
llama.cpp's own Unicode tables) and rewrites \\p{L} to `[<letter byte>A-Za-z]` etc.; otherwise it runs
std::wregex with non-ASCII whitespace mapped to \\v. We do the same with Python's `re` in ASCII mode, so the
splits match llama.cpp's, quirks included, rather than Hugging Face's. Text a regex does not match becomes its
own piece, and each regex of a list splits the pieces left by the previous one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import unicode as uc

_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_JAIS2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",
)
_DEEPSEEK_LLM = (
    '[\r\n]',
    r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
    r"\s+$",
    '[一-龥ࠀ-一가-\ud7ff]+',
    r"\p{N}+",
)
_DEEPSEEK3_LLM = (
    r"\p{N}{1,3}",
    '[一-龥\u3040-ゟ゠-ヿ]+',
    '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+',
)
_SPARK2_5 = (
    r"\p{N}{1,3}",
    '[一-龥\u3040-ゟ゠-ヿ]+',
    '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+',
    r"\p{N}",
)
_YOUTU = (
    '[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥\u3040-ゟ゠-ヿ]+',
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_DEEPSEEK_CODER = (
    '[\r\n]',
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    '[一-龥ࠀ-一가-\ud7ff]+',
    r"\p{N}",
)
_FALCON = (
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    '[0-9][0-9][0-9]',
)
_STARCODER = (
    r"\p{N}",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
)
_GPT2 = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
)
_STABLELM2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_QWEN35 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_PORO = (
    r" ?[^(\s|.,!?…。，、।۔،)]+",
)
_VIKING = (
    r" ?[^(\s|.,!?…。，、।۔،)]+",
    r"\p{N}",
)
_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_CHAMELEON = (
    '<sentinel:[0-9]+>',
    '(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z',
    r"([\t\n]|    |  )",
    r"\p{N}",
    r"[\p{P}!-/:-@\[-`{-~]",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
)
_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_GRANITE_EMB_MULTI = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_TINY_AYA = (
    r"\d{1,3}(?=(?:\d{3})*\b)",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_KIMI_K2 = (
    r"\p{Han}+",
)
_SUPERBPE = (
    r"\p{N}+",
    r"(?=(\d{3})+(?!\d))",
)
_BAILINGMOE = (
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
)
_SEED_CODER = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_UFAKZEKA = (
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_AFMOE = (
    r"\p{AFMoE_digits}",
    '[一-鿿㐀-䶿豈-\ufaff\u3040-ゟ゠-ヿ･-ﾟ⼀-\u2fdfเ-\u0e7f\u0e80-\u0effក-\u17ffက-႟ꩠ-ꩿꧠ-\ua9ff가-\ud7afᄀ-ᇿ]+',
    '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
)
_LAGUNA = (
    r"[^\n]+|[\n]+",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_EXAONE_MOE = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
)
_GEMMA4 = (
    r"[^\n]+|[\n]+",
)
_MINICPM5 = (
    r"\p{N}{1,3}",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)
_WHITESPACE = (
    r"\S+",
)
_DEFAULT = (
    r"[\p{P}\$\+<=>\^~\|]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"\p{N}+",
    '[0-9][0-9][0-9]',
)
REGEXES: dict[str, tuple[str, ...]] = {
    "llama3": _LLAMA3,
    "dbrx": _LLAMA3,
    "smaug": _LLAMA3,
    "chatglm4": _LLAMA3,
    "jais2": _JAIS2,
    "deepseek_llm": _DEEPSEEK_LLM,
    "deepseek3_llm": _DEEPSEEK3_LLM,
    "hunyuan_dense": _DEEPSEEK3_LLM,
    "joyai_llm": _DEEPSEEK3_LLM,
    "hy_v4": _DEEPSEEK3_LLM,
    "spark2_5": _SPARK2_5,
    "youtu": _YOUTU,
    "deepseek_coder": _DEEPSEEK_CODER,
    "falcon": _FALCON,
    "starcoder": _STARCODER,
    "refact": _STARCODER,
    "command_r": _STARCODER,
    "smollm": _STARCODER,
    "codeshell": _STARCODER,
    "exaone": _STARCODER,
    "minerva": _STARCODER,
    "mellum2": _STARCODER,
    "gpt2": _GPT2,
    "mpt": _GPT2,
    "olmo": _GPT2,
    "jais": _GPT2,
    "trillion": _GPT2,
    "granite_docling": _GPT2,
    "stablelm2": _STABLELM2,
    "qwen2": _STABLELM2,
    "hunyuan": _STABLELM2,
    "solar_open": _STABLELM2,
    "grok_2": _STABLELM2,
    "qwen35": _QWEN35,
    "poro": _PORO,
    "bloom": _PORO,
    "gpt3_finnish": _PORO,
    "viking": _VIKING,
    "tekken": _TEKKEN,
    "chameleon": _CHAMELEON,
    "gpt4o": _GPT4O,
    "minimax_m2": _GPT4O,
    "granite_emb_multi": _GRANITE_EMB_MULTI,
    "tiny_aya": _TINY_AYA,
    "kimi_k2": _KIMI_K2,
    "superbpe": _SUPERBPE,
    "bailingmoe": _BAILINGMOE,
    "seed_coder": _SEED_CODER,
    "ufakzeka": _UFAKZEKA,
    "afmoe": _AFMOE,
    "laguna": _LAGUNA,
    "exaone_moe": _EXAONE_MOE,
    "gemma4": _GEMMA4,
    "sarvam_moe": _GEMMA4,
    "minicpm5": _MINICPM5,
    "whitespace": _WHITESPACE,
    "default": _DEFAULT,
}


@dataclass(frozen=True)
class PreSettings:
    """Per-`tokenizer.ggml.pre` flags of llama_vocab::impl::load (BPE defaults otherwise)."""

    regex_type: str
    clean_spaces: bool = True
    ignore_merges: bool = False
    add_bos: bool = False
    add_sep: bool = False
    escape_whitespaces: bool = False
    no_bos: bool = False  # special_bos_id = LLAMA_TOKEN_NULL


def _p(regex_type: str, **kw: bool) -> PreSettings:
    return PreSettings(regex_type, **kw)


_NOCLEAN = {"clean_spaces": False}

PRE_NAMES: dict[str, PreSettings] = {
    "default": _p("default"),
    "minicpm5": _p("minicpm5", ignore_merges=True),
    **dict.fromkeys(
        ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"],
        _p("llama3", ignore_merges=True, add_bos=True),
    ),
    "deepseek-llm": _p("deepseek_llm", **_NOCLEAN),
    "deepseek-coder": _p("deepseek_coder", **_NOCLEAN),
    "deepseek-v3": _p("deepseek3_llm", **_NOCLEAN),
    "spark2_5": _p("spark2_5", **_NOCLEAN),
    "youtu": _p("youtu", clean_spaces=False, ignore_merges=True),
    "falcon": _p("falcon"),
    "mpt": _p("mpt"),
    "starcoder": _p("starcoder"),
    **dict.fromkeys(
        ["gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
         "modern-bert", "exaone4"],
        _p("gpt2"),
    ),
    "jais-2": _p("jais2"),
    **dict.fromkeys(["gemma4", "granite-embed-multi-311m"], _p("gemma4", escape_whitespaces=True)),
    "sarvam-moe": _p("sarvam_moe", escape_whitespaces=True, clean_spaces=False),
    **dict.fromkeys(["jina-v1-en", "jina-v2-code", "roberta-bpe"], _p("gpt2", add_sep=True)),
    "refact": _p("refact"),
    "command-r": _p("command_r", **_NOCLEAN),
    **dict.fromkeys(["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2"], _p("qwen2", **_NOCLEAN)),
    "qwen35": _p("qwen35", **_NOCLEAN),
    "stablelm2": _p("stablelm2"),
    "olmo": _p("olmo"),
    "dbrx": _p("dbrx"),
    "smaug-bpe": _p("smaug"),
    "poro-chat": _p("poro", **_NOCLEAN),
    "chatglm-bpe": _p("chatglm4", no_bos=True),
    **dict.fromkeys(["glm4", "glm5"], _p("chatglm4", no_bos=True, ignore_merges=True)),
    "viking": _p("viking", **_NOCLEAN),
    "jais": _p("jais"),
    "tekken": _p("tekken", clean_spaces=False, ignore_merges=True, add_bos=True),
    "smollm": _p("smollm", **_NOCLEAN),
    "codeshell": _p("codeshell"),
    "bloom": _p("bloom"),
    "gpt3-finnish": _p("gpt3_finnish"),
    "exaone": _p("exaone"),
    "exaone-moe": _p("exaone_moe"),
    "chameleon": _p("chameleon", add_bos=True, clean_spaces=False),
    "minerva-7b": _p("minerva"),
    "megrez": _p("qwen2"),
    **dict.fromkeys(["gpt-4o", "llama4", "kanana2", "talkie"], _p("gpt4o", **_NOCLEAN)),
    "granite-embed-multi-97m": _p("granite_emb_multi", clean_spaces=False, ignore_merges=True),
    **dict.fromkeys(["tiny_aya", "cohere2moe"], _p("tiny_aya", **_NOCLEAN)),
    "superbpe": _p("superbpe", **_NOCLEAN),
    "trillion": _p("trillion", **_NOCLEAN),
    "granite-docling": _p("granite_docling", **_NOCLEAN),
    **dict.fromkeys(["bailingmoe", "bailingmoe2", "llada-moe"], _p("bailingmoe", **_NOCLEAN)),
    "seed-coder": _p("seed_coder", **_NOCLEAN),
    "hunyuan": _p("hunyuan", **_NOCLEAN),
    "hunyuan-dense": _p("hunyuan_dense", **_NOCLEAN),
    "hy_v4": _p("hy_v4", **_NOCLEAN),
    "joyai-llm": _p("joyai_llm", **_NOCLEAN),
    "kimi-k2": _p("kimi_k2", **_NOCLEAN),
    "ufakzeka": _p("ufakzeka", **_NOCLEAN),
    "grok-2": _p("grok_2", **_NOCLEAN),
    "afmoe": _p("afmoe", **_NOCLEAN),
    "laguna": _p("laguna", **_NOCLEAN),
    "minimax-m2": _p("minimax_m2", **_NOCLEAN),
    "solar-open": _p("solar_open", **_NOCLEAN),
    "mellum2": _p("mellum2"),
}

# regex types whose words are raw UTF-8 (SPM-style BPE), not GPT-2 byte-level chars
RAW_UTF8_TYPES = frozenset({"gemma4", "sarvam_moe", "whitespace"})

# \p{..} classes llama.cpp knows, and what each collapses to (k_ucat_enum / k_ucat_map)
_UCAT = {
    r"\p{N}": uc.NUMBER, r"\p{L}": uc.LETTER, r"\p{P}": uc.PUNCTUATION, r"\p{M}": uc.ACCENT_MARK,
    r"\p{S}": uc.SYMBOL, r"\p{Lu}": uc.LETTER, r"\p{Ll}": uc.LETTER, r"\p{Lt}": uc.LETTER,
    r"\p{Lm}": uc.LETTER, r"\p{Lo}": uc.LETTER,
}
_UCAT_ASCII = {
    uc.NUMBER: "0-9",
    uc.LETTER: "A-Za-z",
    uc.PUNCTUATION: r"!-#%-*,-/:-;?-@\[-\]_\{\}",
    uc.ACCENT_MARK: "",
    uc.SYMBOL: r"\$\+<->^`\|\~",
}

Spans = list[tuple[int, int]]


def collapse_regex(expr: str) -> str:
    """Rewrite \\p{..} for the collapsed text, exactly as unicode_regex_split does (bracket tracking included)."""
    out: list[str] = []
    inside = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == "[" and (i == 0 or expr[i - 1] != "\\"):
            out.append(c)
            inside = True
        elif inside and c == "]" and expr[i - 1] != "\\":
            out.append(c)
            inside = False
        elif c == "\\" and i + 3 < len(expr) and expr[i + 1] == "p" and expr[i + 2] == "{":
            close = expr.find("}", i + 3)
            flag = _UCAT.get(expr[i:close + 1]) if 0 <= close <= i + 10 else None
            if flag is None:
                out.append(c)
            else:
                cls = chr(uc.COLLAPSED[flag]) + _UCAT_ASCII[flag]
                out.append(cls if inside else f"[{cls}]")
                i = close
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _std_regex(expr: str) -> re.Pattern:
    # ECMAScript `$` is end of input only; Python's also matches before a final "\n"
    expr = re.sub(r"(?<!\\)\$$", r"\\Z", expr)
    return re.compile(expr, re.ASCII)


class _RegexStep:
    """One regex of the list, with std::regex_iterator splitting semantics (matches and the gaps between)."""

    def __init__(self, expr: str):
        self.collapsed = any(k in expr for k in _UCAT)
        self.pattern = _std_regex(collapse_regex(expr) if self.collapsed else expr)

    def __call__(self, subject: str, spans: Spans) -> Spans:
        out: Spans = []
        finditer = self.pattern.finditer
        for start, end in spans:
            last = start
            for m in finditer(subject, start, end):
                s, e = m.span()
                if s > last:
                    out.append((last, s))
                if e > s:
                    out.append((s, e))
                last = e
            if last < end:
                out.append((last, end))
        return out


_DIGITS = re.compile("[0-9\xd1]+")


def _afmoe_digits(subject: str, spans: Spans) -> Spans:
    """unicode_regex_split_custom_afmoe: digit runs in groups of 3 from the right; the text before a run
    joins its first group (a quirk kept for identical ids)."""
    out: Spans = []
    for start, end in spans:
        prev = start
        for m in _DIGITS.finditer(subject, start, end):
            cur, stop = m.span()
            rem = (stop - cur) % 3
            cuts = ([cur + rem] if rem else []) + list(range(cur + rem + 3, stop + 1, 3))
            for cut in cuts:
                out.append((prev, cut))
                prev = cut
        if prev < end:
            out.append((prev, end))
    return out


class _CollapsedStep:
    """A custom llama.cpp splitter that works on the collapsed text."""

    collapsed = True

    def __init__(self, fn: Callable[[str, Spans], Spans]):
        self.fn = fn

    def __call__(self, subject: str, spans: Spans) -> Spans:
        return self.fn(subject, spans)


_CUSTOM = {
    r"\p{AFMoE_digits}": _afmoe_digits,
    r"\d{1,3}(?=(?:\d{3})*\b)": _afmoe_digits,  # tiny_aya: llama.cpp reuses the AFMoE digit splitter
}


class RegexSplitter:
    """Splits a text fragment into words the way llama.cpp's unicode_regex_split does."""

    def __init__(self, exprs: tuple[str, ...]):
        if r"\p{Han}+" in exprs:
            raise NotImplementedError("the kimi-k2 pre-tokenizer is not supported")
        self.steps = [_CollapsedStep(_CUSTOM[e]) if e in _CUSTOM else _RegexStep(e) for e in exprs]
        self.need_collapse = any(s.collapsed for s in self.steps)
        self.need_wide = not all(s.collapsed for s in self.steps)

    def spans(self, text: str) -> Spans:
        collapsed = uc.collapse(text) if self.need_collapse else ""
        wide = text.translate(uc.non_ascii_whitespace()) if self.need_wide and not text.isascii() else text
        spans: Spans = [(0, len(text))] if text else []
        for step in self.steps:
            spans = step(collapsed if step.collapsed else wide, spans)
        return spans

    def split(self, text: str) -> list[str]:
        return [text[s:e] for s, e in self.spans(text)]


def splitter_for(regex_type: str) -> RegexSplitter:
    return RegexSplitter(REGEXES[regex_type])
