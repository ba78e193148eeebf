"""Property tests: random and malformed registry.toml files, config TOML files and CLI
values end either in a valid run configuration or in one line on stderr, never in a
traceback. Nothing here trains: ``zoo run NAME --dry-run`` stops after validation."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from tests.test_cli import invoke
from zoo.core.config import field_specs
from zoo.core.errors import ConfigError
from zoo.core.registry import Registry, read_registry_file
from zoo.core.settings import RunSettings

EXAMPLES = settings(  # derandomized, no example database: every CI run tries the same inputs
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
PLUGINS = ("dense", "cnn", "gan", "colorizer", "fgsm")


def _toml_value(value) -> str:
    """A TOML literal for ``value`` (the standard library reads TOML but cannot write it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"


SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
VALUES = SCALARS | st.lists(SCALARS, max_size=3)
# module strings: identifiers, dotted names, and what an attacker would try
MODULES = st.one_of(
    st.from_regex(MODULE_NAME, fullmatch=True).filter(lambda s: len(s) < 40),
    st.sampled_from(
        ["../evil", "/etc/passwd", "os; import shutil", "__import__('os')", "a..b", "a.", ""]
    ),
    st.text(max_size=30),
)


def _write(text: str) -> Path:
    with tempfile.NamedTemporaryFile("wb", suffix=".toml", delete=False) as handle:
        handle.write(text.encode("utf-8", "surrogatepass"))
    return Path(handle.name)


def _assert_one_line_or_success(result) -> None:
    assert "Traceback" not in result.output, result.output
    if result.exit_code != 0:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.output
        assert result.exit_code in (1, 2), result.output


# -- registry.toml ------------------------------------------------------------------------


@EXAMPLES
@given(st.text(max_size=200))
def test_any_text_as_registry_file_is_modules_or_a_config_error(text):
    path = _write(text)
    try:
        modules = read_registry_file(path)
    except ConfigError as error:
        assert "\n" not in str(error) and str(path) in str(error)
    else:
        assert all(MODULE_NAME.match(m) for m in modules)
    finally:
        path.unlink()


@EXAMPLES
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["module", "path", "code", "name"]), VALUES | MODULES,
                        max_size=3),
        max_size=4,
    )
)  # fmt: skip
def test_structured_registry_entries_load_only_module_names(tables):
    text = "".join(
        "[[plugins]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items())
        for table in tables
    )
    path = _write(text)
    try:
        modules = read_registry_file(path)
    except ConfigError as error:
        assert "\n" not in str(error)
    else:  # accepted: exactly one key, module, holding a dotted identifier
        assert all(set(t) == {"module"} for t in tables)
        assert modules == [t["module"] for t in tables]
        assert all(MODULE_NAME.match(m) for m in modules)
    finally:
        path.unlink()


@EXAMPLES
@given(st.lists(st.from_regex(r"zoo_hyp_[a-z0-9_]{1,12}", fullmatch=True), max_size=3))
def test_registry_of_missing_local_modules_reports_them_as_broken(names):
    folder = Path(tempfile.mkdtemp())
    path = folder / "registry.toml"
    path.write_text("".join(f'[[plugins]]\nmodule = "{name}"\n' for name in names))
    warnings: list[str] = []
    registry = Registry(entry_points=False, user_registry=path, warn=warnings.append)
    assert {"dense", "cnn"} <= {entry.name for entry in registry.list()}
    broken = [entry for entry in registry.list(include_broken=True) if entry.broken]
    unique = list(dict.fromkeys(names))  # a module listed twice is loaded once
    repeated = [name for name in unique if names.count(name) > 1]
    assert len(broken) == len(unique)
    assert len(warnings) == len(unique) + len(repeated)  # one more line per repeated module
    assert all("\n" not in warning for warning in warnings)


# -- config TOML files ----------------------------------------------------------------


@EXAMPLES
@given(st.sampled_from(PLUGINS[:4]), st.text(max_size=200))
def test_any_text_as_config_file_is_a_run_configuration_or_one_line(plugin, text):
    path = _write(text)
    try:
        _assert_one_line_or_success(invoke("run", plugin, "--config", str(path), "--dry-run"))
    finally:
        path.unlink()


def _option_names(plugin: str) -> list[str]:
    specs = field_specs(zoo.get_plugin(plugin).Config) + field_specs(RunSettings)
    return [spec.name for spec in specs]


@EXAMPLES
@given(st.sampled_from(PLUGINS[:4]), st.data())
def test_config_files_with_known_keys_and_random_values(plugin, data):
    names = [*_option_names(plugin), "nosuch_option"]
    values = data.draw(st.dictionaries(st.sampled_from(names), VALUES, max_size=4))
    path = _write("".join(f"{key} = {_toml_value(value)}\n" for key, value in values.items()))
    try:
        result = invoke("run", plugin, "--config", str(path), "--dry-run")
        _assert_one_line_or_success(result)
        if result.exit_code == 0:  # accepted values are what the run would use
            resolved = json.loads(result.stdout)
            flat = {**resolved["config"], **resolved["settings"]}
            for key, value in values.items():
                assert flat[key] == (list(value) if isinstance(value, tuple) else value), key
    finally:
        path.unlink()


# -- CLI values -----------------------------------------------------------------------

CLI_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
) | st.sampled_from(["-1", "0", "1e309", "nan", "inf", "--", "-x", "", " ", "1,2", "true"])


@EXAMPLES
@given(st.sampled_from(PLUGINS), st.data())
def test_random_cli_values_are_a_run_configuration_or_one_line(plugin, data):
    specs = field_specs(zoo.get_plugin(plugin).Config) + field_specs(RunSettings)
    options = data.draw(st.lists(st.sampled_from(specs), min_size=1, max_size=3))
    args, given = ["run", plugin], {}
    for spec in options:
        if spec.kind is bool:
            given[spec.name] = data.draw(st.booleans())
            args.append(spec.flag if given[spec.name] else f"--no-{spec.flag[2:]}")
        else:
            given[spec.name] = data.draw(CLI_TEXT)
            args += [spec.flag, given[spec.name]]
    result = invoke(*args, "--dry-run")
    _assert_one_line_or_success(result)
    if result.exit_code == 0:  # accepted: the configuration holds exactly what was typed
        printed = json.loads(result.stdout)
        flat = {**printed["config"], **printed["settings"]}
        kinds = {spec.name: spec for spec in specs}
        for name, value in given.items():
            assert flat[name] == _as_typed(kinds[name], value), (name, value)


def _as_typed(spec, value):
    """What a typed command-line value means, worked out apart from zoo's own parser."""
    if spec.kind is bool:
        return value
    if spec.kind is tuple:
        return [_as_typed_scalar(spec.item_kind, part.strip()) for part in value.split(",")
                if part.strip()]  # fmt: skip
    return _as_typed_scalar(spec.kind, value)


def _as_typed_scalar(kind: type, text: str):
    return int(text) if kind is int else float(text) if kind is float else text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--lr", "nan"], "--lr: must be a finite number"),
        (["--lr", "-1"], "--lr"),
        (["--batch-size", "0"], "--batch-size"),
        (["--epochs", "1e9"], "--epochs"),
        (["--precision", "fp8"], "--precision"),
    ],
)
def test_known_bad_cli_values_name_their_flag(args, fragment):
    result = invoke("run", "dense", *args, "--dry-run")
    assert result.exit_code == 2 and fragment in result.stderr, result.output


def test_dry_run_prints_the_configuration_and_trains_nothing(tmp_path):
    result = invoke("run", "cnn", "--lr", "0.01", "--out", str(tmp_path), "--dry-run")
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.stdout)
    assert resolved["plugin"] == "cnn" and resolved["config"]["lr"] == 0.01
    assert resolved["settings"]["channels_last"] is True  # the cnn's own default
    assert not any(tmp_path.iterdir())
    assert resolved["settings"]["out"] == str(tmp_path)
