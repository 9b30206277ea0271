"""The one small interface through which ``train_func`` reports and checkpoints.

``train_func`` calls :func:`report` once per epoch, with the epoch's metrics and the
state to resume from, and asks :func:`restore_state` once, at its start. Run in-process,
the active :class:`Reporter` keeps the history (and can print it) and keeps the state in
a file; under Ray a reporter forwards both to Ray Train (metrics and checkpoints), so
``train_func`` itself never changes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from eegtune.training.training_state import TrainingState, load_state, save_state


class Reporter(Protocol):
    def report(
        self,
        metrics: dict[str, Any],
        checkpoint_dir: Path | None = None,
        state: TrainingState | None = None,
    ) -> None: ...

    def restore_state(self, fingerprint: str) -> TrainingState | None: ...


class LocalReporter:
    """Keeps every report; ``on_report`` (if given) sees each one as it arrives.

    With ``state_path``, each epoch's training state is saved there and a rerun resumes
    from it; without, nothing is kept and every run starts fresh.
    """

    def __init__(
        self,
        on_report: Callable[[dict[str, Any]], None] | None = None,
        state_path: Path | None = None,
    ) -> None:
        self.history: list[dict[str, Any]] = []
        self.checkpoints: list[Path] = []
        self.on_report = on_report
        self.state_path = state_path

    def report(
        self,
        metrics: dict[str, Any],
        checkpoint_dir: Path | None = None,
        state: TrainingState | None = None,
    ) -> None:
        if state is not None and self.state_path is not None:
            save_state(state, self.state_path)
        self.history.append(dict(metrics))
        if checkpoint_dir is not None:
            self.checkpoints.append(Path(checkpoint_dir))
        if self.on_report:
            self.on_report(metrics)

    def restore_state(self, fingerprint: str) -> TrainingState | None:
        return None if self.state_path is None else load_state(self.state_path, fingerprint)


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


def report(
    metrics: dict[str, Any],
    checkpoint_dir: Path | None = None,
    state: TrainingState | None = None,
) -> None:
    current_reporter().report(metrics, checkpoint_dir, state)


def restore_state(fingerprint: str) -> TrainingState | None:
    """The state a fold resumes from, if the active reporter holds one for this config."""
    return current_reporter().restore_state(fingerprint)
