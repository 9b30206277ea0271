"""The report as one HTML file: inline CSS, figures as PNG data, no script, no server.

Every table and figure sits in a ``<section>``; every figure is a ``<figure
data-figure="KEY">`` with its title, one sentence, and the image or a one-line note.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from eegtune import __version__
from eegtune.reports.figures import Figure

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1d2330; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #d8dde6; padding-bottom: 0.2rem;
       margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: 13px; margin: 0.6rem 0; }
th, td { border: 1px solid #d8dde6; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f1f3f7; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #4a5264; font-size: 13px; max-width: 48rem; }
.note { color: #8a5a00; font-style: italic; }
.wide { overflow-x: auto; max-width: 100%; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: 600; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(number(v, digits) for v in value) + "]"
    return esc(value)


def table(frame: pd.DataFrame) -> str:
    """A table that scrolls sideways inside its box when it has many parameters, so the
    page itself keeps its width."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{number(v)}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return (
        f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def facts(pairs: list[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs)
    return f"<dl>{items}</dl>"


def figure_html(fig: Figure) -> str:
    if fig.png is None:
        body = f'<p class="note">{esc(fig.note)}</p>'
    else:
        body = f'<img src="{fig.data_uri}" alt="{esc(fig.title)}">'
    return (
        f'<figure data-figure="{esc(fig.key)}" data-drawn="{str(fig.png is not None).lower()}">'
        f"{body}<figcaption><strong>{esc(fig.title)}.</strong> {esc(fig.caption)}"
        f"</figcaption></figure>"
    )


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def section(title: str, *parts: str, key: str = "") -> str:
    anchor = f' id="{esc(key)}"' if key else ""
    return f"<section{anchor}><h2>{esc(title)}</h2>{''.join(parts)}</section>"


def page(title: str, subtitle: str, sections: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>{esc(subtitle)} · eegtune {esc(__version__)}</p>"
        + "".join(sections)
        + "</body></html>\n"
    )
