"""The package's structure: no import cycles between its modules (function-level imports
included), and the public index."""
from __future__ import annotations

import ast
from pathlib import Path

import handsynth

ROOT = Path(handsynth.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the handsynth modules it imports anywhere in its source (explicit import
    statements at any depth; a from-import of a submodule counts as importing it)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:   # `import handsynth.x.y` names a module or a package above it
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_graph_sees_imports():
    g = import_graph()
    assert "handsynth.models.graves.native" in g["handsynth.models.graves.kernel"]   # from . import native
    assert "handsynth.checkpoint" in g["handsynth.drawing"]
    assert "handsynth.writer" in g["handsynth"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_families_are_found_by_folder_once_they_export_a_model():
    import pytest
    from handsynth import checkpoint
    from handsynth.errors import HandsynthError

    known = checkpoint.families()   # (tests may have registered families of their own)
    assert {"graves", "transformer"} <= set(known)
    assert checkpoint.family("graves").arch == "graves" and checkpoint.family("transformer").arch == "transformer"
    with pytest.raises(HandsynthError, match="unknown model family 'nosuch'"):
        checkpoint.family("nosuch")


def test_public_index():
    for name in handsynth.__all__:
        assert hasattr(handsynth, name), name
    models = handsynth.available_models()
    assert [m.name for m in models][:1] == ["lstm"] and models[0].arch == "graves"
    hw = handsynth.load_model("lstm")
    assert hw.name == "lstm" and hw.arch == "graves" and hw.path == models[0].path
