"""A study's HTML page: the best trial and its parameters, the optimisation history,
the parameter importances, every trial, and a ``zoo compare`` leaderboard of their runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.reports import html

REPORT_FILE = "study.html"


def write_study_report(study: Any, folder: Path, objective: str) -> Path:
    """Write FOLDER/study.html (and its pictures, and leaderboard.html beside it)."""
    from zoo.core.runs import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    sections = [("best", "Best trial", _best(study, done, objective))]
    history = _plot_history(done, folder / "history.png", objective, study.direction.name)
    if history is not None:
        sections.append(("history", "Optimisation history", html.image(history, "history")))
    sections.append(("importance", "Parameter importances", _importances(study, folder)))
    sections.append(("trials", "Trials", _trials_table(trials, objective)))
    sections.append(("leaderboard", "Leaderboard", _leaderboard(done, folder)))
    subtitle = (f"{len(trials)} trials: {len(done)} complete, "
                f"{sum(t.state.name == 'PRUNED' for t in trials)} pruned, "
                f"{sum(t.state.name == 'FAIL' for t in trials)} failed; "
                f"{study.direction.name.lower()} {objective}")  # fmt: skip
    path = folder / REPORT_FILE
    page = html.page(f"zoo sweep {study.study_name}", subtitle, sections)
    write_atomic(path, page.encode("utf-8"))
    return path


def _best(study: Any, done: Sequence[Any], objective: str) -> str:
    if not done:
        return '<p class="muted">No trial has completed yet.</p>'
    best = study.best_trial
    rows = [("trial", best.number), (objective, best.value), *best.params.items(),
            ("run", best.user_attrs.get("run", "-"))]  # fmt: skip
    return html.table(["", "value"], rows)


def _plot_history(done: Sequence[Any], path: Path, objective: str, direction: str) -> Path | None:
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = [t.number for t in done]
    values = [t.value for t in done]
    pick = min if direction == "MINIMIZE" else max
    best = [pick(values[: i + 1]) for i in range(len(values))]
    figure, axes = plt.subplots(figsize=(7, 3.6), dpi=110)
    axes.plot(numbers, values, "o", color="#4c72b0", label="trial")
    axes.step(numbers, best, where="post", color="#dd8452", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(objective)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _importances(study: Any, folder: Path) -> str:
    """fANOVA importances (seeded, so the page is the same each time it is written)."""
    import optuna

    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ImportError) as error:  # too few trials, one value...
        return f'<p class="muted">Not yet: {html.escape(str(error).splitlines()[0])}</p>'
    rows = [(name, value) for name, value in importances.items()]
    return html.table(["parameter", "importance (fANOVA)"], rows)


def _trials_table(trials: Sequence[Any], objective: str) -> str:
    names = sorted({name for t in trials for name in t.params})
    rows = []
    for t in trials:
        seconds = t.duration.total_seconds() if t.duration is not None else None
        rows.append([t.number, t.state.name.lower(), t.value, *(t.params.get(n) for n in names),
                     seconds, t.user_attrs.get("run")])  # fmt: skip
    return html.table(["trial", "state", objective, *names, "seconds", "run"], rows, sortable=True)


def _leaderboard(done: Sequence[Any], folder: Path) -> str:
    runs = [t.user_attrs["run"] for t in done if Path(t.user_attrs.get("run", "")).is_dir()]
    if not runs:
        return '<p class="muted">No completed trial run yet.</p>'
    from zoo import api

    try:
        _, _, markdown = api.compare(runs, folder)
    except Exception as error:  # a damaged trial folder: the rest of the page still stands
        print(f"zoo: warning: leaderboard not written ({error})", file=sys.stderr)
        return '<p class="muted">The leaderboard could not be written (see the warning).</p>'
    return ('<p><a href="leaderboard.html">leaderboard.html</a> (sortable, with previews)</p>'
            f"<pre>{html.escape(markdown)}</pre>")  # fmt: skip
