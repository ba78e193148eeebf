"""Plugins that misbehave on purpose (sys.exit, KeyboardInterrupt, prints, bad types and
defaults, unsafe or odd files) are contained, and odd --config / --task input is one line.

Each case is a real module file beside a real registry.toml; the ones that used to end
the process are run through ``python -m zoo`` in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import zoo
from tests.conftest import ZOO
from tests.test_cli import assert_one_line_error, invoke
from tests.test_registry import LOCAL_PLUGIN
from zoo.core.config import build
from zoo.core.contract import TASKS
from zoo.core.errors import ConfigError
from zoo.core.registry import Registry

# the registry tests' local plugin, named per test, with code to run before it registers
GOOD_PLUGIN = LOCAL_PLUGIN.replace('"local-linear"', '"{name}"').replace(
    "        register(Local)", "        {before_register}\n        register(Local)"
)


def _plugin_with_field(name: str, field: str, header: str = "") -> str:
    """A plugin module whose Config has the one ``field`` line given."""
    return f"""
        {header}
        import attrs
        from zoo import ClassifierPlugin, PluginInfo, hookimpl, option

        @attrs.frozen
        class Cfg:
            {field}

        class Faulty(ClassifierPlugin):
            info = PluginInfo(name="{name}", task="classify", summary="x")
            Config = Cfg

        @hookimpl
        def register_plugins(register):
            register(Faulty)
        """


def _good(name: str, before_register: str = "pass", prelude: str = "") -> str:
    body = GOOD_PLUGIN.format(name=name, before_register=before_register)
    return textwrap.dedent(prelude) + textwrap.dedent(body)


def _registry(folder: Path, modules: dict[str, str], listed: list[str] | None = None) -> Path:
    """Module files plus a registry.toml naming them, in a folder of the user's own."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    registry_file = folder / "registry.toml"
    names = listed if listed is not None else list(modules)
    registry_file.write_text("".join(f'[[plugins]]\nmodule = "{n}"\n' for n in names))
    return registry_file


def _zoo(*args: str, registry: Path | None = None, strict: bool = False, timeout: int = 120):
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_REGISTRY", "ZOO_STRICT_PLUGINS")}
    if registry is not None:
        env["ZOO_REGISTRY"] = str(registry)
    if strict:
        env["ZOO_STRICT_PLUGINS"] = "1"
    return subprocess.run([*ZOO, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("zoo: ")]


# -- item 8: exits, interrupts and unresolvable types are contained -------------------------

HOSTILE = {
    "exit3_on_import": ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
    "exit0_on_import": ("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
    "exit3_in_hook": (
        _good("exit-hook", "import sys; sys.exit(3)"),
        "register_plugins called sys.exit(3)",
    ),
    "interrupt_on_import": ("raise KeyboardInterrupt\n", "failed to load: KeyboardInterrupt"),
    "interrupt_in_hook": (
        _good("interrupt-hook", "raise KeyboardInterrupt"),
        "register_plugins raised KeyboardInterrupt",
    ),
    "base_exception_on_import": (
        "class Weird(BaseException):\n    pass\nraise Weird('not an Exception\\nat all')\n",
        "Weird: not an Exception at all",
    ),
    "unresolvable_annotation": (
        _plugin_with_field(
            "bad-annotation",
            'x: NoSuchType = option(1, help="a type that does not exist")',
            "from __future__ import annotations",
        ),
        "Cfg: cannot resolve its field types (NameError",
    ),
}


@pytest.mark.parametrize("module", list(HOSTILE))
def test_exits_interrupts_and_bad_types_are_contained_like_any_broken_plugin(tmp_path, module):
    source, problem = HOSTILE[module]
    registry_file = _registry(tmp_path, {module: source})

    listed = _zoo("list", "--all", "--json", registry=registry_file)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    warnings = _warnings(listed.stderr)
    assert len(warnings) == 1 and problem in warnings[0], listed.stderr
    rows = json.loads(listed.stdout)
    broken = [row for row in rows if row["status"] == "broken"]
    assert [row["origin"] for row in broken] == [module] and problem in broken[0]["summary"]
    assert {"dense", "cnn"} <= {row["name"] for row in rows if row["status"] == "ok"}

    dry = _zoo("run", "dense", "--dry-run", "--hidden", "32", registry=registry_file)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["config"]["hidden"] == 32

    strict = _zoo("list", registry=registry_file, strict=True)
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines() == [strict.stderr.strip()]
    assert strict.stderr.startswith("zoo: error: ") and problem in strict.stderr
    assert "ZOO_STRICT_PLUGINS" in strict.stderr


def test_zoo_eval_survives_a_plugin_that_calls_sys_exit(tmp_path, dense_run):
    registry_file = _registry(tmp_path, {"exit_for_eval": "import sys\nsys.exit(3)\n"})
    evaluated = _zoo("eval", str(dense_run.path), "--test-size", "100", registry=registry_file)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy" in evaluated.stdout
    assert len(_warnings(evaluated.stderr)) == 1


def test_what_plugin_code_prints_never_mixes_into_json(tmp_path):
    prelude = """
        import os, sys
        print("PRINTED AT IMPORT")
        os.write(1, b"WRITTEN TO FD 1\\n")
        sys.__stdout__.write("WRITTEN TO __stdout__\\n")
    """
    registry_file = _registry(
        tmp_path, {"chatty_mod": _good("chatty", "print('PRINTED IN HOOK')", prelude)}
    )
    listed = _zoo("list", "--json", registry=registry_file)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)  # fails if anything leaked into stdout
    assert "chatty" in {row["name"] for row in rows}
    for text in ("PRINTED AT IMPORT", "WRITTEN TO FD 1", "WRITTEN TO __stdout__", "IN HOOK"):
        assert text in listed.stderr


def test_a_real_ctrl_c_while_a_plugin_imports_still_stops_zoo(tmp_path):
    marker = tmp_path / "importing"
    source = f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(120)\n"
    registry_file = _registry(tmp_path / "reg", {"slow_import": source})
    env = {**os.environ, "ZOO_REGISTRY": str(registry_file)}
    process = subprocess.Popen(
        [*ZOO, "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the plugin was never imported"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert stdout == "" and "zoo: error: interrupted" in stderr and "Traceback" not in stderr


# -- item 10: what is imported must not be writable by everyone -----------------------------


def _package(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """registry.toml naming name.sub.plugin; the plugin touches a marker when imported."""
    folder = tmp_path / "reg"
    registry_file = _registry(folder, {}, listed=[f"{name}.sub.plugin"])
    sub = folder / name / "sub"
    sub.mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    (sub / "__init__.py").write_text("")
    marker = tmp_path / "imported"
    (sub / "plugin.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n" + _good(f"{name}-p")
    )
    return registry_file, marker


@pytest.mark.parametrize(
    ("unsafe", "mode"),
    [
        ("sub/plugin.py", 0o666),
        ("sub", 0o777),
        ("sub/__init__.py", 0o666),
        ("", 0o777),  # the top package folder
        ("sub/__pycache__", 0o777),
    ],
)
def test_a_world_writable_module_or_package_is_refused(tmp_path, unsafe, mode):
    name = "wpkg_" + unsafe.replace("/", "_").replace(".", "_").strip("_")
    registry_file, marker = _package(tmp_path, name)
    place = registry_file.parent / name / unsafe if unsafe else registry_file.parent / name
    if place.name == "__pycache__":
        source = place.parent / "plugin.py"
        py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)))
    place.chmod(mode)
    with pytest.raises(ConfigError) as error:
        Registry(entry_points=False, user_registry=registry_file).list()
    message = str(error.value)
    assert "\n" not in message and f"chmod o-w {place}" in message
    assert not marker.exists()  # refused before any of it ran

    result = _zoo("list", registry=registry_file)
    assert result.returncode == 2 and result.stderr.startswith("zoo: error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and f"chmod o-w {place}" in result.stderr
    assert not marker.exists()


# -- item 18 -----------------------------------------------------------------------------


def test_a_module_listed_twice_is_loaded_once_with_one_warning(tmp_path):
    registry_file = _registry(
        tmp_path, {"twice_mod": _good("twice")}, listed=["twice_mod", "twice_mod"]
    )
    listed = _zoo("list", "--json", "--all", registry=registry_file)
    assert listed.returncode == 0, listed.stderr
    assert [row["name"] for row in json.loads(listed.stdout)].count("twice") == 1
    assert all(row["status"] == "ok" for row in json.loads(listed.stdout))
    lines = listed.stderr.strip().splitlines()
    assert len(lines) == 1 and "'twice_mod' is listed 2 times" in lines[0], listed.stderr


def test_a_symlinked_module_loads_inside_the_folder_and_is_refused_truthfully_outside(tmp_path):
    folder = tmp_path / "reg"
    registry_file = _registry(folder, {}, listed=["linked_in", "linked_out"])
    (folder / "src").mkdir()
    (folder / "src" / "impl.py").write_text(_good("linked-inside"))
    (folder / "linked_in.py").symlink_to(folder / "src" / "impl.py")
    outside = tmp_path / "elsewhere" / "impl.py"
    outside.parent.mkdir()
    outside.write_text(_good("linked-outside"))
    (folder / "linked_out.py").symlink_to(outside)

    warnings: list[str] = []
    registry = Registry(entry_points=False, user_registry=registry_file, warn=warnings.append)
    names = {e.name for e in registry.list()}
    assert "linked-inside" in names and "linked-outside" not in names
    assert len(warnings) == 1, warnings
    assert "installed one" not in warnings[0]
    assert f"{folder / 'linked_out.py'} is a symbolic link to {outside.resolve()}" in warnings[0]
    assert "outside the registry folder" in warnings[0]


BAD_DEFAULT = _plugin_with_field(
    "bad-default", 'x: int = option(-1, min=0, help="must not be negative")'
)


def test_a_config_default_that_breaks_its_own_minimum_names_plugin_and_field(tmp_path):
    registry_file = _registry(tmp_path, {"bad_default_mod": BAD_DEFAULT})
    warnings: list[str] = []
    registry = Registry(entry_points=False, user_registry=registry_file, warn=warnings.append)
    assert "bad-default" not in {e.name for e in registry.list()}
    assert len(warnings) == 1, warnings
    for fragment in ("plugin bad-default ", "Cfg.x", "default -1", "must be >= 0"):
        assert fragment in warnings[0]

    cfg = sys.modules["bad_default_mod"].Cfg  # build() names the field too
    with pytest.raises(ConfigError, match=r"^Cfg\.x: its default -1 must be >= 0; "):
        build(cfg, {})


def test_an_unknown_task_is_one_line_listing_the_tasks():
    result = invoke("list", "--task", "nope")
    assert_one_line_error(result, 2, "--task", "'nope'", ", ".join(TASKS))
    assert "did you mean 'classify'" in invoke("list", "--task", "clasify").stderr
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
        zoo.list_plugins(task="nope")


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "pipe.toml")
    return tmp_path / "pipe.toml"


def _huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.toml"
    path.write_text("# padding\n" * 100_001)  # just over 1 MB of valid TOML
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_fifo, "is a named pipe, not a regular file"),
        (lambda tmp_path: Path("/dev/zero"), "is a device, not a regular file"),
        (_huge, "is larger than 1 MB"),
        (lambda tmp_path: tmp_path, "is a directory"),  # click's own check
    ],
    ids=["fifo", "dev-zero", "huge", "folder"],
)
def test_a_config_that_is_not_a_small_regular_file_is_refused_without_hanging(
    tmp_path, make, fragment
):
    path = make(tmp_path)
    result = _zoo("run", "dense", "--config", str(path), "--dry-run", timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and fragment in lines[0]
    assert str(path) in lines[0] or f"'{path}'" in lines[0]
