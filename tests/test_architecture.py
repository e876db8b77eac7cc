"""The shape of the code, checked: no import cycle between spa's modules (imports inside functions and
TYPE_CHECKING blocks count too), the library never imports the test zoo or the tests, and no module imports
another one's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

SPA = Path(__file__).resolve().parents[1] / "spa"
CONVERTERS = SPA.parent / "converters"


def _modules(root: Path = SPA) -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = f.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (f, ast.parse(f.read_text(encoding="utf-8")))
    return out


def _imports(name: str, f: Path, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) for every import in the module, at any depth."""
    pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            out.append((mod, [a.name for a in n.names]))
        elif isinstance(n, ast.Import):
            out.extend((a.name, []) for a in n.names)
    return out


def _graph() -> nx.DiGraph:
    mods = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, (f, tree) in mods.items():
        for mod, names in _imports(name, f, tree):
            targets = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods] or [mod]
            g.add_edges_from((name, t) for t in targets if t in mods and t != name)
    return g


def test_no_import_cycle_between_modules():
    g = _graph()
    # a package importing its own submodules (to list them) is not a cycle of meaning: drop those edges
    g.remove_edges_from([(a, b) for a, b in list(g.edges) if b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {cycles}"


def test_library_does_not_import_the_zoo_the_tests_or_the_converters():
    for name, (f, tree) in _modules().items():
        for mod, _ in _imports(name, f, tree):
            banned = ("models", "tests") if f.name == "cli.py" else ("models", "tests", "converters")  # `spa convert`
            assert mod.split(".")[0] not in banned, f"{f}: imports {mod}"


def test_converters_do_not_import_the_zoo_or_the_tests():
    """`spa convert` ships converters/; the test zoo (models/) builds on the converters, never the other way."""
    bad = [f"{f.name}: imports {mod}" for name, (f, tree) in _modules(CONVERTERS).items()
           for mod, _ in _imports(name, f, tree) if mod.split(".")[0] in ("models", "tests")]
    assert not bad, bad


def test_no_private_names_imported_across_modules():
    mods = _modules()
    bad = []
    for name, (f, tree) in mods.items():
        for mod, names in _imports(name, f, tree):
            if mod.startswith("spa"):
                bad += [f"{f.name}: from {mod} import {n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not bad, bad


def test_functions_are_short_or_say_why():
    """No function body in spa/ longer than 80 lines (option declarations of a command's signature do not count)
    unless its docstring says why, with "(long: ...)"."""
    long = []
    for name, (f, tree) in _modules().items():
        for n in ast.walk(tree):
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(n) or ""
            body = [s for s in n.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            lines = n.end_lineno - body[0].lineno + 1 if body else 0
            if lines > 80 and "(long: " not in doc:
                long.append(f"{f.relative_to(SPA.parent)}:{n.lineno} {n.name} ({lines} lines)")
    assert not long, long
