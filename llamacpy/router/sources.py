"""Where a router's models come from: a models folder, the catalog, a preset INI (llama-server's format).

    --models-dir DIR       every DIR/NAME.gguf is model NAME; every DIR/NAME/ holding a .gguf is model NAME
                           (its first shard `-00001-of-`, else its one GGUF that is not an `mmproj`)
    --models-catalog       every catalog model, by its catalog name (pulled by its child on first load)
    --models-preset FILE   version = 1
                           [*]                      applied under every model
                           ctx-size = 2048
                           [team/smollm2]           a model of its own (needs `model`), or an existing one
                           model = ./SmolLM2.gguf   a path (relative to FILE) or a catalog name
                           alias = smol             more names that route to it
                           load-on-startup = true   preset-only keys: load-on-startup, stop-timeout
                           c = 1024                 keys: flag names without dashes, or LLAMA_ARG_* names

Precedence, as llama-server: the router's own command-line flags > the model's section > `[*]`.
Router-controlled keys (host, port, API keys, alias flags, models-*) are not passed to children.
"""

from __future__ import annotations

import argparse
import configparser
from dataclasses import dataclass, field
from pathlib import Path

ROUTER_ONLY = {"host", "port", "api_key", "api_key_file", "alias", "models_dir", "models_preset",
               "models_catalog", "models_max", "models_autoload", "webui", "model", "help",
               "cors_origins", "cors_methods", "cors_headers", "cors_credentials",
               "tools", "tools_runtime", "mcp_servers_config", "mcp_servers_json", "ui_mcp_proxy", "agent"}
PRESET_ONLY = {"load-on-startup", "stop-timeout", "model", "m", "alias", "version"}
TRUE, FALSE = {"1", "true", "on", "yes"}, {"0", "false", "off", "no"}
DEFAULT_STOP_TIMEOUT = 10.0


class PresetError(ValueError):
    pass


@dataclass
class ModelSource:
    name: str
    model: str  # what the child gets as -m: a path or a catalog name
    origin: str  # "dir", "catalog" or "preset"
    flags: list[str] = field(default_factory=list)  # the child's flags from the preset ([*], then its section)
    aliases: list[str] = field(default_factory=list)
    load_on_startup: bool = False
    stop_timeout: float = DEFAULT_STOP_TIMEOUT


# -- flags ---------------------------------------------------------------------------------------------------

class FlagTable:
    """The child server's flags by bare name (`ctx-size`, `c`, `LLAMA_ARG_CTX_SIZE`): preset keys and the
    router's own command line are rendered back into the child's argv with these."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser
        self.by_name: dict[str, argparse.Action] = {}
        for action in parser._actions:
            for opt in action.option_strings:
                self.by_name[opt.lstrip("-")] = action
            if getattr(action, "env", None):  # llama-server's LLAMA_ARG_* name, set by cli/llama_server_compat
                self.by_name[action.env] = action

    def action(self, key: str) -> argparse.Action | None:
        key = key.strip()
        if key in self.by_name:
            return self.by_name[key]
        if key.upper().startswith("LLAMA_ARG_NO_") and "LLAMA_ARG_" + key[13:].upper() in self.by_name:
            return self.by_name["LLAMA_ARG_" + key[13:].upper()]
        if key.upper().startswith("LLAMA_ARG_"):
            key = key[len("LLAMA_ARG_"):].lower().replace("_", "-")
        return self.by_name.get(key)

    def is_negation(self, key: str) -> bool:
        """Whether a boolean flag's bare name turns it off (`no-webui`, `no-kv-offload`, LLAMA_ARG_NO_MMAP)."""
        action, key = self.action(key), key.strip()
        if action is None or action.nargs != 0 or key == getattr(action, "env", None):
            return False
        if key.upper().startswith("LLAMA_ARG_NO_"):
            return True
        positives = action.const if isinstance(action.const, tuple) else None
        return "--" + key not in positives if positives else key.startswith("no-")

    @staticmethod
    def render(action: argparse.Action, value: object, key: str | None = None) -> list[str]:
        """`--flag value` for one setting (value as the flag's parsed type, or the preset's text under `key`)."""
        long = max(action.option_strings, key=len)
        if key is not None and "--" + key.strip() in action.option_strings:  # `lora = a.gguf`: --lora, not -scaled
            long = "--" + key.strip()
        if isinstance(value, tuple):  # a llama-server option llamacpy only accepts, from the command line: as given
            flag, given = value
            return [flag] if action.nargs == 0 else [flag, str(given)]
        if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
            on = _truth(value)
            if isinstance(action, argparse.BooleanOptionalAction):
                positive = next(o for o in action.option_strings if not o.startswith("--no-"))
                return [positive] if on else ["--no-" + positive[2:]]
            # an option llamacpy only accepts keeps its positive names in const, its negations are the others
            positives = action.const if isinstance(action.const, tuple) else action.option_strings
            negations = [o for o in action.option_strings if o not in positives]
            if on:
                return [max(positives, key=len)]
            return [max(negations, key=len)] if negations else []
        if isinstance(value, list) and value and isinstance(value[0], tuple):  # --lora's (path, scale) pairs
            return [long, ",".join(f"{path}:{scale:g}" for path, scale in value)]
        if isinstance(value, list):
            if isinstance(action, argparse._AppendAction):
                return [part for item in value for part in (long, str(item))]
            value = ",".join(map(str, value))
        return [long, str(value)]

    def explicit(self, namespace: argparse.Namespace) -> list[str]:
        """The flags of `namespace` that differ from their defaults, router-only ones left out."""
        out: list[str] = []
        for action in self.parser._actions:
            if not action.option_strings or action.dest in ROUTER_ONLY or not hasattr(namespace, action.dest):
                continue
            value = getattr(namespace, action.dest)
            if value != action.default:
                out += self.render(action, value)
        return out


def _truth(value: object) -> bool:
    if isinstance(value, str):
        if value.strip().lower() in TRUE:
            return True
        if value.strip().lower() in FALSE:
            return False
        raise PresetError(f"expected true or false, got {value!r}")
    return bool(value)


# -- sources ---------------------------------------------------------------------------------------------------

def scan_dir(folder: Path) -> dict[str, ModelSource]:
    if not folder.is_dir():
        raise FileNotFoundError(f"--models-dir {folder}: no such folder")
    out: dict[str, ModelSource] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix == ".gguf" and "mmproj" not in entry.name:
            out[entry.stem] = ModelSource(entry.stem, str(entry.absolute()), "dir")
        elif entry.is_dir():
            ggufs = sorted(p for p in entry.glob("*.gguf") if "mmproj" not in p.name)
            first = [p for p in ggufs if "-00001-of-" in p.name] or ggufs
            if first:
                out[entry.name] = ModelSource(entry.name, str(first[0].absolute()), "dir")
    return out


def catalog_sources() -> dict[str, ModelSource]:
    from ..catalog import catalog

    return {name: ModelSource(name, name, "catalog") for name in catalog()}


def read_preset(path: Path, known: dict[str, ModelSource], flags: FlagTable) -> dict[str, ModelSource]:
    """`known` updated by the preset file (a copy); PresetError names the file, section and key at fault."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none",
                                       inline_comment_prefixes=(";",))
    parser.optionxform = str  # keys keep their case (LLAMA_ARG_*)
    try:
        parser.read_string("[\0top]\n" + path.read_text(encoding="utf-8"), source=str(path))
    except configparser.Error as e:
        raise PresetError(f"{path}: {e}") from None
    top = dict(parser["\0top"]) if parser.has_section("\0top") else {}
    if top.get("version", "1").strip() != "1":
        raise PresetError(f"{path}: unsupported preset version {top['version']!r} (expected 1)")
    glob = _section_flags(path, "*", dict(parser["*"]), flags) if parser.has_section("*") else []
    out = {name: ModelSource(**{**vars(s), "flags": list(s.flags)}) for name, s in known.items()}
    for name in parser.sections():
        if name in ("\0top", "*"):
            continue
        items = dict(parser[name])
        where = f"{path} [{name}]"
        model = items.get("model") or items.get("m")
        if model:
            candidate = (path.parent / model).expanduser()
            model = str(candidate.resolve()) if candidate.exists() else model
        elif name not in out:
            raise PresetError(f"{where}: no model of that name, and no `model = PATH` in the section")
        source = out.get(name) or ModelSource(name, model, "preset")
        if model:
            source.model = model
        source.origin = "preset" if name not in known else source.origin
        source.flags = glob + _section_flags(path, name, items, flags)
        source.aliases = [a.strip() for a in items.get("alias", "").split(",") if a.strip()]
        try:
            source.load_on_startup = _truth(items.get("load-on-startup", "false"))
            source.stop_timeout = float(items.get("stop-timeout", DEFAULT_STOP_TIMEOUT))
        except ValueError as e:
            raise PresetError(f"{where}: {e}") from None
        out[name] = source
    for source in out.values():  # [*] applies to models without a section too
        if not source.flags and glob:
            source.flags = list(glob)
    return out


def _section_flags(path: Path, section: str, items: dict[str, str], flags: FlagTable) -> list[str]:
    argv: list[str] = []
    for key, value in items.items():
        if key in PRESET_ONLY:
            continue
        action = flags.action(key)
        if action is None:
            raise PresetError(f"{path} [{section}]: unknown key {key!r} (not a flag of `llamacpy server`)")
        if action.dest in ROUTER_ONLY:
            continue  # the router decides these
        try:
            if flags.is_negation(key):  # `no-mmap = true` is `--no-mmap`
                value = not _truth(value)
            argv += flags.render(action, value, key)
        except PresetError as e:
            raise PresetError(f"{path} [{section}] {key}: {e}") from None
    return argv


def discover(models_dir: str | None, preset: str | None, catalog: bool, flags: FlagTable) -> dict[str, ModelSource]:
    """Every model the router offers: catalog < folder < preset, as llama-server merges cache < dir < preset."""
    out: dict[str, ModelSource] = {}
    if catalog:
        out.update(catalog_sources())
    if models_dir:
        out.update(scan_dir(Path(models_dir).expanduser()))
    if preset:
        out = read_preset(Path(preset).expanduser(), out, flags)
    return out
