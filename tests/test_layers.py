"""The package's layers point one way: a module imports only from its own layer or the layers below,
at the top of a file or inside a function, and no two modules import each other, even indirectly."""

import ast
from pathlib import Path

import pytest

LMRL = Path(__file__).resolve().parents[1] / "lmrl"

# Bottom to top. A unit is a subpackage or a top-level module of lmrl.
LAYERS = [
    {"ops", "compat"},
    {"data", "losses"},
    {"models", "fetch"},
    {"generation"},
    {"envs"},
    {"trainers"},
    {"tasks"},
    {"recipes", "evaluation"},
    {"api"},
    {"benchmark", "cost", "play", "play_web"},
    {"cli"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# the vLLM plugin runs in vLLM's own environment, with lmrl installed without its training stack
SERVING_MAY_IMPORT = {"serving", "models", "ops", "compat"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(LMRL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str | None = None) -> set[str]:
    """The lmrl modules a file imports, at the top or inside functions, as dotted names."""
    parts = path.relative_to(LMRL.parent).with_suffix("").parts
    package = parts[:-1]  # the package a relative import starts from (for __init__.py: the package itself)
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + (node.module.split(".") if node.module else []))
                names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name == "lmrl" or name.startswith("lmrl.")}
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "lmrl"


FILES = sorted(LMRL.rglob("*.py"))


def test_every_unit_of_lmrl_has_a_layer():
    units = {_unit(_module_name(path)) for path in FILES} - {"lmrl", "serving"}
    assert units <= set(RANK), f"give these a layer in LAYERS: {sorted(units - set(RANK))}"


@pytest.mark.parametrize("path", [p for p in FILES if _unit(_module_name(p)) not in ("lmrl", "serving")],
                         ids=lambda p: str(p.relative_to(LMRL)))
def test_imports_point_down(path):
    unit = _unit(_module_name(path))
    above = {_unit(m) for m in _imports(path)} - {"lmrl"}
    above = {u for u in above if u not in RANK or RANK[u] > RANK[unit]}
    assert not above, f"{path.relative_to(LMRL)} ({unit}, layer {RANK[unit]}) imports from {sorted(above)} above it"


@pytest.mark.parametrize("path", sorted((LMRL / "serving").rglob("*.py")), ids=lambda p: str(p.relative_to(LMRL)))
def test_serving_imports_only_the_models_and_the_guided_rule(path):
    assert {_unit(m) for m in _imports(path)} <= SERVING_MAY_IMPORT


def test_the_package_root_imports_only_what_it_loads_lazily():
    assert {_unit(m) for m in _imports(LMRL / "__init__.py")} <= {"models"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_two_modules_import_each_other_even_through_others():
    modules = {_module_name(p): p for p in FILES}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            while imported not in modules and "." in imported:  # `from pkg import name`: the package
                imported = imported.rsplit(".", 1)[0]
            # a package's __init__ importing its own submodules is how packages are built, not a cycle
            if imported != name and not imported.startswith(name + "."):
                targets.add(imported)
        graph[name] = targets
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_checks_see_relative_absolute_and_function_level_imports_and_cycles():
    source = "import lmrl.envs\ndef f():\n    from ..generation.policy import GeneratePolicy\n    from . import heads\n"
    assert _imports(LMRL / "models" / "any.py", source) == {"lmrl.envs", "lmrl.generation.policy", "lmrl.models.heads"}
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
