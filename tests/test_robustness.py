"""Robustness the way the field measures it: AutoAttack, PGD and TRADES training, and
the catastrophic overfitting of FGSM training, on small real-data runs."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.conftest import SMALL
from tests.test_cli import assert_one_line_error, invoke
from zoo.tasks.classify.defences import pgd_examples, trades_examples
from zoo.tasks.classify.robust_check import catastrophic_overfitting

EPS = 0.2  # the paper's [-1, 1] scale: 0.1 in [0, 1], the field's Fashion-MNIST budget


def _curve(attack: str, target, tmp_path, **options) -> dict[float, float]:
    result = zoo.run(attack, target=[str(target)], epsilons=(0.0, EPS), modes=("standard",),
                     test_size=128, progress=False, out=str(tmp_path / attack),
                     **options)  # fmt: skip
    report = json.loads((result.path / "robustness.json").read_text())
    assert report["attack"] == attack and report["test_images"] == 128
    return {p["eps"]: p["accuracy"] for p in report["targets"][0]["curves"]["standard"]}


def test_autoattack_is_at_most_pgd_at_most_fgsm(dense_run, tmp_path):
    """On the same model and images: each stronger attack finds at least the errors of
    the weaker one (AutoAttack includes APGD, which includes what PGD-20 finds here)."""
    fgsm = _curve("fgsm", dense_run.path, tmp_path)
    pgd = _curve("pgd", dense_run.path, tmp_path, steps=20)
    auto = _curve("autoattack", dense_run.path, tmp_path)
    assert fgsm[0.0] == pgd[0.0] == auto[0.0]  # the clean accuracy, not asked of the attack
    assert auto[EPS] <= pgd[EPS] <= fgsm[EPS] < fgsm[0.0], (auto, pgd, fgsm)


def test_autoattack_stays_in_the_ball_and_the_range_of_a_minus_one_to_one_model(dense_run):
    """torchattacks works in [0, 1]; the cnn/dense take [-1, 1]: the wrapped model and
    the epsilon in image units must give images within eps of the originals."""
    loaded = zoo.load(dense_run.path)
    test = zoo.load_data().test.head(32)
    images = zoo.to_float(test.images, loaded.plugin.pixel_range)
    attack = zoo.get_plugin("autoattack")()
    eps = zoo.eps_in_range(EPS, "paper", loaded.plugin.pixel_range)
    adversarial = attack.perturb(loaded.plugin, images, test.labels, eps,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    delta = (adversarial - images).abs()
    assert float(delta.max()) <= eps + 1e-5 and float(delta.max()) > eps / 2
    assert adversarial.min() >= -1 and adversarial.max() <= 1
    assert not loaded.plugin.modules.training  # the target is handed back in eval mode


def test_autoattack_refuses_the_masked_mode_in_one_line(dense_run, tmp_path):
    result = invoke("run", "autoattack", "--target", str(dense_run.path), "--modes", "masked",
                    "--out", str(tmp_path))  # fmt: skip
    assert_one_line_error(result, 2, "--modes")


def test_pgd_and_trades_training_examples_lie_in_the_ball(dense_run):
    loaded = zoo.load(dense_run.path)
    plugin = loaded.plugin
    plugin.config = type(plugin.config)(adversarial_eps=EPS, adversarial_steps=5)
    test = zoo.load_data().test.head(64)
    images = zoo.to_float(test.images, plugin.pixel_range)
    eps = zoo.eps_in_range(EPS, "paper", plugin.pixel_range)
    for examples in (pgd_examples(plugin, images, test.labels, eps),
                     trades_examples(plugin, images, eps)):  # fmt: skip
        delta = (examples - images).abs()
        assert float(delta.max()) <= eps + 1e-6 and float(delta.mean()) > eps / 4
        assert examples.min() >= plugin.pixel_range[0] and examples.max() <= plugin.pixel_range[1]
    with torch.no_grad():
        clean = (plugin.predict(images).argmax(1) == test.labels).float().mean()
        attacked = (plugin.predict(pgd_examples(plugin, images, test.labels, eps)).argmax(1)
                    == test.labels).float().mean()  # fmt: skip
    assert attacked < clean - 0.2  # they are adversarial, not noise


def _weights(tmp_path, name: str, **config) -> dict[str, torch.Tensor]:
    options = {"seed": 2, "precision": "fp32", "max_steps": 4, **SMALL}
    result = zoo.run("cnn", out=str(tmp_path / name), **options, **config)
    return load_file(str(result.path / "model.safetensors"))


def test_trades_with_beta_zero_is_plain_training_and_with_beta_six_is_not(tmp_path):
    plain = _weights(tmp_path, "plain")
    zero = _weights(tmp_path, "zero", adversarial_eps=EPS, adversarial="trades", trades_beta=0.0)
    six = _weights(tmp_path, "six", adversarial_eps=EPS, adversarial="trades",
                   adversarial_steps=2)  # fmt: skip
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert not all(torch.equal(plain[k], six[k]) for k in plain)


def test_pgd_training_trains_on_other_examples_than_fgsm_training(tmp_path):
    fgsm = _weights(tmp_path, "fgsm", adversarial_eps=EPS)
    pgd = _weights(tmp_path, "pgd", adversarial_eps=EPS, adversarial="pgd", adversarial_steps=2)
    assert not all(torch.equal(fgsm[k], pgd[k]) for k in fgsm)


def test_adversarial_training_records_robust_accuracy_every_epoch(tmp_path):
    # fp32: the same model, and the same inequalities, on every CPU
    result = zoo.run("dense", epochs=2, adversarial_eps=EPS, out=str(tmp_path), seed=1,
                     precision="fp32", **SMALL)  # fmt: skip
    records = [json.loads(line) for line in (result.path / "metrics.jsonl").open()]
    assert len(records) == 2
    for record in records:
        assert 0 <= record["test_pgd_accuracy"] <= record["test_fgsm_accuracy"] <= 1
        assert record["test_fgsm_accuracy"] < record["test_accuracy"]


COLLAPSE = [  # FGSM training that learns to beat FGSM's single step (Wong et al. 2020)
    {"epoch": 1, "test_fgsm_accuracy": 0.55, "test_pgd_accuracy": 0.45},
    {"epoch": 2, "test_fgsm_accuracy": 0.62, "test_pgd_accuracy": 0.50},
    {"epoch": 3, "test_fgsm_accuracy": 0.80, "test_pgd_accuracy": 0.04},
]


def test_catastrophic_overfitting_is_detected_on_a_collapse():
    warning = catastrophic_overfitting(COLLAPSE)
    assert warning and "0.500 to 0.040" in warning and "--adversarial pgd" in warning


@pytest.mark.parametrize(
    "history",
    [
        COLLAPSE[:2],  # robust accuracy rising
        [COLLAPSE[1], {**COLLAPSE[2], "test_fgsm_accuracy": 0.30}],  # both fall: weakened
        [COLLAPSE[1], {**COLLAPSE[2], "test_pgd_accuracy": 0.40}],  # a dip, not a collapse
        [COLLAPSE[2]],  # one epoch: nothing to compare with
        [{"epoch": 1, "test_accuracy": 0.9}, {"epoch": 2, "test_accuracy": 0.91}],  # no attack
    ],
)
def test_catastrophic_overfitting_is_not_reported_otherwise(history):
    assert catastrophic_overfitting(history) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "cnn", "--adversarial-eps", "3"), "--adversarial-eps"),
        (("run", "cnn", "--adversarial", "madry"), "--adversarial"),
        (("run", "cnn", "--trades-beta", "-1"), "--trades-beta"),
        (("run", "autoattak"), "autoattack"),
    ],
)
def test_bad_robustness_input_is_one_line(args, message):
    assert_one_line_error(invoke(*args), 2, message)


def _table_row(markdown: str, run_name: str) -> dict[str, str]:
    lines = markdown.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == run_name:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no row {run_name} in\n{markdown}")


def test_compare_puts_an_attacks_accuracy_on_each_targets_row(dense_run, tmp_path):
    """Two targets, one pgd run: each target's row gets its own robust accuracy beside its
    clean accuracy, and the attack run is folded into them rather than listed."""
    # a far weaker second target, and a small eps: their robust accuracies lie far apart
    # on every CPU, so a mix-up of rows cannot go unseen
    other = zoo.run("dense", epochs=1, out=str(tmp_path / "other"), seed=5, hidden=4,
                    precision="fp32", **{**SMALL, "train_size": 200})  # fmt: skip
    attack = zoo.run("pgd", target=[str(dense_run.path), str(other.path)], epsilons=(0.0, 0.01),
                     scale="unit", modes=("standard",), steps=5, test_size=128,
                     progress=False, out=str(tmp_path / "pgd"))  # fmt: skip
    report = json.loads((attack.path / "robustness.json").read_text())
    measured = {t["run"]: t["curves"]["standard"][1]["accuracy"] for t in report["targets"]}
    assert abs(measured[str(dense_run.path)] - measured[str(other.path)]) > 0.05
    _, _, markdown = zoo.compare([dense_run.path, other.path, attack.path], tmp_path)
    assert attack.path.name not in markdown
    column = "pgd ε=0.01 \\[0, 1\\]"  # escaped for Markdown
    for run in (dense_run.path, other.path):
        row = _table_row(markdown, run.name)
        assert float(row[column]) == pytest.approx(measured[str(run)], abs=1e-4)
        clean = json.loads((run / "eval.json").read_text())["accuracy"]
        assert float(row["accuracy"]) == pytest.approx(clean, abs=1e-4)
    alone = zoo.compare([attack.path], tmp_path)[2]  # its targets not compared: its own row
    assert attack.path.name in alone and column not in alone


def test_compare_shows_an_adversarially_trained_runs_last_robust_accuracy(tmp_path):
    result = zoo.run("dense", epochs=1, adversarial_eps=EPS, out=str(tmp_path), seed=1, **SMALL)
    last = json.loads((result.path / "metrics.jsonl").read_text().splitlines()[-1])
    row = _table_row(zoo.compare([result.path], tmp_path)[2], result.path.name)
    assert float(row["test_pgd_accuracy"]) == pytest.approx(last["test_pgd_accuracy"], abs=1e-4)
    assert float(row["test_fgsm_accuracy"]) == pytest.approx(last["test_fgsm_accuracy"], abs=1e-4)
    assert "test_accuracy" not in row  # eval.json's accuracy is the same number, shown once


def test_an_attack_runs_report_shows_its_table_and_protocol(dense_run, tmp_path):
    attack = zoo.run("pgd", target=[str(dense_run.path)], epsilons=(0.0, 0.05, 0.1),
                     scale="unit", modes=("masked", "standard"), steps=3, test_size=64,
                     progress=False, out=str(tmp_path))  # fmt: skip
    report = json.loads((attack.path / "robustness.json").read_text())
    page = (attack.path / "report.html").read_text()
    start = page.index('id="tables"')
    section = page[start : page.index("Results: robustness.json", start)]
    assert "Accuracy under pgd" in section
    assert "epsilon in [0, 1] pixel units; 64 test images; PGD-3, step 2.5ε/3" in section
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", section)
    for mode in ("masked", "standard"):
        start = cells.index(mode)
        shown = [float(c) for c in cells[start + 1 : start + 4]]
        curve = [p["accuracy"] for p in report["targets"][0]["curves"][mode]]
        assert shown == pytest.approx(curve, abs=1e-4)
    assert cells[cells.index("masked") - 1] == dense_run.path.name


def test_a_long_attack_in_a_log_prints_its_progress_and_eta(dense_run, tmp_path, capfd):
    """stderr not a terminal (a run in the background with a log): lines, not a bar."""
    zoo.run("pgd", target=[str(dense_run.path)], epsilons=(0.1,), modes=("standard",),
            steps=2, test_size=64, out=str(tmp_path))  # fmt: skip
    err = capfd.readouterr().err
    line = next(x for x in err.splitlines() if "batches" in x)
    assert re.search(r"pgd on dense \(.+\), standard mode: 1/1 batches .* s/batch +ETA 0m00s",
                     line), err  # fmt: skip


@pytest.fixture(scope="module")
def attack_source(dense_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("attack-source")
    result = zoo.run("fgsm", target=[str(dense_run.path)], epsilons=(0.0, 0.1),
                     modes=("standard",), test_size=32, progress=False, out=str(out))  # fmt: skip
    return result.path


def _attack_folder(source, tmp_path, name: str, report: dict):
    """A copy of a real attack run with its robustness.json replaced."""
    folder = tmp_path / name
    shutil.copytree(source, folder)
    (folder / "robustness.json").write_text(json.dumps(report))
    return folder


def _target(run: str, *points) -> dict:
    return {"run": run, "plugin": "dense", "curves": {"standard": list(points)}}


def test_damaged_robustness_files_cost_only_their_bad_points(dense_run, attack_source, tmp_path):
    good = {"eps": 0.1, "accuracy": 0.5}
    report = {"attack": "fgsm", "scale": ["not", "a", "scale"], "test_images": 32,
              "targets": [_target("x\x00y", good), _target(str(dense_run.path), good,
                          {"eps": "abc", "accuracy": 1}, {"eps": float("nan"), "accuracy": 1},
                          {"eps": 0.2, "accuracy": True}, "junk"), 7]}  # fmt: skip
    folder = _attack_folder(attack_source, tmp_path, "damaged", report)
    page = zoo.report(folder).read_text()
    start = page.index('id="tables"')
    section = page[start : page.index("Results: robustness.json", start)]
    assert "epsilon in ? pixel units" in section and "ε 0.1" in section
    assert "ε 0.2" not in section and "ε nan" not in section and "abc" not in section
    _, _, markdown = zoo.compare([dense_run.path, folder], tmp_path)  # the NUL path: no match
    assert _table_row(markdown, dense_run.path.name)["fgsm ε=0.1 ?"] == "0.5"
    assert folder.name in markdown  # one of its targets is not compared: it keeps its row


def test_compare_matches_targets_by_folder_and_by_name_only_when_moved(
    dense_run, attack_source, tmp_path
):
    copy = tmp_path / "elsewhere" / dense_run.path.name  # same name, another folder
    shutil.copytree(dense_run.path, copy)
    point = {"eps": 0.1, "accuracy": 0.25}
    on_original = _attack_folder(
        attack_source,
        tmp_path,
        "a",
        {"attack": "pgd", "scale": "unit", "targets": [_target(str(dense_run.path), point)]},
    )
    moved = _attack_folder(
        attack_source,
        tmp_path,
        "b",
        {"attack": "pgd", "scale": "unit", "targets": [_target("/gone/" + copy.name, point)]},
    )
    markdown = zoo.compare([copy, on_original], tmp_path)[2]
    assert "0.25" not in _table_row(markdown, copy.name).values()  # not the run it measured
    markdown = zoo.compare([copy, moved], tmp_path)[2]
    assert _table_row(markdown, copy.name)["pgd ε=0.1 \\[0, 1\\]"] == "0.25"


def test_two_targets_of_one_name_keep_their_own_rows_in_the_report(attack_source, tmp_path):
    report = {"attack": "fgsm", "scale": "unit", "test_images": 32, "targets": [
        _target("/a/dense-1", {"eps": 0.1, "accuracy": 0.25}),
        _target("/b/dense-1", {"eps": 0.1, "accuracy": 0.75})]}  # fmt: skip
    page = zoo.report(_attack_folder(attack_source, tmp_path, "same", report)).read_text()
    assert "/a/dense-1" in page and "/b/dense-1" in page
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
    assert cells[cells.index("/a/dense-1") + 2] == "0.25"
    assert cells[cells.index("/b/dense-1") + 2] == "0.75"
