"""`zoo report RUN`: one self-contained HTML page per run folder.

It shows what the folder holds, whatever the plugin: configuration, the per-epoch
metrics, every results file (eval.json, robustness.json, ...) as tables, the loss
curves, the sample grid of every epoch with the animation, and every other picture the
plugin wrote (confusion matrix, robustness curves, colour sheets). Plugins caption
their own pictures through ``Plugin.report_captions``. Training writes the report
automatically at the end of a run.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from zoo.core.errors import RunError
from zoo.core.runs import CONFIG_FILE, RunRecord, is_outside_link, load_json, read_run, write_atomic
from zoo.reports import html
from zoo.reports.plots import EPOCH_PATTERN

REPORT_FILE = "report.html"
CORE_CAPTIONS = {
    "loss.png": "Training losses (means over 25 steps)",
    "animation.gif": "Every epoch's grid, animated",
    "samples/epoch_*.png": "Epoch {n}",
    "confusion_matrix.png": "Confusion matrix on the test set",
}


@attrs.frozen
class Picture:
    path: Path
    name: str  # relative to the run folder, with '/'
    caption: str


@attrs.frozen
class RunSummary:
    """What a report or a leaderboard row is made of."""

    record: RunRecord
    history: list[dict[str, Any]]
    results: dict[str, Any]  # results file stem -> its JSON
    pictures: list[Picture]
    plugin: type | None = None  # the plugin's class, where it is installed here

    @property
    def name(self) -> str:
        return self.record.path.name

    @property
    def info(self) -> Any:
        """The plugin's PluginInfo, or None when the plugin is not installed here."""
        return getattr(self.plugin, "info", None)

    @property
    def preview(self) -> str | None:
        """The picture the plugin names for a leaderboard row."""
        return getattr(self.plugin, "preview", None)

    def call_hook(self, hook: str, *args: Any, default: Any, lost: str) -> Any:
        """The plugin's ``hook(*args)``; on any failure (a third party's code) ``default``
        and one warning saying what the page goes without (``lost``), so a report or a
        leaderboard stands without what the hook adds."""
        if self.plugin is None:
            return default
        try:
            return getattr(self.plugin, hook)(*args)
        except Exception as error:
            print(f"zoo: warning: plugin '{self.record.plugin}' {hook}() failed "
                  f"({type(error).__name__}: {error}); {lost}", file=sys.stderr)  # fmt: skip
            return default

    @property
    def epoch_grids(self) -> list[Picture]:
        return [p for p in self.pictures if fnmatch.fnmatch(p.name, EPOCH_PATTERN)]


def summarize(run_dir: str | Path) -> RunSummary:
    """Read a run folder (config, metrics, results files, pictures) without torch."""
    record = read_run(run_dir)
    plugin = _plugin_class(record.plugin)
    captions = {**CORE_CAPTIONS, **dict(getattr(plugin, "report_captions", {}))}
    pictures = [
        Picture(path, name, _caption(name, captions))
        for path in sorted(record.path.rglob("*"), key=_natural)
        if path.suffix.lower() in html.MIME and _own_file(path, record.path)
        for name in [path.relative_to(record.path).as_posix()]
    ]
    results = {}
    for path in sorted(record.path.glob("*.json")):
        if path.name == CONFIG_FILE or not _own_file(path, record.path):
            continue
        try:
            results[path.stem] = _read_json(path)
        except ValueError:
            results[path.stem] = f"{path.name} is damaged and was left out"
    return RunSummary(record, record.history, results, pictures, plugin)


def write_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the run's report (default RUN/report.html); returns its path."""
    summary = summarize(run_dir)
    target = Path(output) if output else summary.record.path / REPORT_FILE
    try:
        write_atomic(target, render(summary).encode("utf-8"))
    except OSError as error:
        raise RunError(f"cannot write {target}: {error.strerror or error}") from None
    return target


def _own_file(path: Path, run_dir: Path) -> bool:
    """A plain file inside the run folder: never a link to something elsewhere, whose
    contents would be inlined into a page meant to be shared. Such a picture or results
    file is left out with a warning (the rest of the report still holds); config.json
    and metrics.jsonl linked outside are refused instead (zoo.core.runs), as the report would
    misstate the run without them."""
    if not path.is_file():
        return False
    if is_outside_link(path, run_dir):
        print(f"zoo: warning: {path} is a link to a file outside the run folder; left out "
              "(zoo shows only a run's own files)", file=sys.stderr)  # fmt: skip
        return False
    return not path.is_symlink()  # a link inside: its target is shown under its own name


def render(summary: RunSummary) -> str:
    record, info = summary.record, summary.info
    about = f"{record.plugin}: {info.summary}" if info else record.plugin
    sections = [("config", "Configuration", _configuration(summary))]
    if summary.history or _find(summary, "loss.png"):
        sections.append(("training", "Training", _training(summary)))
    tables = _plugin_tables(summary)
    if tables:
        sections.append(("tables", "Results", tables))
    for stem, value in summary.results.items():
        anchor = "results-" + re.sub(r"[^A-Za-z0-9_-]", "-", stem)
        judge = value.get("judged_by") if isinstance(value, dict) else None
        title = f"Results: {stem}.json" + (f", judged by {judge}" if isinstance(judge, str) else "")
        sections.append((anchor, title, html.json_block(value)))
    grids = summary.epoch_grids
    animation = _find(summary, "animation.gif")
    if grids or animation:
        body = html.image(animation.path, animation.caption, css="wide") if animation else ""
        gallery = "".join(html.image(p.path, p.caption) for p in grids)
        sections.append(
            ("samples", "Samples by epoch", body + f'<div class="gallery">{gallery}</div>')
        )
    shown = {p.name for p in grids} | {"animation.gif", "loss.png"}
    others = [p for p in summary.pictures if p.name not in shown]
    if others:
        body = "".join(f'<div class="wide">{html.image(p.path, p.caption)}</div>' for p in others)
        sections.append(("pictures", "Pictures", body))
    return html.page(f"zoo run {summary.name}", about, sections)


def _plugin_tables(summary: RunSummary) -> str:
    """The tables the plugin makes of its results (Plugin.report_tables)."""
    lost = "its tables are left out of the report"
    tables = summary.call_hook("report_tables", summary.results, summary.record.config,
                               default=(), lost=lost)  # fmt: skip
    return "".join(
        f"<h3>{html.escape(t.title)}</h3>"
        + (f'<p class="muted">{html.escape(t.note)}</p>' if t.note else "")
        + html.table(list(t.headers), t.rows)
        for t in tables
    )


def _configuration(summary: RunSummary) -> str:
    record, info = summary.record, summary.info
    facts = [("plugin", record.plugin), ("plugin version", record.plugin_version)]
    if info is not None:
        facts += [("task", info.task), ("paper", info.paper or "-")]
    facts.append(("folder", str(record.path)))
    parts = [html.table(["", ""], facts)]
    if record.config:
        parts.append(
            "<h3>Hyperparameters</h3>" + html.table(["option", "value"], _flat(record.config))
        )
    parts.append(
        "<details><summary>Run settings</summary>"
        + html.table(["setting", "value"], _flat(record.settings))
        + "</details>"
    )
    return "".join(parts)


def _training(summary: RunSummary) -> str:
    parts = []
    loss = _find(summary, "loss.png")
    if loss:
        parts.append(f'<div class="wide">{html.image(loss.path, loss.caption)}</div>')
    if summary.history:
        columns = list(
            dict.fromkeys(k for r in summary.history for k, v in r.items() if html.is_scalar(v))
        )
        rows = ([r.get(c) for c in columns] for r in summary.history)
        parts.append("<h3>Per epoch</h3>" + html.table(columns, rows))
    return "".join(parts)


def _flat(values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v if html.is_scalar(v) else str(v)) for k, v in values.items()]


def _find(summary: RunSummary, name: str) -> Picture | None:
    return next((p for p in summary.pictures if p.name == name), None)


def _caption(name: str, captions: Mapping[str, str]) -> str:
    for pattern, caption in captions.items():
        if fnmatch.fnmatch(name, pattern):
            numbers = re.findall(r"\d+", Path(name).stem)
            return caption.replace("{n}", str(int(numbers[-1]))) if numbers else caption
    return Path(name).stem.replace("_", " ")


def _natural(path: Path) -> list:
    """epoch_2 before epoch_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _plugin_class(name: str):
    from zoo.core.errors import ZooError
    from zoo.core.registry import default_registry

    try:
        return default_registry().get(name)
    except ZooError:
        return None  # a run of a plugin that is not installed here still gets a report


def _read_json(path: Path) -> Any:
    """A results file's JSON; a ValueError where it cannot be read, is not UTF-8 or JSON,
    or is nested too deep to be shown."""
    try:
        return load_json(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(str(error)) from None
