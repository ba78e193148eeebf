"""The house rules, read from the source: layers in folders, no upward import, no cycle,
built-ins on the public API only, and a torch-free lower half."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import zoo

REPO = Path(__file__).resolve().parent.parent
# lower layers first; a module may import its own layer and those before it
LAYERS = ("zoo.core", "zoo.reports", "zoo.engine", "zoo.tasks", "zoo")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "plugins":
        parts[0] = "zoo_plugins"
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (type-only imports)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)


def _imports(path: Path, name: str | None = None) -> Iterator[tuple[str, str | None]]:
    """(module, name) for every runtime import, lazy ones inside functions included;
    ``name`` is the module's import name (by default, from its place in the repo)."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            yield from ((base, alias.name) for alias in node.names)
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            yield node.args[0].value, None  # importlib.import_module("zoo.x"), __import__


def _dynamic_import(node: ast.Call) -> bool:
    """A call of import_module or __import__ with a literal module name."""
    function = node.func
    called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    literal = node.args and isinstance(node.args[0], ast.Constant)
    return called in ("import_module", "__import__") and bool(literal)


def _zoo_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((REPO / "zoo").rglob("*.py"))}


def _resolve(modules: dict[str, Path], module: str, name: str | None) -> str | None:
    """The zoo module an import reaches (``from zoo.core import data`` reaches
    zoo.core.data), or None outside zoo."""
    if name and f"{module}.{name}" in modules:
        return f"{module}.{name}"
    return module if module in modules else None


def _layer(module: str) -> int:
    return next(i for i, prefix in enumerate(LAYERS) if module.startswith(prefix + ".")
                or module == prefix)  # fmt: skip


def _graph() -> dict[str, set[str]]:
    modules = _zoo_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, imported in _imports(path):
            target = _resolve(modules, module, imported)
            if target and target != name:
                graph[name].add(target)
    return graph


def test_at_most_ten_modules_sit_directly_in_zoo():
    top = sorted(p.name for p in (REPO / "zoo").glob("*.py"))
    assert len(top) <= 10, top
    packages = {p.name for p in (REPO / "zoo").iterdir() if (p / "__init__.py").is_file()}
    assert {"core", "engine", "tasks", "reports"} <= packages


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(source)
    ]
    assert not upward, "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycle():
    assert not _cycles(_graph())


def test_the_cycle_check_finds_a_cycle():
    """The check itself: a two-module loop and a three-module loop are both found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def _plugin_violations(path: Path, module_name: str | None = None) -> Iterator[str]:
    module_name = module_name or _module_name(path)
    own = module_name.split(".")[:2]
    tree = ast.parse(path.read_text())
    for module, name in _imports(path, module_name):
        reached = f"{module}.{name}" if module == "zoo_plugins" and name else module
        if module == "zoo" and name is not None and name not in zoo.__all__:
            yield f"{path.name}: zoo.{name} is not public"
        elif module.startswith("zoo."):
            yield f"{path.name}: imports {module} (only names `zoo` exports are public)"
        elif reached.startswith("zoo_plugins.") and reached.split(".")[:2] != own:
            yield f"{path.name}: imports another plugin, {reached}"
    aliases = {"zoo"} | {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "zoo" and alias.asname
    }
    for node in ast.walk(tree):  # zoo.NAME after `import zoo` (or `import zoo as z`)
        named = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        if named and node.value.id in aliases and node.attr not in zoo.__all__:
            yield f"{path.name}: zoo.{node.attr} is not public"


def test_built_in_plugins_use_only_the_public_api_and_not_each_other():
    found = [v for p in sorted((REPO / "plugins").rglob("*.py")) for v in _plugin_violations(p)]
    assert not found, "\n".join(found)


def test_the_plugin_check_catches_private_and_cross_plugin_imports(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import zoo\nfrom zoo import ClassifierPlugin, Trainer\nfrom zoo.engine import trainer\n"
        "from zoo_plugins.colorizer import plugin\nfrom zoo_plugins.gans import base\n"
        "x = zoo.api\nimport zoo as z\ny = z.cli\nfrom zoo_plugins import colorizer\n"
        "from .. import attacks\nimport importlib\nm = importlib.import_module('zoo.api')\n"
        "from . import losses\n"
    )
    found = list(_plugin_violations(bad, "zoo_plugins.gans.probe"))
    assert len(found) == 8, found  # all but `from . import losses`, the plugin's own
    for part in ("zoo.Trainer", "zoo.engine", "zoo.api is not", "zoo.cli", "imports zoo.api",
                 "zoo_plugins.colorizer", "zoo_plugins.attacks"):  # fmt: skip
        assert any(part in v for v in found), (part, found)


@pytest.mark.parametrize("name", sorted(zoo.__all__))
def test_every_public_name_resolves(name):
    assert getattr(zoo, name) is not None


def test_core_and_reports_import_no_torch():
    modules = [m for m in _zoo_modules() if _layer(m) <= LAYERS.index("zoo.reports")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert len(modules) > 10 and result.stdout.strip() == "False", result.stdout
