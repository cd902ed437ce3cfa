"""HTML building blocks of the report: one self-contained page, inline CSS, no script.

Every piece of text goes through :func:`esc`; pictures are embedded as base64 PNG data URIs.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
:root { --ink: #1d2730; --muted: #5d6b76; --line: #e3e7eb; --soft: #f5f7f9;
  --accent: #2f6fdf; --head: #eef3fb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: #18222c; color: #f3f6f8; padding: 28px 0 22px; }
header .wrap, main { max-width: 1080px; margin: 0 auto; padding: 0 24px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 600; letter-spacing: -0.01em; }
header p { margin: 0; color: #b9c4cd; }
nav { margin-top: 14px; display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 13px; }
nav a { color: #9cc0ff; text-decoration: none; }
main { padding-top: 24px; padding-bottom: 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 22px 20px; margin-bottom: 18px; }
h2 { font-size: 17px; font-weight: 600; margin: 0 0 12px; }
h3 { font-size: 14px; font-weight: 600; margin: 16px 0 8px; color: var(--muted); }
p.note { color: var(--muted); font-size: 13.5px; margin: 4px 0 0; }
p.na { color: var(--muted); font-style: italic; margin: 0; }
figure { margin: 0 0 10px; }
figure img { max-width: 100%; height: auto; display: block; border-radius: 4px; }
figure.pixels img { image-rendering: pixelated; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
thead th { background: var(--head); color: #24456f; font-weight: 600; font-size: 13px;
  border-bottom: 2px solid #c9d8ef; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { font-variant-numeric: tabular-nums; font-weight: 600; white-space: nowrap; }
table.kv th { width: 220px; color: var(--muted); font-weight: 500; background: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
  gap: 10px; margin-bottom: 14px; }
.card { background: var(--soft); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.04em; }
.card .v { font-size: 18px; font-weight: 600; margin-top: 2px; overflow-wrap: anywhere; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 12.5px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow-x: auto; margin: 0; }
.proto { display: flex; flex-wrap: wrap; gap: 4px; }
.proto span { background: var(--soft); border: 1px solid var(--line); border-radius: 4px;
  padding: 0 6px; font-size: 12.5px; }
footer { color: var(--muted); font-size: 12.5px; text-align: center; padding: 0 0 28px; }
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A short human form of a value (floats to 4 significant digits)."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "—"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def duration(seconds: float) -> str:
    """``3 h 02 min``, ``4 min 07 s`` or ``12.3 s``."""
    s = float(seconds)
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s:.1f} s"


def img(png: bytes, alt: str, caption: str | None = None, *, pixels: bool = False) -> str:
    """A figure with an embedded PNG (``pixels``: keep tiny images crisp when scaled)."""
    data = base64.b64encode(png).decode("ascii")
    cls = ' class="pixels"' if pixels else ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


def not_available(why: str) -> str:
    return f'<p class="na">Not available: {esc(why)}</p>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    cls: str = "",
    num_col: int | None = None,
    raw_cols: Sequence[int] = (),
) -> str:
    """A table; cells are escaped except in ``raw_cols`` (those must already be HTML)."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell if i in raw_cols else esc(cell)
            attr = ' class="num"' if i == num_col else ""
            cells.append(f"<td{attr}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<table{attr}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column key/value table (keys as row headers)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def cards(pairs: Iterable[tuple[str, str]]) -> str:
    items = "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>'
        for k, v in pairs
    )
    return f'<div class="cards">{items}</div>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole document from (anchor, title, body HTML) sections."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "".join(section(a, t, b) for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f'<body><header><div class="wrap"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p>'
        f"<nav>{nav}</nav></div></header><main>{body}</main>"
        f"<footer>{esc(footer)}</footer></body></html>\n"
    )
