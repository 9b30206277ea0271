"""The report page read back as its tables, facts and paragraphs, section by section.

Tests check a number in the cell it belongs to, not anywhere in the page: a substring
search passes when the number shows up in the wrong row, column or section. Parsed with
the standard library's HTMLParser (no lxml or bs4 in the environment).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list[str]:
        return [row[self.header.index(name)] for row in self.rows]


@dataclass
class Section:
    key: str  # the section's id ("" where it has none)
    heading: str = ""
    tables: list[Table] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)  # the <dl>'s dt → dd
    paragraphs: list[str] = field(default_factory=list)
    subheadings: list[str] = field(default_factory=list)  # <h3>: one ensemble each


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[Section] = []
        self._text: list[str] | None = None  # the element being read, where one is
        self._row: list[str] | None = None
        self._table: Table | None = None
        self._dt = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.sections.append(Section(dict(attrs).get("id") or ""))
        elif tag == "table":
            self._table = Table([], [])
        elif tag == "tr":
            self._row = []
        elif tag in ("th", "td", "dt", "dd", "p", "h2", "h3"):
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td", "dt", "dd", "p", "h2", "h3"):
            self._end_text(tag, " ".join("".join(self._text or []).split()))
            self._text = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            if self._table.header:
                self._table.rows.append(self._row)
            else:
                self._table.header = self._row
            self._row = None
        elif tag == "table" and self._table is not None:
            self.sections[-1].tables.append(self._table)
            self._table = None

    def _end_text(self, tag: str, text: str) -> None:
        if tag in ("th", "td"):
            assert self._row is not None, f"a <{tag}> outside a row: {text!r}"
            self._row.append(text)
        elif not self.sections:
            return  # the page's own heading and subtitle
        elif tag == "dt":
            self._dt = text
        elif tag == "dd":
            self.sections[-1].facts[self._dt] = text
        elif tag == "p":
            self.sections[-1].paragraphs.append(text)
        elif tag == "h2":
            self.sections[-1].heading = text
        else:
            self.sections[-1].subheadings.append(text)


def sections(page: str) -> dict[str, Section]:
    """The page's sections by id; one without an id under its heading."""
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    return {s.key or s.heading: s for s in parser.sections}


def value(cell: str) -> Any:
    """A cell as the page wrote it: a number, a list of numbers, or None for '—'."""
    if cell == "—":
        return None
    if cell.startswith("["):
        return [value(v.strip()) for v in cell.strip("[]").split(",")]
    return float(cell)


def shows(cell: str, expected: Any) -> bool:
    """Whether ``cell`` shows ``expected`` to the page's precision: 4 decimals, or 4
    significant digits below 1e-3."""
    shown = value(cell)
    if isinstance(expected, list | tuple):
        return (
            isinstance(shown, list)
            and len(shown) == len(expected)
            and all(_close(s, e) for s, e in zip(shown, expected, strict=True))
        )
    return _close(shown, expected)


def _close(shown: float | None, expected: float | None) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return shown is None
    return shown is not None and shown == pytest.approx(expected, abs=5.1e-5, rel=5.1e-4)


def number_in(text: str, before: str) -> float:
    """The number right after ``before`` in ``text`` ('nested 0.9871' → 0.9871)."""
    found = re.search(re.escape(before) + r"\s*(-?\d+(?:\.\d+)?)", text)
    assert found, f"no number after {before!r} in {text!r}"
    return float(found.group(1))
