"""A report's figures: matplotlib drawn off-screen, embedded as PNG data.

Each figure carries its title, one sentence saying what it shows, and either the image
or a one-line note saying why it is missing, so a missing piece never stops a report.
:func:`overlapping_text` finds the labels of a drawn figure that run into each other.
"""

from __future__ import annotations

import base64
import io
import itertools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display: the report is written by command-line runs and CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axis import Axis, Tick
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from eegtune.errors import ConfigError

DPI = 110


@dataclass(frozen=True)
class Figure:
    key: str  # stable id in the page (data-figure), for tests and links
    title: str
    caption: str  # one sentence: what the figure shows
    png: bytes | None = None
    note: str | None = None  # in place of the image when it could not be drawn

    @property
    def data_uri(self) -> str:
        if self.png is None:
            raise ConfigError(f"figure {self.key} has no image: {self.note}")
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def to_png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def figure(key: str, title: str, caption: str, draw: Callable[[], plt.Figure | None]) -> Figure:
    """Run ``draw``; a drawing that cannot be made (too few trials, a parameter the space
    does not have) becomes a note naming the reason rather than an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on its plots
            fig = draw()
    except (ValueError, KeyError, RuntimeError, IndexError, ImportError) as exc:
        plt.close("all")
        return Figure(key, title, caption, note=f"not drawn: {exc}")
    if fig is None:
        return Figure(key, title, caption, note="not drawn: nothing to show")
    return Figure(key, title, caption, png=to_png(fig))


def missing(key: str, title: str, caption: str, reason: str) -> Figure:
    return Figure(key, title, caption, note=reason)


def labelled(ax: plt.Axes, title: str, xlabel: str, ylabel: str, grid: bool = True) -> plt.Figure:
    """Title and axis labels (with units) on ``ax``; its figure. Optuna's plots title
    themselves on the left: that title is replaced, not stacked under ours."""
    ax.set_title("", loc="left")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if grid:
        ax.grid(True, alpha=0.3)
    else:
        ax.grid(False)  # grid(False, alpha=…) would turn it on: kwargs imply visible
    return ax.figure


@dataclass(frozen=True)
class Overlap:
    """Two pieces of text of one figure whose boxes (pixels, as drawn) intersect."""

    first: str
    second: str
    area: float  # of the intersection, square pixels

    def __str__(self) -> str:
        return f"{self.first!r} runs into {self.second!r} ({self.area:.0f} px²)"


def overlapping_text(fig: plt.Figure, tolerance: float = 1.0) -> list[Overlap]:
    """Every pair of drawn texts in ``fig`` (tick labels, axis labels, titles, legends,
    annotations) whose boxes overlap by more than ``tolerance`` pixels each way.

    Boxes are axis-aligned, so rotated labels can count as overlapping where only their
    corners' boxes meet: the report draws none. The figure is drawn (not saved) first.
    """
    boxes = text_boxes(fig)
    found = []
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        width, height = _intersection(box_a, box_b)
        if width > tolerance and height > tolerance:
            found.append(Overlap(a.get_text(), b.get_text(), width * height))
    return found


def text_boxes(fig: plt.Figure) -> list[tuple[Text, Bbox]]:
    """The texts a draw of ``fig`` puts on the canvas, with their boxes in pixels."""
    fig.canvas.draw()  # tick labels get their text and place only when drawn
    renderer = fig.canvas.get_renderer()
    boxes = [(t, t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
    return [(t, box) for t, box in boxes if np.isfinite(box.extents).all()]


def _drawn_texts(artist: Artist) -> Iterator[Text]:
    # Walked by hand rather than with findobj: a hidden parent (a legend, an axis, a tick
    # whose label tick_params turned off) hides its texts, and findobj would still list them.
    if not artist.get_visible():
        return
    if isinstance(artist, Text) and artist.get_text().strip():
        yield artist
    children = _axis_children(artist) if isinstance(artist, Axis) else artist.get_children()
    for child in children:
        yield from _drawn_texts(child)


def _axis_children(axis: Axis) -> list[Artist]:
    """An axis's label, offset text and the ticks it draws: a locator's ticks outside the
    view keep a label that is never drawn, and would read as overlapping its neighbours."""
    return [axis.label, axis.offsetText, *_ticks_in_view(axis)]


def _ticks_in_view(axis: Axis) -> list[Tick]:
    scale = axis.get_transform()  # log10 on a log axis: compare where the ticks land
    low, high = sorted(scale.transform(np.asarray(axis.get_view_interval(), dtype=float)))
    slack = 1e-10 * max(abs(high - low), 1e-300)
    ticks = [*axis.get_major_ticks(), *axis.get_minor_ticks()]
    return [
        tick
        for tick in ticks
        if tick.get_loc() is not None
        and low - slack <= scale.transform(np.array([float(tick.get_loc())]))[0] <= high + slack
    ]


def _intersection(a: Bbox, b: Bbox) -> tuple[float, float]:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width, height
