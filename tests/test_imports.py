"""kd/ has no import cycle, counting imports inside functions too: each module can be read
knowing only the ones below it."""

import ast
from pathlib import Path

KD = Path(__file__).resolve().parents[1] / "kd"


def import_graph() -> dict[str, set[str]]:
    files = {
        ".".join(p.relative_to(KD.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in KD.rglob("*.py")
    }
    graph = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kd":
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names}  # `from kd import data`: kd.data
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "kd"}
        graph[name] = (deps & set(files)) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep, path + [dep])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def test_kd_has_no_import_cycle():
    graph = import_graph()
    assert {"kd.trainer", "kd.methods", "kd.methods.base", "kd.config", "kd.schema"} <= set(graph)
    assert "kd.schema" in graph["kd.methods.dkd"] and "kd.jobs" in graph["kd.runner"]  # the graph sees edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
