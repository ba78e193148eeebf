"""A real sweep: the paper's cnn, its learning rate and dropout, 2 epochs a trial, on
the full 60,000 training images, judged by test accuracy (10,000 images).

    .venv/bin/python benchmarks/sweep.py [--trials 20] [--epochs 2] [--out runs/benchmarks]

Trial 0 is the paper's default (Adam lr 1e-3, dropout 0.3), queued first, so the study
itself says whether the search beats it. TPE (seed 0) and the median pruner search
``lr=loguniform:1e-4:1e-2`` and ``dropout=uniform:0:0.6``. Afterwards the best trial's
values and the default are trained again with seed 1, to see whether the gain is more
than seed noise. Re-running continues the study (Ctrl-C requeues the running trial).
Writes OUT/cnn-sweep/study.html and benchmarks/results/NAME.json, and prints the
Markdown rows for docs/RESULTS.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_result

import zoo
from zoo.sweeps.report import write_study_report
from zoo.sweeps.spec import build_spec
from zoo.sweeps.study import open_study, run_sweep

DEFAULT = {"lr": 1e-3, "dropout": 0.3}  # the paper's (Keras Adam, its dropout)
PARAMS = ["lr=loguniform:1e-4:1e-2", "dropout=uniform:0:0.6"]


@click.command()
@click.option("--trials", default=20, show_default=True)
@click.option("--epochs", default=2, show_default=True)
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--name", default="sweep_cnn", show_default=True, help="Result file name.")
@click.option("--train-size", type=int, help="Fewer training images (a dry run).")
@click.option("--recheck/--no-recheck", default=True, help="Seed-1 runs of the best and default.")
def main(trials: int, epochs: int, out: str, name: str, train_size: int | None,
         recheck: bool) -> None:  # fmt: skip
    fixed = {"epochs": epochs, "out": out, "progress": False,
             **({"train_size": train_size} if train_size else {})}  # fmt: skip
    spec = build_spec("cnn", trials=trials, params=PARAMS, objective="accuracy",
                      direction="maximize", fixed=fixed, study="cnn-sweep",
                      sampler_seed=0)  # fmt: skip
    study = open_study(spec)
    study.enqueue_trial(DEFAULT, skip_if_exists=True)
    started = time.perf_counter()
    run_sweep(spec, say=lambda line: print(line, file=sys.stderr, flush=True))
    wall = time.perf_counter() - started
    report = write_study_report(study, spec.folder, spec.objective)
    summary = _summary(study, wall, report)
    if recheck:
        summary["seed_1"] = {
            "best": _seed_one(study.best_trial.params, fixed, spec.folder),
            "default": _seed_one(DEFAULT, fixed, spec.folder),
        }
    write_result(name, summary)
    print(_markdown(summary))


def _summary(study, wall: float, report: Path) -> dict:
    trials = study.get_trials(deepcopy=False)
    default = next(t for t in trials if t.params == DEFAULT and t.state.name == "COMPLETE")
    best = study.best_trial
    durations = [t.duration.total_seconds() for t in trials if t.duration is not None]
    return {
        "command": " ".join(sys.argv),
        "trials": len(trials),
        "states": {s: sum(t.state.name == s for t in trials)
                   for s in ("COMPLETE", "PRUNED", "FAIL")},
        "trials_s": round(sum(durations), 1),  # the trials' own time, over every sitting
        "this_sitting_s": round(wall, 1),
        "best": {"trial": best.number, "accuracy": best.value, "params": best.params,
                 "run": best.user_attrs.get("run")},
        "default": {"trial": default.number, "accuracy": default.value,
                    "run": default.user_attrs.get("run")},
        "report": str(report),
        "all": [{"trial": t.number, "state": t.state.name, "accuracy": t.value, **t.params}
                for t in trials],
    }  # fmt: skip


def _seed_one(params: dict, fixed: dict, folder: Path) -> float:
    result = zoo.run("cnn", **{**fixed, **params, "seed": 1, "out": str(folder / "seed1")})
    return float(result.metrics["test_accuracy"])


def _markdown(summary: dict) -> str:
    rows = [[t["trial"], t["state"].lower(), t["accuracy"], t["lr"], t["dropout"]]
            for t in summary["all"]]  # fmt: skip
    return markdown_table(["trial", "state", "test accuracy", "lr", "dropout"], rows)


if __name__ == "__main__":
    main()
