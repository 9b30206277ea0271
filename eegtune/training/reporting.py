"""The one small interface through which ``train_func`` reports and checkpoints.

``train_func`` calls :func:`report` once per epoch. Run in-process, the active
:class:`Reporter` keeps the history (and can print it); the Ray issue installs a
reporter that forwards to Ray Train / Ray Tune, so ``train_func`` itself never changes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol


class Reporter(Protocol):
    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None: ...


class LocalReporter:
    """Keeps every report; ``on_report`` (if given) sees each one as it arrives."""

    def __init__(self, on_report: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.history: list[dict[str, Any]] = []
        self.checkpoints: list[Path] = []
        self.on_report = on_report

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        self.history.append(dict(metrics))
        if checkpoint_dir is not None:
            self.checkpoints.append(Path(checkpoint_dir))
        if self.on_report:
            self.on_report(metrics)


_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("reporter", default=None)


def current_reporter() -> Reporter:
    reporter = _current.get()
    return reporter if reporter is not None else LocalReporter()


@contextlib.contextmanager
def reporting_to(reporter: Reporter) -> Iterator[Reporter]:
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def report(metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
    current_reporter().report(metrics, checkpoint_dir)
