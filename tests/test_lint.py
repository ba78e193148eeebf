"""The code base stays clean under the project's ruff configuration."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _ruff() -> list[str] | None:
    beside = Path(sys.executable).with_name("ruff")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_finds_nothing():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (setup.sh installs it with the test extra)")
    done = subprocess.run([*ruff, "check", "--quiet", str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
UNPICKLING_CALLS = {"torch.load", "torch.serialization.load", "pandas.read_pickle"}


def unpickling_uses(source: str) -> list[str]:
    """Every place in ``source`` that can unpickle: imports of pickle-like modules, and
    torch.load or friends however they are reached (aliases, ``from torch import load``,
    ``getattr(torch, "load")``). Names are resolved through the module's imports, so
    renaming does not hide a use."""
    tree = ast.parse(source)
    aliases, found = _imports(tree)
    for node in ast.walk(tree):
        name = _dotted(node, aliases)
        if isinstance(node, ast.Call) and _dotted(node.func, aliases) == "getattr":
            target, attribute = [*node.args, None, None][:2]
            if isinstance(attribute, ast.Constant) and isinstance(attribute.value, str):
                name = f"{_dotted(target, aliases)}.{attribute.value}"
        if name in UNPICKLING_CALLS:
            found.append(f"line {node.lineno}: {name}")
        safe_flag = isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant)
        if (
            isinstance(node, ast.keyword)
            and node.arg == "allow_pickle"
            and not (safe_flag and node.value.value is False)
        ):
            found.append(f"line {node.value.lineno}: allow_pickle")
    return found


def _imports(tree: ast.AST) -> tuple[dict[str, str], list[str]]:
    """What each imported name stands for, and the imports of pickle-like modules."""
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for item in node.names:
                top = item.name.split(".")[0]
                aliases[item.asname or top] = item.name if item.asname else top
                if top in UNPICKLING_MODULES:
                    found.append(f"line {node.lineno}: import {item.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in UNPICKLING_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for item in node.names:
                aliases[item.asname or item.name] = f"{node.module}.{item.name}"
    return aliases, found


def _dotted(node: ast.AST | None, aliases: dict[str, str]) -> str | None:
    """``t.serialization.load`` -> ``torch.serialization.load`` when ``t`` is torch."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.load('x')",
        "from torch import load\nload('x')",
        "from torch import load as read\nread('x')",
        "import torch as t\nt.serialization.load('x')",
        "import torch\ngetattr(torch, 'load')('x')",
        "import pickle",
        "from pickle import loads",
        "import numpy as np\nnp.load('x', allow_pickle=True)",
    ],
)
def test_the_unpickling_lint_catches_every_spelling(source):
    assert unpickling_uses(source), source


def test_the_unpickling_lint_leaves_safe_code_alone():
    safe = "from safetensors.torch import load, load_file\nimport json\njson.loads('1')\nload(b'')"
    assert unpickling_uses(safe) == []


def test_nothing_is_ever_unpickled():
    """Checkpoints and data are safetensors, JSON and IDX; no loader of pickles is used."""
    offenders = [
        f"{path.relative_to(REPO)}: {use}"
        for folder in ("zoo", "plugins", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        for use in unpickling_uses(path.read_text())
    ]
    assert not offenders, offenders
