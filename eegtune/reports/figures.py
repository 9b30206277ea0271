"""A report's figures: matplotlib drawn off-screen, embedded as PNG data.

Each figure carries its title, one sentence saying what it shows, and either the image
or a one-line note saying why it is missing, so a missing piece never stops a report.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display: the report is written by command-line runs and CI

import matplotlib.pyplot as plt

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
            raise ValueError(f"figure {self.key} has no image: {self.note}")
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
