"""`zoo compare RUN...`: a leaderboard of runs, as a sortable HTML page and a Markdown
table (for docs/RESULTS.md).

One row per run: its plugin, epochs, steps, mean seconds per epoch, the numbers of its
eval.json (else of its last epoch record) with the last epoch's test numbers eval.json
lacks (an adversarially trained classifier's FGSM and PGD accuracy), the numbers other
compared runs measured of it (an attack run's accuracy on it, per epsilon), and a
preview: the last epoch's grid, else the confusion matrix, else its first picture.
"""

from __future__ import annotations

import math
import os
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from zoo.core.errors import ConfigError, RunError
from zoo.core.runs import CONFIG_FILE, FAILED_FILE, holds_only_config, write_atomic
from zoo.reports import html
from zoo.reports.html import Markup
from zoo.reports.run_report import REPORT_FILE, Picture, RunSummary, summarize

BOOKKEEPING = {"epoch", "step", "seconds", "images_per_s", "seed", "test_images", "samples",
               "real_images", "skipped_updates", "sampling_seed", "floor_images",
               "feature_dim"}  # fmt: skip
JUDGED_BY = "judged by"  # the column naming whose features a generative run's numbers are in
FIXED = ["run", "plugin", "epochs", "steps", "s/epoch"]
TEST_PREFIX = "test_"  # the trainer's per-epoch test metrics

SORT_SCRIPT = """
function sortBy(th, descending) {
  const table = th.closest("table"), body = table.tBodies[0];
  const index = [...th.parentNode.children].indexOf(th);
  const key = (row) => {
    const cell = row.children[index];
    const value = cell.dataset.value;
    return value === undefined ? cell.textContent.trim() : parseFloat(value);
  };
  const rows = [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    if (typeof x === "number" && typeof y === "number") return descending ? y - x : x - y;
    if (typeof x === "number") return -1;
    if (typeof y === "number") return 1;
    return descending ? String(y).localeCompare(x) : String(x).localeCompare(y);
  });
  rows.forEach((row) => body.appendChild(row));
  table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", descending ? "descending" : "ascending");
}
document.querySelectorAll("th.sortable").forEach((th) => th.addEventListener("click", () =>
  sortBy(th, th.getAttribute("aria-sort") === "ascending")));
const wanted = new URLSearchParams(location.hash.slice(1)).get("sort")
  || document.querySelector("table[data-sort]")?.dataset.sort;
if (wanted) {
  const name = wanted.replace(/^-/, "");
  const th = [...document.querySelectorAll("th.sortable")].find((h) => h.textContent === name);
  if (th) sortBy(th, wanted.startsWith("-"));
}
"""


@attrs.frozen
class Row:
    summary: RunSummary
    epochs: int | None
    steps: int | None
    seconds_per_epoch: float | None
    metrics: dict[str, float]
    preview: Picture | None
    judged_by: str | None = None  # eval.json's judge: numbers of two judges do not compare

    def value(self, column: str) -> Any:
        """The cell of ``column``: one of FIXED, else a metric (None where missing)."""
        fixed = {
            "run": self.summary.name,
            "plugin": self.summary.record.plugin,
            "epochs": self.epochs,
            "steps": self.steps,
            "s/epoch": self.seconds_per_epoch,
            JUDGED_BY: self.judged_by,
        }
        return fixed[column] if column in fixed else self.metrics.get(column)


def make_row(summary: RunSummary) -> Row:
    history = summary.history
    last = history[-1] if history else {}
    whole = [r for r in history if not r.get("partial")]  # a --max-steps stop mid-epoch
    seconds = [r["seconds"] for r in whole if isinstance(r.get("seconds"), (int, float))]
    epochs = last.get("epoch")
    if last.get("partial") and isinstance(epochs, int):
        epochs -= 1  # whole epochs; the steps column says how far the next one got
    source = summary.results.get("eval")
    if not isinstance(source, dict):
        source = last
    metrics = _numbers(source)
    if source is not last:  # the last epoch's test numbers eval.json has not (robust accuracy)
        tested = {k: v for k, v in _numbers(last).items() if k.startswith(TEST_PREFIX)}
        metrics |= {k: v for k, v in tested.items() if k.removeprefix(TEST_PREFIX) not in metrics}
    return Row(
        summary=summary,
        epochs=epochs,
        steps=last.get("step"),
        seconds_per_epoch=sum(seconds) / len(seconds) if seconds else None,
        metrics=metrics,
        preview=_preview(summary),
        judged_by=source.get("judged_by") if isinstance(source.get("judged_by"), str) else None,
    )


def rows_with_scores(summaries: Sequence[RunSummary]) -> list[Row]:
    """A row per run. A run that measured other compared runs (an attack, on its
    targets: Plugin.scores_of_other_runs) puts its numbers on their rows as columns; it
    keeps no row of its own where all the runs it measured are compared, and keeps one
    (pointing to its report for the rest) where some are not."""
    where = _folder_index(summaries)
    scores: dict[int, dict[str, float]] = {}
    folded: set[int] = set()
    for index, summary in enumerate(summaries):
        measured = _scores_of_others(summary)
        found = {folder: where(folder) for folder in measured}
        for folder, target in found.items():
            if target is None or target == index:
                continue
            clash = set(measured[folder]) & set(scores.get(target, {}))
            if clash:
                print(f"zoo: warning: {summary.name} measured {', '.join(sorted(clash))} of "
                      f"{summaries[target].name} again; showing its numbers (the later "
                      "run given)", file=sys.stderr)  # fmt: skip
            scores.setdefault(target, {}).update(measured[folder])
        if found and all(t is not None and t != index for t in found.values()):
            folded.add(index)
    rows = []
    for index, summary in enumerate(summaries):
        if index not in folded:
            row = make_row(summary)
            rows.append(attrs.evolve(row, metrics={**row.metrics, **scores.get(index, {})}))
    return rows


def _folder_index(summaries: Sequence[RunSummary]):
    """Finds a compared run by the folder another run recorded: the same folder; else,
    where the recorded folder is relative or gone (moved with its runs), the only
    compared run of that name. A path that cannot be a folder matches none."""
    resolved = {s.record.path.resolve(): i for i, s in enumerate(summaries)}
    names: dict[str, list[int]] = {}
    for i, s in enumerate(summaries):
        names.setdefault(s.name, []).append(i)

    def find(folder: str) -> int | None:
        try:
            path = Path(folder)
            if path.resolve() in resolved:
                return resolved[path.resolve()]
            if path.is_absolute() and path.exists():
                return None  # another run of the same name, not compared
        except (OSError, RuntimeError, ValueError):  # a NUL byte, a link loop
            return None
        same_name = names.get(path.name, [])
        return same_name[0] if len(same_name) == 1 else None

    return find


def _scores_of_others(summary: RunSummary) -> Mapping[str, Mapping[str, float]]:
    lost = f"{summary.name}'s numbers of other runs are left out"
    found = summary.call_hook("scores_of_other_runs", summary.results, default={}, lost=lost)
    try:
        return {str(k): {str(c): float(v) for c, v in row.items()} for k, row in found.items()}
    except (AttributeError, TypeError, ValueError) as error:  # not numbers by folder
        print(f"zoo: warning: plugin '{summary.record.plugin}' scores_of_other_runs() "
              f"returned no numbers by folder ({error}); {lost}", file=sys.stderr)  # fmt: skip
        return {}


def _numbers(record: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: v
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in BOOKKEEPING
    }


def _preview(summary: RunSummary) -> Picture | None:
    if grids := summary.epoch_grids:
        return grids[-1]
    named = {p.name: p for p in summary.pictures}
    if summary.preview in named:
        return named[summary.preview]
    others = [p for p in summary.pictures if p.name not in ("loss.png", "animation.gif")]
    return others[0] if others else None


def metric_columns(rows: Sequence[Row]) -> list[str]:
    """The judge first, where any run has one, then every number any run has."""
    judged = [JUDGED_BY] if any(row.judged_by for row in rows) else []
    return judged + list(dict.fromkeys(k for row in rows for k in row.metrics))


def sort_rows(rows: Sequence[Row], sort: str) -> list[Row]:
    """By a column, ascending ('-name': descending); numbers before text (a run's files
    may hold either), and runs without the number, or with NaN or inf, last."""
    name, descending = sort.lstrip("-"), sort.startswith("-")

    def value(row: Row) -> Any:
        return row.value(name)

    def usable(row: Row) -> bool:  # NaN and inf sort last, with the missing
        v = value(row)
        return v is not None and not (isinstance(v, float) and not math.isfinite(v))

    def key(row: Row) -> tuple[int, Any]:
        v = value(row)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (0, v) if not descending else (1, v)
        return (1, str(v)) if not descending else (0, str(v))

    present = [r for r in rows if usable(r)]
    return sorted(present, key=key, reverse=descending) + [r for r in rows if not usable(r)]


def to_markdown(rows: Sequence[Row]) -> str:
    """The leaderboard as a Markdown table; every cell escaped (html.markdown_cell), so a
    run name or a metric can neither add a column nor bring raw HTML or a link."""
    columns = metric_columns(rows)
    lines = [
        "| " + " | ".join(html.markdown_cell(c) for c in FIXED + columns) + " |",
        "|" + "---|" * (len(FIXED) + len(columns)),
    ]
    for row in rows:
        cells = [row.value(column) for column in FIXED + columns]
        text = (html.MISSING if c is None else html.number(c) for c in cells)
        lines.append("| " + " | ".join(html.markdown_cell(t) for t in text) + " |")
    return "\n".join(lines) + "\n"


def to_html(rows: Sequence[Row], *, relative_to: Path, sort: str | None = None) -> str:
    columns = metric_columns(rows)
    body = []
    for row in rows:
        report = row.summary.record.path / REPORT_FILE
        name = html.escape(row.summary.name)
        if report.is_file():
            relative = Path(os.path.relpath(report, relative_to)).as_posix()
            link = html.escape("./" + urllib.parse.quote(relative))  # never a scheme
            name = f'<a href="{link}">{name}</a>'
        preview = Markup("")
        if row.preview is not None:
            preview = Markup(
                f'<img class="thumb" src="{html.data_uri(row.preview.path)}" '
                f'alt="{html.escape(row.preview.caption)}">'
            )
        cells = [row.value(column) for column in FIXED[1:] + columns]
        body.append([Markup(name), *cells, preview])
    attributes = {"data-sort": sort} if sort else {}
    table = html.table([*FIXED, *columns, "preview"], body, sortable=True, attributes=attributes)
    hint = '<p class="muted">Click a column to sort by it; click again to reverse.</p>'
    subtitle = f"{len(rows)} runs"
    return html.page("zoo leaderboard", subtitle, [("leaderboard", "Leaderboard", hint + table)],
                     script=SORT_SCRIPT)  # fmt: skip


def comparable(run_dirs: Sequence[str | Path]) -> list[Path]:
    """The folders worth a row: a run marked failed, or one holding nothing but its
    config.json (it never got going), is skipped with a warning."""
    kept = []
    for path in map(Path, run_dirs):
        reason = _skip_reason(path)
        if reason is None:
            kept.append(path)
        else:
            print(f"zoo: warning: skipped {path}: {reason}", file=sys.stderr)
    if not kept:
        raise RunError("nothing to compare: every run folder given was skipped (see above)")
    return kept


def _skip_reason(path: Path) -> str | None:
    if not path.is_dir() or path.is_symlink():
        return None  # summarize() says what is wrong with it
    if (path / FAILED_FILE).exists():
        return f"it failed (see {path / FAILED_FILE}); resume or delete it"
    if (path / CONFIG_FILE).is_file() and holds_only_config(path):
        return "it holds only config.json (a run that never got going); delete it"
    return None


def write_leaderboard(
    run_dirs: Sequence[str | Path], out_dir: str | Path, *, sort: str | None = None
) -> tuple[Path, Path, str]:
    """Write leaderboard.html and leaderboard.md into ``out_dir``; returns both paths and
    the Markdown table."""
    if not run_dirs:
        raise ConfigError("zoo compare needs at least one run folder")
    rows = rows_with_scores([summarize(path) for path in comparable(run_dirs)])
    if sort:
        known = set(FIXED) | set(metric_columns(rows))
        if sort.lstrip("-") not in known:
            raise ConfigError(
                f"--sort {sort}: no such column (choose from {', '.join(sorted(known))})"
            )
    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"-o {out}: not a folder (create it first)")
    if sort:
        rows = sort_rows(rows, sort)
    markdown = to_markdown(rows)
    html_path, md_path = out / "leaderboard.html", out / "leaderboard.md"
    write_atomic(html_path, to_html(rows, relative_to=out, sort=sort).encode("utf-8"))
    write_atomic(md_path, markdown.encode("utf-8"))
    return html_path, md_path, markdown
