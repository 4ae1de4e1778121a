"""`llamacpy server` takes llama-server's command line: every flag of llama.cpp 0c1e570's `llama-server --help`
(recorded in tests/data/llama_server/help.txt by scripts/record_llama_server_flags.py), its LLAMA_ARG_* variables,
and an error naming the closest flag for one that neither has."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from llamacpy.cli import llama_server_compat as compat
from llamacpy.cli.llama_server_table import FLAGS
from llamacpy.cli.main import build_parser, main
from llamacpy.cli.options import sampling_kwargs
from llamacpy.gguf import GGMLType
from llamacpy.sampling import SamplingParams
from llamacpy.server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
HELP = ROOT / "tests/data/llama_server/help.txt"


def _recorder():
    spec = importlib.util.spec_from_file_location("record_llama_server_flags",
                                                  ROOT / "scripts/record_llama_server_flags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(*argv: str):
    return build_parser().parse_args(["server", *compat.normalize_argv(list(argv), _server_parser())])


def _server_parser():
    return build_parser()._subparsers._group_actions[0].choices["server"]


def settings(*argv: str) -> ServerSettings:
    a = parse(*argv)
    return ServerSettings.from_args(a, SamplingParams(**sampling_kwargs(a)))


def test_the_committed_table_is_the_recorded_help():
    text = HELP.read_text()
    assert "0c1e570" in text.splitlines()[0]
    assert _recorder().parse_help(text) == FLAGS
    assert len(FLAGS) > 200


def _dummy(value: str | None, names) -> list[str]:
    if value is None:
        return []
    if value == "TYPE":  # KV cache types
        return ["q8_0"]
    if value == "FNAME:SCALE,...":
        return ["a.gguf:0.5"]
    choice = value.strip("{}").split(",")[0].split("|")[0] if value.startswith("{") or "|" in value else None
    return [choice or "1"]


@pytest.mark.parametrize("names, value", [(n, v) for n, v, _e, _d in FLAGS if "--help" not in n
                                          and not {"--version", "--list-devices", "--cache-list"} & set(n)])
def test_every_llama_server_flag_parses(names, value):
    p = _server_parser()
    for name in names:
        assert name in p._option_string_actions, name
    action = p._option_string_actions[names[0]]
    arg = _dummy(value, names)
    if action.choices:
        arg = [str(next(iter(action.choices)))]
    elif action.type in (int, float) or value in ("N", "PORT"):
        arg = ["1"]
    parse(names[0], *arg)


def test_other_names_are_aliases_of_our_flags():
    s = settings("--temperature", "0.25", "--predict", "7", "--spec-draft-n-max", "5", "--no-ui", "--reranking")
    assert (s.sampling.temperature, s.n_predict, s.draft.n_max, s.webui, s.reranking) == (0.25, 7, 5, False, True)


def test_sampler_flags_set_the_server_sampling():
    s = settings("--mirostat", "2", "--mirostat-lr", "0.2", "--mirostat-ent", "3", "--typical-p", "0.7",
                 "--top-n-sigma", "1.5", "--xtc-probability", "0.5", "--xtc-threshold", "0.2",
                 "--dynatemp-range", "0.3", "--dynatemp-exp", "2", "--dry-multiplier", "0.8", "--dry-base", "2",
                 "--dry-allowed-length", "3", "--dry-penalty-last-n", "128",
                 "--dry-sequence-breaker", "none", "--dry-sequence-breaker", ".", "--samplers", "top_k;temp")
    p = s.sampling
    assert (p.mirostat, p.mirostat_eta, p.mirostat_tau, p.typical_p, p.top_n_sigma) == (2, 0.2, 3.0, 0.7, 1.5)
    assert (p.xtc_probability, p.xtc_threshold, p.dynatemp_range, p.dynatemp_exponent) == (0.5, 0.2, 0.3, 2.0)
    assert (p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_penalty_last_n) == (0.8, 2.0, 3, 128)
    assert p.dry_sequence_breakers == (".",) and p.samplers == ("top_k", "temperature")
    assert settings("--sampling-seq", "kt").sampling.samplers == ("top_k", "temperature")


def test_underscores_read_as_dashes():
    assert settings("--top_k", "3", "--ctx_size", "64").sampling.top_k == 3


def test_environment_sets_flags_and_the_command_line_wins(monkeypatch):
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "1234")
    monkeypatch.setenv("LLAMA_ARG_ALIAS", "a,b")
    monkeypatch.setenv("LLAMA_ARG_ENDPOINT_METRICS", "1")
    monkeypatch.setenv("LLAMA_ARG_NO_ENDPOINT_SLOTS", "1")
    monkeypatch.setenv("LLAMA_ARG_JINJA", "false")
    monkeypatch.setenv("LLAMA_API_KEY", "k1,k2")
    s = settings()
    assert (s.ctx_size, s.alias, s.metrics, s.slots, s.jinja, s.api_keys()) == (
        1234, ["a", "b"], True, False, False, ["k1", "k2"])
    s = settings("-c", "99", "--jinja", "--slots")
    assert (s.ctx_size, s.jinja, s.slots) == (99, True, True)


def test_context_shift_and_keep(monkeypatch):
    assert (settings().context_shift, settings().keep) == (False, 0)
    assert (settings("--context-shift", "--keep", "-1").context_shift, settings("--keep", "-1").keep) == (True, -1)
    monkeypatch.setenv("LLAMA_ARG_CONTEXT_SHIFT", "enabled")
    assert settings().context_shift and not settings("--no-context-shift").context_shift
    assert settings().cache_reuse == 0 and settings("--cache-reuse", "256").cache_reuse == 256


def test_a_bad_environment_value_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "lots")
    with pytest.raises(SystemExit):
        build_parser()
    assert "LLAMA_ARG_CTX_SIZE" in capsys.readouterr().err


def test_gpu_and_no_effect_flags_are_logged_not_ignored():
    notes = compat.check(parse("-ngl", "99", "-fa", "on", "-lm", "mlock", "-tb", "2", "--adaptive-decay", "2"))
    assert sorted(notes) == sorted(["-lm: no effect (weights are always read from the memory map)",
                     "-tb: no effect (prompt and generation share -t here)",
                     "--adaptive-decay: no effect while --adaptive-target is off",
                     "-fa: no effect (llamacpy has one attention kernel; its numerics follow llama.cpp's CPU path)",
                     "-ngl: no effect, llamacpy runs on the CPU"])


def test_gpu_flags_from_the_environment_are_logged(monkeypatch):
    monkeypatch.setenv("LLAMA_ARG_N_GPU_LAYERS", "99")
    monkeypatch.setenv("LLAMA_ARG_NO_KV_OFFLOAD", "1")
    assert sorted(compat.check(parse())) == ["LLAMA_ARG_NO_KV_OFFLOAD: no effect, llamacpy runs on the CPU",
                                             "LLAMA_ARG_N_GPU_LAYERS: no effect, llamacpy runs on the CPU"]


@pytest.mark.parametrize("argv", [["--no-mmproj"], ["--rope-scaling", "none"],
                                  ["--adaptive-target", "-1"], ["--spec-type", "none"]])
def test_a_missing_feature_asked_off_is_what_llamacpy_does(argv):
    assert compat.check(parse(*argv))[0].endswith("as llamacpy does")


@pytest.mark.parametrize("argv, message", [
    (["--spm-infill"], "--spm-infill: llamacpy does not support SPM infill order yet"),
    (["-hf", "org/repo"], "Hugging Face downloads"),
    (["--gpt-oss-20b-default"], "preset of llama-server's downloads"),
])
def test_a_missing_feature_asked_on_stops_with_the_flag_named(argv, message):
    with pytest.raises(SystemExit, match=message):
        compat.check(parse(*argv))


def test_kv_cache_types_from_flags_and_the_environment(monkeypatch, capsys):
    assert settings("-ctk", "q8_0", "--cache-type-v", "q4_0", "-ctvd", "iq4_nl").cache_types == (
        GGMLType.Q8_0, GGMLType.Q4_0)
    assert settings("-ctvd", "iq4_nl").cache_types_draft == (GGMLType.F16, GGMLType.IQ4_NL)
    monkeypatch.setenv("LLAMA_ARG_CACHE_TYPE_K", "q5_1")
    assert settings().cache_types == (GGMLType.Q5_1, GGMLType.F16)
    assert settings("-ctk", "q4_1").cache_types == (GGMLType.Q4_1, GGMLType.F16)  # the flag wins
    with pytest.raises(SystemExit):
        settings("-ctk", "bf16")
    assert "unsupported KV cache type 'bf16'" in capsys.readouterr().err


def test_lora_flags_keep_the_command_lines_order(capsys):
    s = settings("--lora", "a.gguf,b.gguf", "--lora-scaled", "c.gguf:0.5,/x/d.gguf:2", "--lora", "e.gguf",
                 "--lora-init-without-apply")
    assert s.lora == [("a.gguf", 1.0), ("b.gguf", 1.0), ("c.gguf", 0.5), ("/x/d.gguf", 2.0), ("e.gguf", 1.0)]
    assert s.lora_init_without_apply
    with pytest.raises(SystemExit):
        settings("--lora-scaled", "c.gguf")
    assert "expected FNAME:SCALE" in capsys.readouterr().err


def test_an_unknown_flag_names_the_closest(capsys):
    with pytest.raises(SystemExit):
        main(["server", "--jnja"])
    assert "unknown argument: --jnja (did you mean --jinja?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no abbreviations, as llama.cpp
        main(["server", "--ctx", "5"])


@pytest.mark.parametrize("flag, text", [("--version", "llamacpy"), ("--list-devices", "CPU"),
                                        ("--cache-list", "")])
def test_print_and_exit_flags(flag, text, capsys):
    with pytest.raises(SystemExit) as e:
        main(["server", flag])
    assert e.value.code == 0 and text in capsys.readouterr().out


def test_server_settings_from_llama_server_flags(tmp_path):
    s = settings("--tags", "x,y", "--chat-template-kwargs", '{"enable_thinking": false}', "--no-jinja")
    assert (s.tags, s.template_kwargs(), s.jinja) == (["x", "y"], {"enable_thinking": False}, False)
    with pytest.raises(ValueError, match="invalid JSON"):
        settings("--chat-template-kwargs", "{nope").template_kwargs()
    with pytest.raises(ValueError, match="JSON object"):
        settings("--chat-template-kwargs", "[1]").template_kwargs()


def test_ssl_files_go_together(tmp_path):
    from llamacpy.server.run import _ssl

    with pytest.raises(ValueError, match="go together"):
        _ssl(settings("--ssl-key-file", "k.pem"))
    with pytest.raises(FileNotFoundError, match="k.pem"):
        _ssl(settings("--ssl-key-file", "k.pem", "--ssl-cert-file", "c.pem"))
    (tmp_path / "k.pem").write_text("k")
    (tmp_path / "c.pem").write_text("c")
    s = settings("--ssl-key-file", str(tmp_path / "k.pem"), "--ssl-cert-file", str(tmp_path / "c.pem"))
    assert _ssl(s) == {"ssl_keyfile": str(tmp_path / "k.pem"), "ssl_certfile": str(tmp_path / "c.pem")}


def test_notes_are_logged_at_start(monkeypatch, caplog):
    from llamacpy.cli import server
    from llamacpy.server.run import configure_logging

    monkeypatch.setattr("llamacpy.server.serve", lambda settings: 0)
    configure_logging()
    logger = logging.getLogger("llamacpy")
    logger.addHandler(caplog.handler)
    try:
        assert server.run(parse("-ngl", "99")) == 0
    finally:
        logger.removeHandler(caplog.handler)
    assert "-ngl: no effect, llamacpy runs on the CPU" in caplog.text


def test_reasoning_flags_reach_the_template():
    assert settings("--reasoning", "off").template_kwargs() == {"enable_thinking": False}
    assert settings("-rea", "on").template_kwargs() == {"enable_thinking": True}
    assert settings("--reasoning-budget", "0").template_kwargs() == {"enable_thinking": False}
    assert settings("--reasoning", "off", "--chat-template-kwargs", '{"enable_thinking": true}').template_kwargs() \
        == {"enable_thinking": True}  # the explicit kwargs win
    assert settings().template_kwargs() == {} and settings().reasoning_format == "auto"
    with pytest.raises(ValueError, match="token budget"):
        settings("--reasoning-budget", "100").template_kwargs()
