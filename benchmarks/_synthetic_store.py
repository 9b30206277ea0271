"""The benchmarks' shared set-up: a fresh synthetic CCD store in a temporary folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize


def synthetic_ccd_store(n_subjects: int, prefix: str) -> Path:
    """Synthesise ``n_subjects`` with CCD runs only and prepare them; return the work
    folder, whose ``store`` holds the window store (the rest is the caller's)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    synthesize(
        SynthOptions(out=work / "bids", n_subjects=n_subjects, tasks=("contrastChangeDetection",)),
        progress=False,
    )
    prepare([work / "bids"], work / "store", PrepareOptions())
    return work
