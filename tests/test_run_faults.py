"""Runs that survive everything: time-boxed and forced resumes, one writer per run,
plugin failures, a full disk and values out of bounds (issue 14, items 1-7, 9, 15-17).
Real runs, real processes and real file-size limits; nothing here mocks the trainer."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import time
from pathlib import Path

import attrs
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import zoo
from tests.conftest import ZOO, run_cli
from tests.test_cli import assert_one_line_error, invoke
from zoo.core.runs import read_jsonl

TIMING = {"seconds", "images_per_s"}
# 1000 images at dense's batch 32: 32 steps per epoch (the last batch holds 8)
DENSE = ("--train-size", "1000", "--test-size", "100", "--device", "cpu", "--no-progress")


def _records(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(path)]


def _assert_same_run(got: Path, expected: Path) -> None:
    """Weights bit for bit, and every log line (timing aside)."""
    a, b = load_file(str(got / "model.safetensors")), load_file(str(expected / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _records(got / "metrics.jsonl") == _records(expected / "metrics.jsonl")
    assert _records(got / "losses.jsonl") == _records(expected / "losses.jsonl")


def _hint(text: str) -> list[str]:
    """The `zoo run ... --resume RUN` command a message prints, as argv."""
    (command,) = re.findall(r"`(zoo run [^`]+)`", text)
    return shlex.split(command)[1:]


def assert_fails_with(result, code: int, *fragments: str) -> None:
    """Progress lines may come first; then exactly one error line, no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("zoo: error: ")] == lines[-1:], lines
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # both paths, whatever this CPU has
def test_max_steps_only_stops_early_and_the_same_epochs_finish_bit_identical(tmp_path, precision):
    """Cosine (the default schedule) is planned over the epochs of the call that started
    the run; --max-steps 45 stops inside epoch 2, and the resume finishes that epoch."""
    options = (*DENSE, "--precision", precision)
    whole = invoke("run", "dense", "--epochs", "3", *options, "--out", str(tmp_path / "w"))
    assert whole.exit_code == 0, whole.output
    stopped = invoke("run", "dense", "--epochs", "3", "--max-steps", "45", *options,
                     "--out", str(tmp_path / "s"))  # fmt: skip
    assert stopped.exit_code == 0, stopped.output
    (run,) = (tmp_path / "s").iterdir()
    header = json.loads(safe_open(str(run / "state.safetensors"), "pt").metadata()["zoo"])
    assert (header["epoch"], header["step"]) == (1, 45)  # epoch 2 is not recorded as done
    assert header["plan"]["total_steps"] == 96  # three epochs, not 45 steps
    assert json.loads((run / "config.json").read_text())["resolved"]["precision"] == precision
    assert read_jsonl(run / "metrics.jsonl")[-1]["partial"] is True
    resumed = run_cli(*_hint(stopped.stderr))  # exactly as printed
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["step"] == 96
    (straight,) = (tmp_path / "w").iterdir()
    _assert_same_run(run, straight)


def test_more_epochs_than_planned_re_plan_and_say_so(tmp_path):
    first = invoke("run", "dense", "--epochs", "1", *DENSE, "--out", str(tmp_path))
    (run,) = tmp_path.iterdir()
    more = invoke("run", "dense", "--resume", str(run), "--epochs", "2")
    assert more.exit_code == 0, first.output + more.output
    assert "re-planning the run over 2 epochs (it was planned over 1)" in more.stderr
    header = json.loads(safe_open(str(run / "state.safetensors"), "pt").metadata()["zoo"])
    assert header["plan"] == {"epochs": 2, "steps_per_epoch": 32, "total_steps": 64}


def test_a_resume_takes_the_runs_own_settings_and_compares_only_what_is_given(tmp_path):
    options = ("--train-size", "300", "--precision", "fp32", "--lr-schedule", "constant",
               "--device", "cpu", "--no-progress", "--seed", "3")  # fmt: skip
    started = invoke("run", "dense", "--epochs", "2", "--max-steps", "5", *options,
                     "--out", str(tmp_path))  # fmt: skip
    assert started.exit_code == 0, started.output
    (run,) = tmp_path.iterdir()
    refused = invoke("run", "dense", "--resume", str(run), "--train-size", "400")
    assert_one_line_error(refused, 2, "--train-size cannot change", "start a new run")
    other = invoke("run", "dense", "--resume", str(run), "--lr", "0.5")
    assert_one_line_error(other, 2, "--lr 0.001", "0.5", "leave it out")
    resumed = invoke("run", "dense", "--resume", str(run))  # no option repeated
    assert resumed.exit_code == 0, resumed.output
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["train_size"] == 300
    assert config["config"]["lr_schedule"] == "constant"
    assert json.loads(resumed.stdout.splitlines()[-1])["step"] == 20  # 2 epochs of 10


def test_the_ctrl_c_hint_works_as_printed_with_non_default_settings(tmp_path):
    # 10 epochs of 94 steps: seconds of training left when the signal lands at step 25
    options = ["--epochs", "10", "--train-size", "3000", "--test-size", "50", "--seed", "5",
               "--precision", "fp32", "--lr-schedule", "constant", "--no-progress",
               "--device", "cpu"]  # fmt: skip
    out = tmp_path / "stopped"
    process = subprocess.Popen([*ZOO, "run", "dense", *options, "--out", str(out)],
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("dense-*/losses.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (run,) = out.iterdir()
    resumed = run_cli(*_hint(stderr))
    assert resumed.returncode == 0, resumed.stderr
    straight = invoke("run", "dense", *options, "--out", str(tmp_path / "straight"))
    assert straight.exit_code == 0, straight.output
    _assert_same_run(run, next((tmp_path / "straight").iterdir()))


def test_force_takes_effect_in_the_optimizer_and_config_json_keeps_the_history(tmp_path):
    common = ("--lr-schedule", "constant", *DENSE)
    assert invoke("run", "dense", "--epochs", "1", *common, "--out", str(tmp_path)).exit_code == 0
    (run,) = tmp_path.iterdir()
    forced = invoke("run", "dense", "--resume", str(run), "--epochs", "2", "--lr", "0.01",
                    "--force")  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert "optimizer 'net' now uses lr 0.01" in forced.stderr
    header = json.loads(safe_open(str(run / "state.safetensors"), "pt").metadata()["zoo"])
    assert header["optimizers"]["net"]["param_groups"][0]["lr"] == 0.01
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["lr"] == 0.01
    start, resume = config["history"]
    assert start["call"] == "start"
    assert resume["changed"]["lr"] == {"from": 0.001, "to": 0.01}
    assert resume["changed"]["epochs"] == {"from": 1, "to": 2}
    assert resume["forced"] is True and resume["step"] == 32
    batch = invoke("run", "dense", "--resume", str(run), "--epochs", "3", "--batch-size", "64",
                   "--force")  # fmt: skip
    assert_one_line_error(batch, 2, "--batch-size cannot change", "even with --force")


def test_a_failed_resume_changes_nothing(tmp_path):
    assert invoke("run", "dense", "--epochs", "1", *DENSE, "--out", str(tmp_path)).exit_code == 0
    (run,) = tmp_path.iterdir()
    before = _snapshot(run)
    empty = tmp_path / "empty"
    empty.mkdir()
    no_data = invoke("run", "dense", "--resume", str(run), "--epochs", "2",
                     "--data-dir", str(empty))  # fmt: skip
    assert no_data.exit_code == 1 and "Traceback" not in no_data.output
    assert _snapshot(run) == before
    assert invoke("eval", str(run)).exit_code == 0
    before = _snapshot(run)
    state = run / "state.safetensors"
    state.write_bytes(state.read_bytes()[:-100])  # truncated by a crash of the disk
    damaged = _snapshot(run)
    corrupt = invoke("run", "dense", "--resume", str(run), "--epochs", "2")
    assert_one_line_error(corrupt, 1, "state.safetensors")
    assert _snapshot(run) == damaged and damaged != before


def _wait_for_lock(run: Path, timeout: float = 120) -> None:
    """Until some process holds the run folder's flock (it then trains into it)."""
    stat = run.stat()
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    deadline = time.monotonic() + timeout
    while device not in Path("/proc/locks").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_one_writer_per_run_and_a_killed_writer_leaves_no_stale_lock(tmp_path):
    assert invoke("run", "dense", "--epochs", "1", *DENSE, "--out", str(tmp_path)).exit_code == 0
    (run,) = tmp_path.iterdir()
    writer = subprocess.Popen([*ZOO, "run", "dense", "--resume", str(run), "--epochs", "100000"],
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for_lock(run)
        second = run_cli("run", "dense", "--resume", str(run), "--epochs", "3")
        assert second.returncode == 1, second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert f"in use by process {writer.pid} (zoo run dense --resume" in line
        evaluation = run_cli("eval", str(run))
        assert "cannot evaluate" in evaluation.stderr and evaluation.returncode == 1
        assert writer.poll() is None  # the refused processes left the holder training
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    step = json.loads(safe_open(str(run / "state.safetensors"), "pt").metadata()["zoo"])["step"]
    after = run_cli("run", "dense", "--resume", str(run), "--max-steps", str(step + 3))
    assert after.returncode == 0, after.stderr  # the kernel dropped the dead writer's lock


def _failing_dense(name: str, raise_at: int, error: BaseException) -> type[zoo.Plugin]:
    dense = zoo.get_plugin("dense")

    class Failing(dense):
        info = attrs.evolve(dense.info, name=name, summary="dense that raises")

        def train_step(self, batch):
            if self.global_step + 1 == raise_at:
                raise error
            return super().train_step(batch)

    return Failing


def test_a_plugin_exception_mid_run_is_one_line_and_marks_the_folder(registry, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    registry.register(_failing_dense("boom", 40, ValueError("boom\nsecond line")))
    result = invoke("run", "boom", "--epochs", "2", *DENSE, "--out", str(tmp_path))
    expected = "plugin 'boom' failed in train_step after step 39: ValueError: boom second"
    assert_fails_with(result, 1, expected, "last checkpoint (step 32)", "--resume")
    (run,) = tmp_path.iterdir()
    assert "ValueError" in json.loads((run / "failed.json").read_text())["error"]
    auto = invoke("run", "boom", "--resume", "auto", "--out", str(tmp_path), "--epochs", "2")
    assert_one_line_error(auto, 1, "no boom run with a checkpoint")  # failed runs are skipped
    monkeypatch.setenv("ZOO_DEBUG", "1")
    debug = invoke("run", "boom", "--epochs", "2", *DENSE, "--out", str(tmp_path / "debug"))
    assert "Traceback" in debug.stderr and "raise error" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("zoo: error: plugin 'boom'")


@pytest.mark.parametrize(
    ("error", "code", "fragment"),
    [
        (RuntimeError("early"), 1, "failed in train_step after step 2: RuntimeError: early"),
        (SystemExit(3), 1, "called sys.exit(3)"),
        (KeyboardInterrupt(), 130, "interrupted by Ctrl-C"),
    ],
)
def test_a_failure_before_anything_was_saved_leaves_no_folder(registry, tmp_path, error, code,
                                                              fragment):  # fmt: skip
    registry.register(_failing_dense("early", 3, error))
    result = invoke("run", "early", *DENSE, "--out", str(tmp_path))
    assert_fails_with(result, code, fragment, "nothing had been saved yet", "was removed")
    assert list(tmp_path.iterdir()) == []


def test_a_nan_before_the_first_checkpoint_says_what_really_happened(tmp_path, registry):
    from tests.test_nonfinite import _poisoned_dense

    registry.register(_poisoned_dense(frozenset({3})))
    early = invoke("run", "poisoned", *DENSE, "--out", str(tmp_path / "early"))
    assert_fails_with(early, 1, "nan at step 3", "nothing had been saved yet")
    assert not list((tmp_path / "early").iterdir())


def test_a_nan_after_a_log_line_but_before_the_first_checkpoint_marks_the_run(tmp_path, registry):
    from tests.test_nonfinite import _poisoned_dense

    registry.register(_poisoned_dense(frozenset({30})))
    later = invoke("run", "poisoned", *DENSE, "--out", str(tmp_path / "later"))
    assert_fails_with(later, 1, "no checkpoint had been written yet", "marked failed")
    (run,) = (tmp_path / "later").iterdir()
    assert (run / "failed.json").is_file() and (run / "losses.jsonl").is_file()
    assert "last good checkpoint" not in later.stderr


def _limited(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    """RLIMIT_FSIZE (ulimit -f) makes writes past the limit fail as a full disk does."""
    assert invoke("run", "dense", "--epochs", "1", *DENSE, "--out", str(tmp_path)).exit_code == 0
    (run,) = tmp_path.iterdir()
    state = (run / "state.safetensors").read_bytes()
    full = subprocess.run([*ZOO, "run", "dense", "--resume", str(run), "--epochs", "2"],
                          capture_output=True, text=True, preexec_fn=_limited(200_000),
                          timeout=300)  # fmt: skip
    assert full.returncode == 1, full.stderr
    line = full.stderr.strip().splitlines()[-1]
    assert "Traceback" not in full.stderr
    assert "file-size limit" in line and "last checkpoint (step 32)" in line, line
    assert (run / "state.safetensors").read_bytes() == state
    assert not list(run.glob(".*.tmp"))
    new = subprocess.run(
        [*ZOO, "run", "dense", *DENSE, "--out", str(tmp_path / "new")],
        capture_output=True,
        text=True,
        preexec_fn=_limited(100),
        timeout=300,
    )
    assert new.returncode == 1 and "Traceback" not in new.stderr, new.stderr
    assert not list((tmp_path / "new").iterdir())  # no empty run folder left behind
    evaluation = subprocess.run([*ZOO, "eval", str(run)], capture_output=True, text=True,
                                preexec_fn=_limited(100), timeout=300)  # fmt: skip
    assert evaluation.returncode == 1 and "Traceback" not in evaluation.stderr
    assert json.loads((run / "eval.json").read_text())  # the good one is kept
    (run / "failed.json").unlink()  # marked by the full disk above; compare skips those
    board = tmp_path / "board"
    board.mkdir()
    compare = subprocess.run([*ZOO, "compare", str(run), "-o", str(board)], capture_output=True,
                             text=True, preexec_fn=_limited(100), timeout=300)  # fmt: skip
    assert compare.returncode == 1 and "Traceback" not in compare.stderr, compare.stderr
    assert "file-size limit" in compare.stderr.strip().splitlines()[-1]
    assert not list(board.iterdir())  # no half-written leaderboard


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("run", "dense", "--seed", str(2**64), "--dry-run"), "--seed"),
        (("run", "dense", "--hidden", "1000000000000", "--dry-run"), "--hidden"),
        (("run", "dense", "--train-size", "1"), "0 training steps"),
        (("run", "dense", "--epochs", "10000000000", "--dry-run"), "--epochs"),
    ],
)
def test_values_that_would_blow_up_fail_before_any_work(tmp_path, args, fragment):
    result = invoke(*args, "--out", str(tmp_path))
    assert_one_line_error(result, 2, fragment)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_sampling_an_absurd_number_of_images_is_refused_at_once(tmp_path):
    result = invoke("sample", str(tmp_path), "--n", "100000000")
    assert_one_line_error(result, 2, "--n")
    with pytest.raises(zoo.ConfigError, match="between 1 and"):
        zoo.sample(tmp_path, 100_000_000)


def test_networks_too_big_for_memory_are_one_line(registry, tmp_path):
    dense = zoo.get_plugin("dense")

    class Huge(dense):
        info = attrs.evolve(dense.info, name="huge", summary="asks for petabytes")

        def build(self):
            return {"net": torch.nn.Linear(2**25, 2**25)}

    registry.register(Huge)
    result = invoke("run", "huge", *DENSE, "--out", str(tmp_path))
    assert_fails_with(result, 2, "need more memory", "choose smaller sizes")
    assert list(tmp_path.iterdir()) == []


def test_compare_skips_failed_and_orphan_folders_with_a_warning(tmp_path):
    import shutil

    assert invoke("run", "dense", "--epochs", "1", *DENSE, "--out", str(tmp_path)).exit_code == 0
    (good,) = tmp_path.iterdir()
    failed, orphan = tmp_path / "dense-failed", tmp_path / "dense-orphan"
    shutil.copytree(good, failed)
    (failed / "failed.json").write_text('{"error": "loss became nan at step 3"}')
    orphan.mkdir()
    shutil.copy(good / "config.json", orphan / "config.json")
    out = tmp_path / "board"
    out.mkdir()
    result = invoke("compare", str(good), str(failed), str(orphan), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"skipped {failed}: it failed" in result.stderr
    assert f"skipped {orphan}: it holds only config.json" in result.stderr
    rows = [line for line in (out / "leaderboard.md").read_text().splitlines()[2:] if line]
    assert len(rows) == 1 and good.name in rows[0]
    nothing = invoke("compare", str(failed), "-o", str(out))
    assert_fails_with(nothing, 1, "nothing to compare")
