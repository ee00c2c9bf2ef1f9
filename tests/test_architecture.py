"""The import rules of docs/architecture.md, checked on every module: layers only import their own or
those above them in its table, and no import loop exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "livebatch"
LAYER_ROW = re.compile(r"^\| (\d) [^|]+\| (.+?) \|")


def _layers() -> dict[str, int]:
    """Module name (without `livebatch.`) -> layer number, from the table in docs/architecture.md."""
    layers: dict[str, int] = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        row = LAYER_ROW.match(line)
        if row:
            for name in re.findall(r"`([a-z_.]+)`", row.group(2)):
                layers[name] = int(row.group(1))
    return layers


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] == "migrations" and len(parts) > 1 and parts[1] == "versions":
            continue  # revisions are data for Alembic, never imported by name
        if path.name == "__init__.py" and not path.read_text().strip():
            continue  # an empty package marker imports nothing and is nobody's layer
        name = ".".join(p for p in parts if p != "__init__")
        found[name or "__init__"] = path
    return found


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    names = [n for n in layers if module == n or module.startswith(n + ".")]
    return layers[max(names, key=len)] if names else None


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project's modules `path` imports, anywhere in it (a lazy import is an import too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from a import b`: the module a.b if there is one, else (a name defined in) a.
            named = (f"{node.module}.{alias.name}" for alias in node.names)
            names = [n if _name(n) in modules else node.module for n in named]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {_name(n) for n in names if n.startswith("livebatch.") and _name(n) in modules}
    return found


def _name(dotted: str) -> str:
    return dotted.removeprefix("livebatch.")


def test_every_module_has_a_layer() -> None:
    layers = _layers()
    assert len(set(layers.values())) == 7, "the table in docs/architecture.md lost a layer"
    unplaced = [m for m in _modules() if m != "__init__" and _layer_of(m, layers) is None]
    assert unplaced == [], f"modules docs/architecture.md does not place: {unplaced}"


def test_imports_never_run_back_up_the_layers() -> None:
    layers, modules = _layers(), _modules()
    wrong = []
    for module, path in modules.items():
        own = _layer_of(module, layers)
        for imported in _imports(path, modules):
            theirs = _layer_of(imported, layers)
            if own is not None and theirs is not None and theirs > own:
                wrong.append(f"{module} (layer {own}) imports {imported} (layer {theirs})")
    assert wrong == []


def test_no_module_imports_itself_around_a_loop() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    loops: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            loops.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert loops == []
