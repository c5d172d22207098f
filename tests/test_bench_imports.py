"""The data package's modules import each other without a cycle (module level or inside functions)."""

import ast
from pathlib import Path

import ntlr_bench.data

PACKAGE = Path(ntlr_bench.data.__file__).parent


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The sibling modules ``path`` imports anywhere in it (``from . import x`` names the module x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                found.update(alias.name for alias in node.names if alias.name in modules)
            elif node.module.split(".")[0] in modules:
                found.add(node.module.split(".")[0])
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_data_modules_import_each_other_without_a_cycle():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {m: _imports(PACKAGE / f"{m}.py", modules) for m in modules}
    assert "errors" in graph and not graph["errors"], "the error classes depend on nothing"
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_error_classes_are_the_same_everywhere_they_were_imported_from():
    from ntlr_bench.data import DataError, DataNotFoundError, base, errors

    assert base.DataError is errors.DataError is DataError
    assert base.DataNotFoundError is errors.DataNotFoundError is DataNotFoundError


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
