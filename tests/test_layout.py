"""The layout holds: imports run one way, no cycles, Optuna/Ray internals in one adapter.

Read from the source (AST), every import counts — lazy ones inside functions too, since a
cycle kept alive by a lazy import is still a cycle — except those under
``if TYPE_CHECKING:``, which never run. See docs/architecture.md for the picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("spaces", "objectives", "search")
ADAPTER = "search.study._optuna_internals"  # the one module allowed Optuna's privates
# Private attributes of Optuna and Ray objects that earlier code reached into.
OPTUNA_RAY_PRIVATE = {
    "_storage", "_study_id", "_trial_id", "_backend", "_ot_trials", "_ot_study",
    "_completed_trials", "_thread_local", "_cached_frozen_trial", "_get_stale_trial_ids",
    "_get_trials", "_suggest",
}
# search's sub-packages by layer: a module may import only from lower layers, or from
# its own sub-package; run/ and results/ (same layer) do not import each other.
SEARCH_LAYERS = {
    "search._errors": 0,
    "search.study": 1,
    "search.run": 2,
    "search.results": 2,
    "search.view": 3,
}
TOP = 4  # search/__init__, _search, _cli, _seeds, __main__


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for pkg in PACKAGES
        for p in sorted((ROOT / pkg).rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return out


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``module`` imports (resolved to known module names)."""
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] not in PACKAGES:
                continue
            # ``from pkg import sub`` may name a submodule; otherwise the module itself.
            target = name if name in known else name.rsplit(".", 1)[0]
            if target in known and target != module:
                out.add(target)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if _is_package_of(n, m):
                continue  # a module importing its own package's __init__ (re-exports)
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if state.get(n) is None and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if state.get(m) is None and (found := visit(m)):
            return found
    return None


def _is_package_of(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def test_no_import_cycle(graph):
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_packages_import_one_way(graph):
    for module, targets in graph.items():
        top = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if top == "spaces":
                assert other == "spaces", f"{module} imports {target}: spaces is a leaf"
            if top == "objectives":
                assert other != "search", f"{module} imports {target}: objectives never " \
                    "imports search"


def test_objectives_core_never_imports_its_tasks(graph):
    for module, targets in graph.items():
        if module.startswith("objectives") and not module.startswith("objectives.tasks"):
            bad = sorted(t for t in targets if t.startswith("objectives.tasks"))
            assert not bad, f"{module} (core) imports the embedded tasks {bad}"


def _layer(module: str) -> tuple[int, str]:
    for prefix, layer in SEARCH_LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer, prefix
    return TOP, "search"


def test_search_sub_packages_import_downward_only(graph):
    for module, targets in graph.items():
        if not module.startswith("search"):
            continue
        layer, home = _layer(module)
        for target in targets:
            if not target.startswith("search"):
                continue
            t_layer, t_home = _layer(target)
            if t_home == home:
                continue
            assert t_layer < layer, (
                f"{module} (layer {home}) imports {target} (layer {t_home}): "
                "search's sub-packages import downward only (docs/architecture.md)"
            )


def test_every_package_says_its_job():
    for module, path in _modules().items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc, f"package {module} has no docstring saying what it is for"


def test_optuna_and_ray_internals_stay_in_one_adapter():
    offenders: list[str] = []
    for module, path in _modules().items():
        if module == ADAPTER:
            continue
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = []
            for name in names:
                parts = name.split(".")
                if parts[0] in ("optuna", "ray") and any(p.startswith("_") for p in parts[1:]):
                    offenders.append(f"{module}: imports {name}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in OPTUNA_RAY_PRIVATE
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{module}:{node.lineno}: .{node.attr}")
    assert not offenders, "Optuna/Ray private API outside the adapter:\n" + "\n".join(offenders)


def test_the_adapter_exists_and_says_why():
    path = ROOT / Path(*ADAPTER.split(".")).with_suffix(".py")
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "private" in doc and "why" in doc.lower()
