"""The package's imports point one way (docs/architecture.md): each top-level package may import only from its own
layer or below, and no module imports itself back through others at import time. Read from the source with `ast`
(imports inside functions count for the layers; imports under `if TYPE_CHECKING:` do not)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "llamacpy"

# lowest first; a package may import from its own layer and the ones before it
LAYERS = [
    ("gguf", "ui", "convert"),
    ("catalog", "numba_cache", "kernels", "tokenizer"),
    ("ops", "sampling", "quantize"),
    ("models",),
    ("engine",),
    ("api", "server"),
    ("router",),
    ("cli", "__main__", "__init__"),
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
METADATA = {"llamacpy.__version__"}  # the root package's version string: anyone may read it


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported llamacpy module, at import time?) for each import in the module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, bool]] = []

    def target(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                base = target(child)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.append((full if full in modules or full in METADATA else base, inner))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text()), True)
    return [(m, top) for m, top in found if m == "llamacpy" or m.startswith("llamacpy.")]


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_layer():
    tops = {_top(m) for m in _modules()}
    assert tops <= set(LAYER), f"give these a layer in LAYERS: {sorted(tops - set(LAYER))}"


def test_imports_point_down():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for target, _ in _imports(name, path, modules):
            if target in METADATA:
                continue
            a, b = _top(name), _top(target)
            if LAYER[b] > LAYER[a]:
                wrong.append(f"{name} imports {target} ({a} is below {b})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: sorted({t for t, top in _imports(name, path, modules) if top and t in modules and t != name})
             for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_no_module_is_too_big_without_a_reason():
    """Nothing over 600 lines unless its docstring says why (the issue's bar)."""
    big = []
    for name, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > 600 and "long on purpose" not in text:
            big.append(f"{name}: {text.count(chr(10))} lines")
    assert not big, "\n".join(big)
