"""The command line: generated options, listing, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import SMALL
from zoo.cli import cli

SMALL_FLAGS = [
    "--train-size",
    str(SMALL["train_size"]),
    "--test-size",
    str(SMALL["test_size"]),
    "--no-progress",
]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("zoo: error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_table_and_json():
    table = invoke("list")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == ["NAME", "TASK", "SOURCE", "SUMMARY"]
    rows = json.loads(invoke("list", "--task", "classify", "--json").stdout)
    assert {r["name"] for r in rows} >= {"dense", "cnn"}
    assert all(r["task"] == "classify" for r in rows)
    attacks = json.loads(invoke("list", "--task", "attack", "--json").stdout)
    assert "fgsm" in {r["name"] for r in attacks} and {r["task"] for r in attacks} == {"attack"}
    table_rows = {line.split()[0]: line.split()[1] for line in table.stdout.splitlines()[1:]}
    assert table_rows["fgsm"] == "attack" and table_rows["cnn"] == "classify"


def test_info_shows_every_hyperparameter_with_type_default_and_help():
    out = invoke("info", "cnn").stdout
    for fragment in (
        "--dropout",
        "float",
        "0.3",
        "LeakyReLU slope",
        "--batch-size",
        "32",
        "Brayton",
    ):
        assert fragment in out


def test_run_options_are_generated_from_the_config():
    out = invoke("run", "cnn", "--help").stdout
    for flag in (
        "--lr",
        "--dropout",
        "--negative-slope",
        "--epochs",
        "--max-steps",
        "--batch-size",
        "--device",
        "--seed",
        "--out",
        "--config",
    ):
        assert flag in out


def test_run_then_eval_reproduces_accuracy(tmp_path):
    ran = invoke(
        "run", "dense", "--max-steps", "20", "--hidden", "32", "--out", str(tmp_path), *SMALL_FLAGS
    )
    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    config = json.loads((tmp_path / summary["run"].split("/")[-1] / "config.json").read_text())
    assert config["config"]["hidden"] == 32
    evaluated = invoke("eval", summary["run"])
    assert evaluated.exit_code == 0
    line = next(x for x in evaluated.stdout.splitlines() if x.startswith("accuracy"))
    assert float(line.split()[1]) == pytest.approx(summary["test_accuracy"], abs=5e-5)


def test_config_file_values_apply_and_flags_win(tmp_path):
    config = tmp_path / "dense.toml"
    config.write_text("hidden = 16\nmax_steps = 4\nlr = 0.01\n")
    ran = invoke(
        "run",
        "dense",
        "--config",
        str(config),
        "--lr",
        "0.002",
        "--out",
        str(tmp_path / "runs"),
        *SMALL_FLAGS,
    )
    assert ran.exit_code == 0, ran.output
    run_dir = json.loads(ran.stdout.strip().splitlines()[-1])["run"]
    saved = json.loads((tmp_path / "runs" / run_dir.split("/")[-1] / "config.json").read_text())
    assert saved["config"]["lr"] == 0.002  # the flag beats the file's 0.01
    assert saved["config"]["hidden"] == 16
    assert saved["config"]["adam_eps"] == 1e-7  # untouched default
    assert saved["settings"]["max_steps"] == 4


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (["run", "dens"], 2, ["unknown plugin 'dens'", "did you mean 'dense'"]),
        (["info", "cnm"], 2, ["did you mean 'cnn'"]),
        (["run", "dense", "--lrr", "0.1"], 2, ["--lrr", "--lr"]),
        (["run", "dense", "--lr", "abc"], 2, ["--lr", "abc"]),
        (["run", "dense", "--lr", "-1"], 2, ["--lr", "must be > 0"]),
        (["run", "cnn", "--dropout", "1.5"], 2, ["--dropout", "must be <= 0.95"]),
        (["run", "dense", "--epochs", "0"], 2, ["--epochs", "must be >= 1"]),
        (["run", "dense", "--device", "tpu"], 2, ["--device", "tpu"]),
        (["run", "dense", "--config", "/no/such.toml"], 2, ["/no/such.toml", "does not exist"]),
        (["eval", "/no/such/run"], 1, ["does not exist"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_input_is_one_clear_line(args, code, fragments):
    assert_one_line_error(invoke(*args), code, *fragments)


def test_bad_config_files(tmp_path):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("hiden = 3\n")
    assert_one_line_error(
        invoke("run", "dense", "--config", str(unknown)), 2, "hiden", "did you mean --hidden"
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("hidden = [\n")
    assert_one_line_error(invoke("run", "dense", "--config", str(broken)), 2, "not valid TOML")
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('hidden = "many"\n')
    assert_one_line_error(
        invoke("run", "dense", "--config", str(wrong_type)), 2, "--hidden", "expected int"
    )


def test_registry_option_adds_local_plugins(tmp_path):
    from tests.test_registry import LOCAL_PLUGIN, _write_local
    from zoo.core.registry import default_registry, use_registry

    registry_file = _write_local(tmp_path, LOCAL_PLUGIN, name="cli_local_plugin")
    previous = default_registry()
    try:
        listed = invoke("--registry", str(registry_file), "list", "--json")
    finally:
        use_registry(previous)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["local-linear"]["source"] == "local"
    assert rows["local-linear"]["origin"] == "cli_local_plugin"


def test_missing_data_is_one_line_and_leaves_no_run(tmp_path):
    result = invoke(
        "run",
        "dense",
        "--data-dir",
        str(tmp_path / "nothing"),
        "--out",
        str(tmp_path / "runs"),
        "--max-steps",
        "1",
    )
    assert_one_line_error(result, 1, "Fashion-MNIST not found", "apt-get install")
    assert not any((tmp_path / "runs").glob("*"))


def _copy_run(dense_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(dense_run.path, target)
    return target


def test_eval_of_damaged_runs(dense_run, tmp_path):
    run = _copy_run(dense_run, tmp_path)
    weights = run / "model.safetensors"
    blob = weights.read_bytes()

    weights.write_bytes(blob[: len(blob) // 2])
    assert_one_line_error(invoke("eval", str(run)), 1, "corrupt or truncated")

    weights.write_bytes(b"\x00" * 64)
    assert_one_line_error(invoke("eval", str(run)), 1, "corrupt")

    header = json.loads(safe_open(str(run / "state.safetensors"), "pt").metadata()["zoo"])
    tensors = load_file(str(run / "state.safetensors"))
    for changed, message in (
        ({**header, "format_version": 99}, "written by a newer zoo (format 99); upgrade zoo"),
        ({**header, "format": "other"}, "not a zoo checkpoint"),
    ):
        save_file(tensors, str(weights), {"zoo": json.dumps(changed)})
        assert_one_line_error(invoke("eval", str(run)), 1, message)
    save_file(tensors, str(weights))  # no zoo header at all
    assert_one_line_error(invoke("eval", str(run)), 1, "not a zoo checkpoint")

    weights.unlink()  # a crash inside the first checkpoint: the state file's weights serve
    assert invoke("eval", str(run)).exit_code == 0
    from_state = json.loads((run / "eval.json").read_text())
    assert from_state["accuracy"] == dense_run.history[-1]["test_accuracy"]  # the same weights
    (run / "state.safetensors").unlink()
    assert_one_line_error(invoke("eval", str(run)), 1, "model.safetensors is missing")

    (run / "config.json").write_text("{not json")
    assert_one_line_error(invoke("eval", str(run)), 1, "config.json is damaged")

    (run / "config.json").unlink()
    assert_one_line_error(invoke("eval", str(run)), 1, "not a zoo run")

    a_file = tmp_path / "file.txt"
    a_file.write_text("hello")
    assert_one_line_error(invoke("eval", str(a_file)), 1, "not a run folder")


def test_checkpoint_of_another_shape_or_plugin(dense_run, tmp_path):
    run = _copy_run(dense_run, tmp_path)
    config_file = run / "config.json"
    config = json.loads(config_file.read_text())
    config["config"]["hidden"] = 64
    config_file.write_text(json.dumps(config))
    assert_one_line_error(
        invoke("eval", str(run)),
        1,
        "tensor net.1.bias has shape (128,)",
        "the network expects (64,)",
    )

    config["plugin"] = "cnn"
    config["config"] = {}
    config_file.write_text(json.dumps(config))
    assert_one_line_error(invoke("eval", str(run)), 1, "belongs to plugin 'dense'")


def test_help_imports_no_torch():
    code = (
        "import sys\n"
        "from zoo.cli import cli\n"
        "for args in (['--help'], ['list'], ['info', 'cnn']):\n"
        "    try:\n"
        "        cli.main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    assert 'torch' not in sys.modules, args\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_fails_before_any_run_folder_exists(tmp_path):
    result = invoke("run", "dense", "--device", "cuda", "--out", str(tmp_path))
    assert_one_line_error(result, 2, "--device cuda", "no CUDA device")
    assert list(tmp_path.iterdir()) == []
