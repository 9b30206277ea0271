"""The windows the challenge's scorer feeds a submission, rebuilt from BIDS releases.

- Every window is float32 **volts**, as MNE returns the recording and the scorer passes it
  on (:func:`eegtune.data.signal.read_scorer_signal`), not the store's µV: the zip's
  contract is the scorer's input.
- Challenge 1: one (129, 200) window per scored trial, from the official trial table:
  the same code path as ``prepare`` (:func:`eegtune.data.prepare.challenge1_windows`).
- Challenge 2: the CCD recordings with at least 4 s of signal and a non-missing
  externalizing score; 4 s windows with a 2 s stride, each cut to a 2 s crop starting
  ``rng.randint(0, 200)`` samples in, with one ``random.Random(42)`` per recording walked
  in window order: the scorer's crops exactly, not just in distribution.

Each recording's windows go to their own ``.npy`` file, in the order the scorer feeds
them, so memory holds one recording at a time however many are scored.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eegtune.data.errors import DatasetError, RecordingError
from eegtune.data.prepare import CCD, PrepareOptions, challenge1_windows, plan_units
from eegtune.data.signal import read_scorer_signal
from eegtune.data.windows import cut_challenge2
from eegtune.errors import ConfigError

CROP = 200
CROP_SEED = 42

logger = logging.getLogger(__name__)


@dataclass
class ScoringSet:
    """Where each challenge's windows were written, and what could not be scored."""

    files: dict[int, list[Path]] = field(default_factory=lambda: {1: [], 2: []})
    meta: dict[int, list[pd.DataFrame]] = field(default_factory=lambda: {1: [], 2: []})
    problems: list[str] = field(default_factory=list)

    def rows(self, challenge: int) -> pd.DataFrame:
        parts = self.meta[challenge]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def scorer_crops(windows: np.ndarray, seed: int = CROP_SEED) -> np.ndarray:
    """The scorer's 2 s crops of one recording's 4 s windows, in order."""
    rng = random.Random(seed)
    offsets = [rng.randint(0, windows.shape[-1] - CROP) for _ in range(len(windows))]
    out = np.empty((len(windows), windows.shape[1], CROP), dtype=np.float32)
    for i, off in enumerate(offsets):
        out[i] = windows[i, :, off : off + CROP]
    return out


def build_scoring_set(
    roots: list[Path],
    work: Path,
    log: Callable[[str], None] | None = None,
    max_subjects: int | None = None,
) -> ScoringSet:
    """Cut every CCD recording under ``roots`` into both challenges' scoring windows
    (of the first ``max_subjects`` subjects only, for a smoke test)."""
    log = log or logger.info
    try:
        units, skipped, _ = plan_units([Path(r) for r in roots], PrepareOptions())
    except DatasetError as exc:
        raise ConfigError(str(exc)) from exc
    units = units[:max_subjects]
    out = ScoringSet(problems=[f"{s['path']}: {s['reason']}" for s in skipped])
    recordings = [(u, r) for u in units for r in u.recordings if r.task == CCD]
    if not recordings:
        raise ConfigError(f"no {CCD} recordings found under {[str(r) for r in roots]}")
    work.mkdir(parents=True, exist_ok=True)
    for i, (unit, rec) in enumerate(recordings):
        if i % 10 == 0:
            log(f"cutting windows: recording {i + 1}/{len(recordings)}")
        try:
            signal = read_scorer_signal(rec.path)
        except RecordingError as exc:
            out.problems.append(f"{exc.path}: {exc.problem} (not scored)")
            continue
        ids = {"subject": unit.subject, "release": unit.release, "recording": rec.path.name}
        try:
            w1 = challenge1_windows(rec, signal)
            _add(out, 1, work / f"c1_{i:05d}.npy", w1.eeg, w1.meta, ids)
        except RecordingError as exc:
            out.problems.append(f"{exc.path}: {exc.problem} (Challenge 1 not scored)")
        target = unit.participant.scores.get("externalizing") if unit.participant else None
        if target is None or not np.isfinite(target):
            out.problems.append(
                f"{rec.path}: no externalizing score for sub-{unit.subject} in "
                f"{unit.root / 'participants.tsv'} (Challenge 2 not scored, as the scorer does)"
            )
        elif signal.duration < 4.0:
            out.problems.append(f"{rec.path}: under 4 s of signal (Challenge 2 not scored)")
        else:
            w2 = cut_challenge2(signal, float(target))
            _add(out, 2, work / f"c2_{i:05d}.npy", scorer_crops(w2.eeg), w2.meta, ids)
    return out


def _add(out: ScoringSet, challenge: int, path: Path, eeg, meta, ids: dict) -> None:
    if len(eeg) == 0:
        return
    np.save(path, np.ascontiguousarray(eeg, dtype=np.float32))
    out.files[challenge].append(path)
    columns = ["window_index", "target"]
    out.meta[challenge].append(meta[columns].assign(**ids)[[*ids, *columns]])
