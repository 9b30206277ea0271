"""The one exception type for a recording that cannot be used.

Every problem with an input file is raised as a :class:`RecordingError` that names the
file, so that ``prepare`` can skip the recording, record why in the manifest and the
summary, and go on with the rest (or stop under ``--strict``).
"""

from __future__ import annotations

from pathlib import Path

from eegtune.errors import EegtuneError


class RecordingError(EegtuneError):
    """A recording (or one of its sidecars) cannot be used; ``path`` names the culprit."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DatasetError(EegtuneError):
    """A whole BIDS root cannot be used (for example an unreadable participants.tsv)."""
