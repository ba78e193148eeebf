"""Hostile run folders: links out of the run, crafted checkpoints, garbage log lines,
absurdly deep JSON, folders where files belong, read-only folders and Markdown-breaking
names. Each ends in a good result or one `zoo: error:` line, with nothing already
written changed; hypothesis fuzzes config.json, the logs and the safetensors headers
through `zoo eval`, `zoo report`, `zoo compare` and `zoo run dense --resume`."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from tests.test_cli import invoke
from zoo.core.errors import CheckpointError
from zoo.core.runs import read_jsonl

FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TINY = {"epochs": 1, "max_steps": 3, "train_size": 64, "test_size": 100, "device": "cpu",
        "progress": False, "seed": 5}  # fmt: skip
MARKER = "MARKER-FROM-OUTSIDE-THE-RUN"
PICTURE = Path(__file__).resolve().parent.parent / "docs" / "images" / "report_cnn.png"


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    """One tiny trained dense run; tests damage copies of it."""
    return zoo.run("dense", out=str(tmp_path_factory.mktemp("dense")), **TINY).path


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory) -> Path:
    out = str(tmp_path_factory.mktemp("colorizer"))
    return zoo.run("colorizer", **{**TINY, "max_steps": 2, "test_size": 16}, width=8, out=out).path


_copies = itertools.count()


def copy_of(run: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or f"run-{next(_copies)}")
    shutil.copytree(run, target)
    return target


def resume(run: Path):
    return invoke("run", "dense", "--resume", str(run), "--epochs", "2", "--max-steps", "4",
                  "--train-size", "64", "--test-size", "100", "--seed", "5", "--device", "cpu",
                  "--no-progress")  # fmt: skip


def colorize(run: Path, out: Path):
    return invoke("colorize", str(run), str(PICTURE), "-o", str(out), "--device", "cpu")


def one_line_or_success(result) -> None:
    """Exit 0 with no error, or exit != 0 with exactly one `zoo: error:` line, the last
    (a resume may have said `zoo: training ...` before it)."""
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("zoo: error: ")]
    if result.exit_code == 0:
        assert not errors, result.stderr
    else:
        assert len(errors) == 1 and lines[-1] == errors[0], result.stderr


def refused(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    one_line_or_success(result)
    line = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in line, line
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}  # fmt: skip


# -- safetensors headers -------------------------------------------------------------


def read_header(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def write_header(path: Path, header, data: bytes, size: int | None = None) -> None:
    body = json.dumps(header).encode() if not isinstance(header, bytes) else header
    length = len(body) if size is None else size
    path.write_bytes(length.to_bytes(8, "little", signed=False) + body + data)


def edit_meta(path: Path, change) -> None:
    """Rewrite the zoo metadata (the JSON in ``__metadata__["zoo"]``) of a checkpoint."""
    header, data = read_header(path)
    meta = json.loads(header["__metadata__"]["zoo"])
    change(meta)
    header["__metadata__"]["zoo"] = json.dumps(meta)
    write_header(path, header, data)


def edit_tensors(path: Path, change) -> None:
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
    save_file(change(tensors), str(path), metadata)


def _set(key, value):
    def change(meta):
        meta[key] = value

    return change


def _add_copy(name: str):
    def change(tensors):
        return {**tensors, name: tensors["optim.net.0.exp_avg"].clone()}

    return change


def _without(prefix: str):
    return lambda tensors: {k: v for k, v in tensors.items() if not k.startswith(prefix)}


def _cut(key: str):
    return lambda tensors: {**tensors, key: tensors[key][:10].clone()}


def _flatten(key: str):
    return lambda tensors: {**tensors, key: tensors[key].flatten().clone()}


def _rename(old: str, new: str):
    return lambda tensors: {(new if k == old else k): v for k, v in tensors.items()}


# (what is changed in state.safetensors, how, the refusal's words)
STATE_CRAFTS = {
    "format_version '2'": (edit_meta, _set("format_version", "2"), "format_version '2' is not"),
    "epoch 'abc'": (edit_meta, _set("epoch", "abc"), "its epoch 'abc' is not a whole number"),
    "optimizers a list": (edit_meta, _set("optimizers", [1]), "optimizer metadata is not"),
    "optimizers a string": (edit_meta, _set("optimizers", "net"), "optimizer metadata is not"),
    "no rng tensors": (edit_tensors, _without("rng."), "has no RNG state rng.torch"),
    "short rng.shuffle": (edit_tensors, _cut("rng.shuffle"), "rng.shuffle is not a generator"),
    "optim.net.x.y": (edit_tensors, _add_copy("optim.net.x.y"), "'optim.net.x.y' is not named"),
    "optim.net.notanint.exp_avg": (
        edit_tensors,
        _add_copy("optim.net.notanint.exp_avg"),
        "notanint.exp_avg' is not named",
    ),
    "exp_avg of another shape": (
        edit_tensors,
        _flatten("optim.net.0.exp_avg"),
        "state 0.exp_avg is a float32 tensor",
    ),
    "exp_avg_sq renamed": (
        edit_tensors,
        _rename("optim.net.1.exp_avg_sq", "optim.net.1.other"),
        "parameter 1 has",
    ),
}


@pytest.mark.parametrize("craft", STATE_CRAFTS)
def test_crafted_state_files_refuse_the_resume_in_one_line_writing_nothing(dense, tmp_path, craft):
    run = copy_of(dense, tmp_path)
    edit, change, words = STATE_CRAFTS[craft]
    edit(run / "state.safetensors", change)
    before = snapshot(run)
    refused(resume(run), str(run / "state.safetensors"), words)
    after = snapshot(run)
    for name in ("state.safetensors", "model.safetensors", "metrics.jsonl", "losses.jsonl",
                 "eval.json", "report.html"):  # fmt: skip
        assert after[name] == before[name], name


@pytest.mark.parametrize(
    ("change", "words"),
    [(_set("format_version", "2"), "format_version '2' is not a whole number"),
     (_set("epoch", "abc"), "its epoch 'abc' is not"),
     (_set("step", -1), "its step -1 is not")],
    ids=["format_version", "epoch", "step"],
)  # fmt: skip
def test_crafted_model_metadata_refuses_eval_and_colorize(
    dense, colorizer, tmp_path, change, words
):
    run = copy_of(dense, tmp_path)
    edit_meta(run / "model.safetensors", change)
    before = snapshot(run)
    refused(invoke("eval", str(run), "--test-size", "20"), "model.safetensors", words)
    assert snapshot(run) == before
    colour = copy_of(colorizer, tmp_path)
    edit_meta(colour / "model.safetensors", change)
    refused(colorize(colour, tmp_path / "out"), "model.safetensors", words)
    assert not (tmp_path / "out").exists()


def test_state_crafts_leave_eval_and_colorize_working(dense, colorizer, tmp_path):
    """The refusals above are the state file's: the model file still evaluates."""
    run = copy_of(dense, tmp_path)
    edit_tensors(run / "state.safetensors", _without("rng."))
    assert invoke("eval", str(run), "--test-size", "20").exit_code == 0
    colour = copy_of(colorizer, tmp_path)
    edit_meta(colour / "state.safetensors", _set("optimizers", "x"))
    assert colorize(colour, tmp_path / "out").exit_code == 0


# -- item 13: dtypes and finite values at load ------------------------------------------


WEIGHT = "net.1.weight"
WEIGHT_CRAFTS = {
    "int8": (lambda t: t.to(torch.int8), f"tensor {WEIGHT} is int8, the network expects float32"),
    "bool": (lambda t: t > 0, f"tensor {WEIGHT} is bool, the network expects float32"),
    "float64": (lambda t: t.double(), f"tensor {WEIGHT} is float64, the network expects"),
    "nan": (lambda t: t.index_fill(0, torch.tensor([3]), float("nan")),
            f"tensor {WEIGHT} holds NaN or infinite values"),
    "inf": (lambda t: t.index_fill(1, torch.tensor([0]), float("-inf")),
            f"tensor {WEIGHT} holds NaN or infinite values"),
}  # fmt: skip


@pytest.mark.parametrize("craft", WEIGHT_CRAFTS)
def test_weights_of_another_dtype_or_not_finite_are_refused_and_eval_json_kept(
    dense, tmp_path, craft
):
    run = copy_of(dense, tmp_path)
    change, words = WEIGHT_CRAFTS[craft]
    edit_tensors(run / "model.safetensors", lambda t: {**t, WEIGHT: change(t[WEIGHT])})
    before = snapshot(run)
    refused(invoke("eval", str(run), "--test-size", "20"), "model.safetensors", words)
    assert snapshot(run) == before  # eval.json, its picture and the report as they were
    with pytest.raises(CheckpointError, match=WEIGHT):
        zoo.load(run)
    state_key = f"model.{WEIGHT}"  # the state file's copy, which resuming loads
    edit_tensors(run / "state.safetensors", lambda t: {**t, state_key: change(t[state_key])})
    refused(resume(run), "state.safetensors", words)
    assert snapshot(run)["model.safetensors"] == before["model.safetensors"]


# -- log lines, deep JSON, folders in the way --------------------------------------------


def test_log_lines_that_are_not_json_objects_are_skipped_like_torn_ones(dense, tmp_path):
    run = copy_of(dense, tmp_path)
    garbage = [b"[1,2]", b"3", b'"x"', b"null", b'\xff\xfe{"epoch": 7}', b"\x00\x01"]
    for log in ("metrics.jsonl", "losses.jsonl"):
        with (run / log).open("ab") as file:
            file.write(b"\n".join(garbage) + b"\n")
    with (run / "losses.jsonl").open("a") as file:  # an object resume cannot compare
        file.write('{"step": "abc", "loss": 1}\n')
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
    report = invoke("report", str(run))
    assert report.exit_code == 0, report.output
    assert "test_accuracy" in (run / "report.html").read_text()  # the real record is there
    compare = invoke("compare", str(run), "-o", str(tmp_path))
    assert compare.exit_code == 0, compare.output
    assert compare.stdout.splitlines()[2].split(" | ")[2:4] == ["1", "2"]  # epochs, steps
    result = resume(run)
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]
    for log in ("metrics.jsonl", "losses.jsonl"):  # the garbage is gone, every line a record
        lines = (run / log).read_bytes().splitlines()
        assert all(isinstance(json.loads(line)["step"], int) for line in lines), log


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_config_nested_100000_levels_deep_is_one_line_everywhere(dense, colorizer, tmp_path):
    run = copy_of(dense, tmp_path)
    (run / "config.json").write_text('{"plugin": "dense", "config": {}, "settings": '
                                     + _deep(100_000) + "}")  # fmt: skip
    before = snapshot(run)
    words = "config.json is damaged (nested deeper than 100 levels)"
    refused(invoke("eval", str(run)), words)
    refused(invoke("report", str(run)), words)
    refused(invoke("compare", str(run), "-o", str(tmp_path)), words)
    colour = copy_of(colorizer, tmp_path)
    (colour / "config.json").write_text('{"plugin": "colorizer", "config": ' + _deep(100_000) + "}")
    refused(colorize(colour, tmp_path / "out"), words)
    assert snapshot(run) == before and not (tmp_path / "leaderboard.md").exists()


def test_results_nested_too_deep_are_left_out_of_the_report(dense, tmp_path):
    run = copy_of(dense, tmp_path)
    (run / "robustness.json").write_text(_deep(100_000))
    (run / "fairly_deep.json").write_text(_deep(500))  # parses, but too deep to show
    assert invoke("report", str(run)).exit_code == 0
    page = (run / "report.html").read_text()
    assert "robustness.json is damaged and was left out" in page
    assert "fairly_deep.json is damaged and was left out" in page
    assert invoke("compare", str(run), "-o", str(tmp_path)).exit_code == 0


@pytest.mark.parametrize("blocked", ["eval.json", "confusion_matrix.png"])
def test_a_folder_where_eval_writes_refuses_eval_and_keeps_the_rest(dense, tmp_path, blocked):
    run = copy_of(dense, tmp_path)
    (run / blocked).unlink()
    (run / blocked).mkdir()
    before = snapshot(run)
    words = f"cannot write {run / blocked}: a folder"
    refused(invoke("eval", str(run), "--test-size", "20"), words)
    assert (run / blocked).is_dir() and snapshot(run) == before
    assert invoke("report", str(run)).exit_code == 0
    assert invoke("compare", str(run), "-o", str(tmp_path)).exit_code == 0


# -- read-only folders ----------------------------------------------------------------

READ_ONLY_SCRIPT = """
import json, sys
from click.testing import CliRunner
from zoo.cli import cli
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(cli, args)
    results.append({"code": result.exit_code, "stderr": result.stderr,
                    "error": None if isinstance(result.exception, (SystemExit, type(None)))
                    else repr(result.exception)})
print(json.dumps(results))
"""


def _in_read_only(folder: Path, commands: list[list[str]]) -> list[dict]:
    """Run zoo commands with ``folder`` read-only: by its mode for a normal user; for
    root, whom modes do not stop, in a private mount namespace with a read-only mount."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for path in modes:
            path.chmod(0o555)
        try:
            return [{"code": r.exit_code, "stderr": r.stderr, "error": None}
                    for r in (invoke(*args) for args in commands)]  # fmt: skip
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare: no way to make a folder read-only")
    shell = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && exec "$2" -c "$3" "$4"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", shell, "sh", str(folder), sys.executable, READ_ONLY_SCRIPT,
         json.dumps(commands)], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0 and ("mount" in done.stderr or "unshare" in done.stderr):
        pytest.skip(f"no read-only mount possible here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_read_only_run_folder_and_compare_output_are_one_line(dense, tmp_path):
    shared = tmp_path / "shared"
    run = copy_of(dense, shared, "run")
    (shared / "board").mkdir()
    before = snapshot(shared)
    commands = [["eval", str(run), "--test-size", "20"],
                ["compare", str(run), "-o", str(shared / "board")]]  # fmt: skip
    results = _in_read_only(shared, commands)
    for result, target in zip(results, [run / "eval.json", shared / "board"], strict=True):
        assert result["error"] is None, result
        assert result["code"] == 1, result
        lines = result["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"zoo: error: cannot write {target}"), lines
    assert snapshot(shared) == before
    assert sorted(p.name for p in shared.rglob(".*")) == []  # no temp file left either


# -- item 11: links out of the run ------------------------------------------------------


def _plant(run: Path, name: str, outside: Path) -> None:
    """Replace ``name`` with a link to a copy elsewhere that carries MARKER."""
    text = (run / name).read_text()
    if name == "config.json":
        data = json.loads(text)
        data["config"]["note"] = MARKER
        text = json.dumps(data)
    else:
        text = text.rstrip("\n").replace('"epoch": 1', f'"epoch": 1, "note": "{MARKER}"') + "\n"
    outside.write_text(text)
    (run / name).unlink()
    (run / name).symlink_to(outside)


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl"])
def test_config_or_metrics_linked_outside_the_run_are_refused(dense, tmp_path, name):
    run = copy_of(dense, tmp_path / "runs", "run")
    _plant(run, name, tmp_path / f"elsewhere-{name}")
    board = tmp_path / "board"
    board.mkdir()
    before = snapshot(run)
    words = f"{run / name} is a link to a file outside the run folder"
    refused(invoke("report", str(run)), words)
    refused(invoke("compare", str(run), "-o", str(board)), words)
    assert snapshot(run) == before and not any(board.iterdir())
    assert MARKER not in (run / "report.html").read_text()


def test_losses_linked_outside_refuse_the_resume(dense, tmp_path):
    run = copy_of(dense, tmp_path / "runs", "run")
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text((run / "losses.jsonl").read_text() + '{"step": 99, "loss": 1}\n')
    kept = outside.read_bytes()
    (run / "losses.jsonl").unlink()
    (run / "losses.jsonl").symlink_to(outside)
    refused(resume(run), f"{run / 'losses.jsonl'} is a link to a file outside the run folder")
    assert outside.read_bytes() == kept and (run / "losses.jsonl").is_symlink()


def test_a_link_that_stays_inside_the_run_is_read(dense, tmp_path):
    run = copy_of(dense, tmp_path, "run")
    (run / "logs").mkdir()
    (run / "metrics.jsonl").rename(run / "logs" / "metrics.jsonl")
    (run / "metrics.jsonl").symlink_to(Path("logs") / "metrics.jsonl")
    assert invoke("report", str(run)).exit_code == 0
    assert "test_accuracy" in (run / "report.html").read_text()


def test_results_and_pictures_linked_outside_are_left_out_with_a_warning(dense, tmp_path):
    run = copy_of(dense, tmp_path / "runs", "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "eval.json").write_text(json.dumps({"accuracy": 0.99, "note": MARKER}))
    shutil.copy(PICTURE, elsewhere / "loss.png")
    (elsewhere / "samples").mkdir()
    shutil.copy(PICTURE, elsewhere / "samples" / "epoch_1.png")
    for name in ("eval.json", "loss.png"):
        (run / name).unlink()
        (run / name).symlink_to(elsewhere / name)
    (run / "samples").symlink_to(elsewhere / "samples")
    secret = base64.b64encode(PICTURE.read_bytes()).decode()[:200]
    report = invoke("report", str(run))
    assert report.exit_code == 0, report.output
    warnings = report.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("zoo: warning: ") for w in warnings)
    assert all("is a link to a file outside the run folder; left out" in w for w in warnings)
    page = (run / "report.html").read_text()
    assert MARKER not in page and secret not in page and "Epoch 1" not in page
    board = tmp_path / "board"
    board.mkdir()
    assert invoke("compare", str(run), "-o", str(board)).exit_code == 0
    for name in ("leaderboard.md", "leaderboard.html"):
        text = (board / name).read_text()
        assert MARKER not in text and secret not in text and "0.99" not in text, name


# -- item 14: Markdown cells ------------------------------------------------------------


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells as GitHub splits them: at each `|` no backslash
    escapes."""
    cells, cell, escaped = [], "", False
    for char in line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]:
        if escaped:
            cell, escaped = cell + char, False
        elif char == "\\":
            cell, escaped = cell + char, True
        elif char == "|":
            cells, cell = [*cells, cell.strip()], ""
        else:
            cell += char
    return [*cells, cell.strip()]


def test_markdown_and_html_leaderboards_escape_names_and_values(dense, tmp_path):
    name = "r|x <img src=x onerror=alert(1)> *a* `c` [l](javascript:alert(1)) \\"
    run = copy_of(dense, tmp_path, name)
    (run / "eval.json").write_text(
        json.dumps(
            {"accuracy": 0.5, "top|1 <i>it</i>": 0.25, "judged_by": "judge | two\n<b>bold</b> `x`"}
        )
    )
    good = copy_of(dense, tmp_path, "plain")
    result = invoke("compare", str(run), str(good), "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "leaderboard.md").read_text()
    lines = markdown.strip().splitlines()
    assert len(lines) == 4  # header, rule, one line per run: no newline broke a row
    header = _cells(lines[0])
    assert all(len(_cells(line)) == len(header) for line in lines[2:]), lines
    for raw in ("<img", "<i>", "<b>", "`", "[l]("):
        assert raw not in markdown, raw
    names = [_cells(line)[0] for line in lines[2:]]
    assert names == [
        "r\\|x &lt;img src=x onerror=alert(1)&gt; *a* &#96;c&#96; "
        "\\[l\\](javascript:alert(1)) \\\\",
        "plain",
    ], names
    page = (tmp_path / "leaderboard.html").read_text()
    for raw in ("<img src=x", "<i>it", "<b>bold"):
        assert raw not in page, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


# -- fuzz: hypothesis-made config.json, log lines and safetensors headers ---------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip
RAW_TEXT = st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(
    max_size=40
)


def _mutated_config(data, original: dict) -> bytes:
    """Hypothesis's config.json: raw text or bytes, any JSON value, the real file with
    a table nested very deep, or with some of its values (top level or in
    config/settings) replaced or dropped."""
    kind = data.draw(st.sampled_from(["raw", "json", "deep", "edit", "edit", "edit"]))
    if kind == "raw":
        return data.draw(RAW_TEXT)
    if kind == "deep":  # nested past what the readers' stack holds, or just short of it
        levels = data.draw(st.sampled_from([99, 100, 101, 990, 5000, 100_000]))
        table = data.draw(st.sampled_from(["config", "settings", "resolved", "extra"]))
        text = json.dumps({**original, table: "DEEP"}).replace('"DEEP"', _deep(levels))
        return text.encode()
    if kind == "json":
        return json.dumps(data.draw(JSON)).encode()
    value = json.loads(json.dumps(original))
    for _ in range(data.draw(st.integers(1, 3))):
        table = data.draw(st.sampled_from(["config", "settings", None]))
        target = value if table is None or not isinstance(value.get(table), dict) else value[table]
        key = data.draw(st.sampled_from([*target, "extra"]))
        if data.draw(st.booleans()):
            target[key] = data.draw(JSON)
        else:
            target.pop(key, None)
    return json.dumps(value).encode()


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_fuzzed_config_json_through_eval_report_and_compare(dense, tmp_path, data):
    run = copy_of(dense, tmp_path)
    original = json.loads((run / "config.json").read_text())
    (run / "config.json").write_bytes(_mutated_config(data, original))
    kept = (run / "eval.json").read_bytes()
    evaluated = invoke("eval", str(run), "--test-size", "20")
    one_line_or_success(evaluated)
    if evaluated.exit_code != 0:
        assert (run / "eval.json").read_bytes() == kept
    one_line_or_success(invoke("report", str(run)))
    board = tmp_path / f"board-{next(_copies)}"
    board.mkdir()
    one_line_or_success(invoke("compare", str(run), "-o", str(board)))


RECORD = st.dictionaries(
    st.sampled_from(["epoch", "step", "seconds", "loss", "accuracy", "test_accuracy", "x|<b>"]),
    SCALARS | st.lists(SCALARS, max_size=2),
    max_size=4,
)
LINE = (
    RECORD.map(lambda r: json.dumps(r).encode())
    | JSON.map(lambda v: json.dumps(v).encode())
    | RAW_TEXT.map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))
)


@FUZZ
@given(data=st.data())
def test_fuzzed_log_lines_through_report_compare_and_resume(dense, tmp_path, data):
    run = copy_of(dense, tmp_path)
    for log in ("metrics.jsonl", "losses.jsonl"):
        lines = data.draw(st.lists(LINE, max_size=4), label=log)
        with (run / log).open("ab") as file:
            file.write(b"".join(line + b"\n" for line in lines))
    one_line_or_success(invoke("report", str(run)))
    board = tmp_path / f"board-{next(_copies)}"
    board.mkdir()
    one_line_or_success(invoke("compare", str(run), "-o", str(board), "--sort", "-epochs"))
    one_line_or_success(resume(run))
    for log in ("metrics.jsonl", "losses.jsonl"):  # what resume left: records only
        assert all(isinstance(json.loads(line), dict)
                   for line in (run / log).read_bytes().splitlines()), log  # fmt: skip


DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL", "F8_E4M3", "X"]
SAME_SIZE = {"F32": ["I32", "U32"], "U8": ["I8", "BOOL", "F8_E4M3"]}  # the file still parses


def _mutated_header(data, header: dict) -> tuple[object, int | None]:
    """A safetensors header with one thing changed: a tensor's dtype or shape (often so
    the file still parses), offsets or name, an entry dropped, a zoo metadata value, an
    optimizer setting, the whole JSON or its 8-byte length."""
    header = json.loads(json.dumps(header))
    meta = json.loads(header["__metadata__"]["zoo"])
    names = sorted(k for k in header if k != "__metadata__")
    name = data.draw(st.sampled_from(names))
    entry = header[name]
    kinds = ["dtype", "dtype", "shape", "shape", "offsets", "rename", "drop", "meta", "meta",
             "group", "group", "raw", "size"]  # fmt: skip
    kind = data.draw(st.sampled_from(kinds))
    if kind == "dtype":
        entry["dtype"] = data.draw(st.sampled_from(SAME_SIZE.get(entry["dtype"], []) or DTYPES))
    elif kind == "shape":
        numel = 1
        for size in entry["shape"]:
            numel *= size
        same = st.permutations(entry["shape"]).map(list) | st.just([numel]) | st.just([])
        entry["shape"] = data.draw(same | st.lists(st.integers(-1, 5000), max_size=3))
    elif kind == "offsets":
        entry["data_offsets"] = data.draw(st.lists(st.integers(-1, 2**34), max_size=3))
    elif kind == "rename":
        new = data.draw(st.sampled_from(["optim.net.x.y", "optim.net.07.exp_avg", "rng.cuda",
                                         "optim.net.9.exp_avg", "model.net.9.bias", "net.x",
                                         "optim.net.notanint.exp_avg", "rng.other"])
                        | st.text(max_size=20))  # fmt: skip
        header[new if new != "__metadata__" else "x"] = header.pop(name)
    elif kind == "drop":
        header.pop(name)
    elif kind in ("meta", "group"):
        _mutate_meta(data, meta, kind)
    elif kind == "raw":
        return data.draw(RAW_TEXT | JSON.map(lambda v: json.dumps(v).encode())), None
    else:
        header["__metadata__"]["zoo"] = json.dumps(meta)
        return header, data.draw(st.integers(0, 2**64 - 1))
    header["__metadata__"]["zoo"] = json.dumps(meta)
    return header, None


def _mutate_meta(data, meta: dict, kind: str) -> None:
    if kind == "group" and isinstance(meta.get("optimizers"), dict):
        group = meta["optimizers"]["net"]["param_groups"][0]
        key = data.draw(st.sampled_from([*group, "extra"]))
        like = group.get(key)  # often a value of the right kind: a number, a flag, a list
        group[key] = data.draw(
            JSON
            | st.floats(-10, 10)
            | st.booleans()
            | st.lists(st.integers(-2, 5), max_size=5)
            | st.just([like, like])
        )
        return
    key = data.draw(st.sampled_from([*meta, "format_version", "epoch", "step"]))
    meta[key] = data.draw(JSON | st.integers(-3, 10**20))


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_fuzzed_safetensors_headers_through_eval_and_resume(dense, tmp_path, data):
    run = copy_of(dense, tmp_path)
    file = data.draw(st.sampled_from(["model.safetensors", "state.safetensors"]))
    header, payload = read_header(run / file)
    mutated, size = _mutated_header(data, header)
    body = mutated if isinstance(mutated, bytes) else json.dumps(mutated).encode()
    write_header(run / file, body, payload, size)
    kept = (run / "eval.json").read_bytes()
    expected = _layout(dense / file)
    if file == "model.safetensors":
        result = invoke("eval", str(run), "--test-size", "20")
        if result.exit_code != 0:
            assert (run / "eval.json").read_bytes() == kept
    else:
        result = resume(run)
    one_line_or_success(result)
    if result.exit_code == 0:  # accepted: the network got exactly the tensors it has
        assert _layout(run / file) == expected


def _layout(path: Path) -> dict[str, tuple]:
    """Name -> (dtype, shape) of a checkpoint's weights, read by safetensors itself."""
    with safe_open(str(path), "pt") as handle:
        keys = handle.keys()
        names = [key for key in keys if not key.startswith(("optim.", "rng."))]
        slices = {name: handle.get_slice(name) for name in names}
        return {
            name.removeprefix("model."): (part.get_dtype(), part.get_shape())
            for name, part in slices.items()
        }


def test_the_untouched_copies_evaluate_report_compare_and_resume(dense, tmp_path):
    """The fuzz and the refusals above start from folders every command accepts."""
    run = copy_of(dense, tmp_path)
    for result in (invoke("eval", str(run), "--test-size", "20"), invoke("report", str(run)),
                   invoke("compare", str(run), "-o", str(tmp_path)), resume(run)):  # fmt: skip
        assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]
