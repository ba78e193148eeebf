"""Self-contained HTML pages: one file with its images inlined, its style and its few
lines of script, so a report can be mailed, archived or opened offline.

Every page marks on <html> how many of its images failed to decode
(``data-broken-images``) and shows a warning if any did: a browser test reads it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MISSING = "\u2013"  # an en dash in a table cell: no such value
MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --card: #fff; --bg: #f4f6f9;
        --accent: #2f5fb3; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: var(--ink); color: #fff; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #c9d1e0; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 28px; z-index: 1; }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; }
main { padding: 20px 28px 40px; max-width: 1400px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
          padding: 16px 20px; margin-bottom: 20px; }
h2 { margin: 0 0 12px; font-size: 18px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 4px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; }
th { background: #eef1f6; font-weight: 600; }
td.num { text-align: right; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; }
figure { margin: 0; display: inline-block; vertical-align: top; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr));
           gap: 14px; }
.gallery img { width: 100%; image-rendering: pixelated; border: 1px solid var(--line); }
.wide img { max-width: 100%; border: 1px solid var(--line); }
.thumb { width: 120px; image-rendering: pixelated; border: 1px solid var(--line); }
.muted { color: var(--muted); }
#broken { display: none; background: #ffe3e0; color: #8a1c10; padding: 10px 28px; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: var(--muted); }
th[aria-sort="ascending"]::after { content: " \\2191"; }
th[aria-sort="descending"]::after { content: " \\2193"; }
"""

IMAGE_CHECK = """
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter((i) => !i.complete || i.naturalWidth === 0).length;
  document.documentElement.dataset.images = images.length;
  document.documentElement.dataset.brokenImages = broken;
  if (broken) {
    const banner = document.getElementById("broken");
    banner.textContent = broken + " of " + images.length + " images could not be shown.";
    banner.style.display = "block";
  }
});
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


MARKDOWN_SPECIAL = {
    "&": "&amp;",  # raw HTML is shown as text, entities as written
    "<": "&lt;",
    ">": "&gt;",
    "\\": "\\\\",
    "|": "\\|",  # a new column otherwise
    "`": "&#96;",  # code spans, which would also swallow the escapes
    "[": "\\[",  # links and images
    "]": "\\]",
}  # emphasis (* _ ~) is left: it changes no cell, and metric names are full of '_'


def markdown_cell(value: Any) -> str:
    """Text for one cell of a Markdown table: raw HTML shown as text, a ``|`` kept in its
    cell, no link, image or code span started, the row not broken by a newline."""
    text = " ".join(str(value).split())  # newlines and tabs: a row is one line
    return "".join(MARKDOWN_SPECIAL.get(char, char) for char in text)


def data_uri(path: Path) -> str:
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def image(path: Path, caption: str, *, css: str = "") -> str:
    alt = escape(caption)
    return (
        f'<figure class="{css}"><img src="{data_uri(path)}" alt="{alt}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def number(value: Any) -> str:
    """Floats to 4 significant digits, the rest as written."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    sortable: bool = False,
    attributes: Mapping[str, str] | None = None,
) -> str:
    """An HTML table; numbers right-aligned and rounded, cells given as HTML if they are
    ``Markup``, escaped otherwise."""
    kind = ' class="sortable"' if sortable else ""
    head = "".join(f"<th{kind}>{escape(h)}</th>" for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, Markup):
                cells.append(f"<td>{cell}</td>")
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                # a non-finite number sorts as text, after every real one
                value = f' data-value="{cell}"' if math.isfinite(cell) else ""
                cells.append(f'<td class="num"{value}>{escape(number(cell))}</td>')
            else:
                cells.append(f"<td>{escape(MISSING if cell is None else cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    extra = "".join(f' {name}="{escape(value)}"' for name, value in (attributes or {}).items())
    return f'<div class="scroll"><table{extra}>{head}<tbody>{"".join(body)}</tbody></table></div>'


class Markup(str):
    """A string that is already HTML."""


def json_block(value: Any) -> str:
    """Any JSON value as tables: scalars as a key/value table, dicts of scalars as rows,
    lists of records as a table; the rest nested, folded where deep."""
    if is_scalar(value):
        return escape(number(value))
    if isinstance(value, Mapping):
        scalars = {k: v for k, v in value.items() if is_scalar(v)}
        parts = []
        if scalars:
            parts.append(table(["", "value"], ((k, v) for k, v in scalars.items())))
        for key, inner in value.items():
            if key in scalars:
                continue
            parts.append(
                f"<details open><summary>{escape(key)}</summary>{json_block(inner)}</details>"
            )
        return "".join(parts)
    if value and all(isinstance(item, Mapping) for item in value):
        columns = list(dict.fromkeys(k for item in value for k in item))
        if all(is_scalar(item.get(c)) for item in value for c in columns):
            return table(columns, ([item.get(c) for c in columns] for item in value))
        return "".join(json_block(item) for item in value)
    if value and all(isinstance(row, list) and all(is_scalar(x) for x in row) for row in value):
        return table([str(i) for i in range(len(value[0]))], value)  # a matrix
    return f"<pre>{escape(json.dumps(value, indent=1))}</pre>"


def page(
    title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], script: str = ""
) -> str:
    """A whole page: ``sections`` are (anchor, heading, HTML body)."""
    nav = "".join(
        f'<a href="#{escape(anchor)}">{escape(heading)}</a>' for anchor, heading, _ in sections
    )
    body = "".join(
        f'<section id="{escape(anchor)}"><h2>{escape(heading)}</h2>{content}</section>'
        for anchor, heading, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f'<div id="broken"></div><nav>{nav}</nav><main>{body}</main>'
        f"<script>{IMAGE_CHECK}{script}</script></body></html>\n"
    )
