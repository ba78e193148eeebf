"""Discovery and lookup: built-ins, local registries, in-process registration, containment."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import attrs
import pytest

import zoo
from zoo import ClassifierPlugin, Plugin, PluginInfo, option
from zoo.core.errors import ConfigError, PluginLoadError, UnknownPluginError
from zoo.core.registry import Registry


class Tiny(ClassifierPlugin):
    info = PluginInfo(name="tiny", task="classify", summary="a 784 -> 10 linear test plugin")

    def build_network(self):
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def test_builtins_come_from_registry_toml():
    entries = Registry(entry_points=False).list()
    names = {e.name: e for e in entries}
    assert {"dense", "cnn"} <= set(names)
    assert names["cnn"].source == "builtin"
    assert names["cnn"].origin == "zoo_plugins.classifiers"


def test_public_api_lists_and_gets():
    assert {p.name for p in zoo.list_plugins(task="classify")} >= {"dense", "cnn"}
    assert [p.name for p in zoo.list_plugins("c?n")] == ["cnn"]
    assert [p.name for p in zoo.list_plugins("*gan", task="generate")][:2] == ["acgan", "began"]
    assert all(p.info.task == "classify" for p in zoo.list_plugins(task="classify"))
    assert zoo.get_plugin("cnn").info.name == "cnn"
    assert zoo.get_plugin("CNN") is zoo.get_plugin("cnn")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownPluginError, match="did you mean 'dense'"):
        zoo.get_plugin("dens")
    with pytest.raises(UnknownPluginError) as error:
        zoo.get_plugin("zzzzzz")
    assert "did you mean" not in str(error.value)
    assert "zoo list" in str(error.value)


def test_registered_plugin_lists_and_runs(registry, tmp_path):
    registry.register(Tiny)
    assert "tiny" in {p.name for p in zoo.list_plugins()}
    result = zoo.run(
        "tiny", max_steps=3, train_size=256, test_size=128, out=str(tmp_path), progress=False
    )
    assert result.metrics["step"] == 3
    registry.unregister("tiny")
    with pytest.raises(UnknownPluginError):
        zoo.get_plugin("tiny")


def test_duplicate_registration_names_both(registry):
    class Clash(Tiny):
        info = attrs.evolve(Tiny.info, name="cnn")

    with pytest.raises(ValueError, match=r"already registered by builtin zoo_plugins\.classifiers"):
        registry.register(Clash)


def test_config_may_not_shadow_run_settings(registry):
    @attrs.frozen
    class BadConfig:
        epochs: int = option(3, help="clashes")

    class Bad(Plugin):
        info = PluginInfo(name="bad", task="classify", summary="x")
        Config = BadConfig

    with pytest.raises(ValueError, match="clash with run settings"):
        registry.register(Bad)


def _write_local(tmp_path, module_source: str, name: str = "my_local_plugin"):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(module_source))
    registry_file = tmp_path / "registry.toml"
    registry_file.write_text(f'[[plugins]]\nmodule = "{name}"\n')
    return registry_file


LOCAL_PLUGIN = """
    from zoo import ClassifierPlugin, PluginInfo, hookimpl

    class Local(ClassifierPlugin):
        info = PluginInfo(name="local-linear", task="classify", summary="local test plugin")

        def build_network(self):
            from torch import nn
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    @hookimpl
    def register_plugins(register):
        register(Local)
"""


def test_user_registry_adds_local_module(tmp_path):
    registry_file = _write_local(tmp_path, LOCAL_PLUGIN)
    found = Registry(entry_points=False, user_registry=registry_file).entry("local-linear")
    assert found.source == "local"
    assert found.origin == "my_local_plugin"


@pytest.mark.parametrize(
    ("module_source", "problem"),
    [
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("x = 1\n", "no register_plugins hook"),
        (
            "from zoo import hookimpl\n@hookimpl\ndef register_plugins(register):\n"
            "    register(object)\n",
            "not a subclass of zoo.Plugin",
        ),
    ],
    ids=["raises-on-import", "no-hook", "registers-non-plugin"],
)
def test_broken_local_module_is_contained(tmp_path, module_source, problem):
    registry_file = _write_local(
        tmp_path, module_source, name="broken_mod_" + str(abs(hash(problem)))
    )
    warnings: list[str] = []
    registry = Registry(
        entry_points=False, user_registry=registry_file, warn=warnings.append, strict=False
    )
    assert {"dense", "cnn"} <= {e.name for e in registry.list()}
    assert len(warnings) == 1 and problem in warnings[0]
    broken = [e for e in registry.list(include_broken=True) if e.broken]
    assert len(broken) == 1 and problem in broken[0].error
    with pytest.raises(PluginLoadError, match=problem):
        Registry(entry_points=False, user_registry=registry_file, strict=True).list()


@pytest.mark.parametrize(
    ("name", "write_module", "problem"),
    [
        ("os", False, "no module 'os' in"),  # a user registry loads its own modules only
        ("json", True, "has the name of an installed one"),  # never shadows the stdlib
        ("zoo", True, "has the name of an installed one"),
    ],
)
def test_a_user_registry_loads_only_its_own_modules(tmp_path, name, write_module, problem):
    registry_file = _write_local(tmp_path, LOCAL_PLUGIN, name=name)
    if not write_module:
        (tmp_path / f"{name}.py").unlink()
    warnings: list[str] = []
    registry = Registry(entry_points=False, user_registry=registry_file, warn=warnings.append)
    assert "local-linear" not in {e.name for e in registry.list()}
    assert len(warnings) == 1 and problem in warnings[0], warnings
    if name in sys.modules:  # the real module stays the one everybody imports
        assert not Path(sys.modules[name].__file__).resolve().is_relative_to(tmp_path.resolve())


def test_a_registry_in_a_folder_anyone_can_write_is_refused(tmp_path):
    registry_file = _write_local(tmp_path, LOCAL_PLUGIN, name="shared_mod")
    tmp_path.chmod(0o777)
    try:
        with pytest.raises(ConfigError, match="writable by everyone"):
            Registry(entry_points=False, user_registry=registry_file).list()
    finally:
        tmp_path.chmod(0o700)


def test_a_local_package_loads_with_its_submodules(tmp_path):
    package = tmp_path / "my_zoo_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(LOCAL_PLUGIN))
    registry_file = tmp_path / "registry.toml"
    registry_file.write_text('[[plugins]]\nmodule = "my_zoo_pkg.plugin"\n')
    found = Registry(entry_points=False, user_registry=registry_file).entry("local-linear")
    assert found.origin == "my_zoo_pkg.plugin"


def test_strict_mode_reads_the_environment(tmp_path, monkeypatch):
    registry_file = _write_local(tmp_path, "raise ImportError('no')\n", name="strict_victim")
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError):
        Registry(entry_points=False, user_registry=registry_file).list()


@pytest.mark.parametrize(
    "content",
    [
        'plugins = "zoo_plugins.classifiers"',
        '[[plugins]]\nmodule = "../../etc/passwd"',
        '[[plugins]]\nmodule = "os; import shutil"',
        '[[plugins]]\nmodule = "a"\npath = "/tmp"',
        "[[plugins]\nmodule=",
        "extra = 1",
    ],
)
def test_malformed_registry_file_is_a_config_error(tmp_path, content):
    registry_file = tmp_path / "registry.toml"
    registry_file.write_text(content)
    with pytest.raises(ConfigError) as error:
        Registry(entry_points=False, user_registry=registry_file).list()
    assert str(registry_file) in str(error.value)
