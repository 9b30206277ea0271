"""``eegtune score``: a submission zip scored the way the challenge's local scorer does.

The zip is checked (single level, its three files), unpacked into a temporary folder and
run by :mod:`eegtune.ensembles.score_runner` in a fresh ``python -I -S`` process that sees
only that folder, the standard library and site-packages, with eegtune blocked. The
windows come from :mod:`eegtune.ensembles.scoring_windows`. Scores are the challenge's:
pooled NRMSE per challenge and ``0.3 · NRMSE₁ + 0.7 · NRMSE₂``, beside the mean
predictor's (the ensemble's own centre c, the training targets' mean) on the same windows.
"""

from __future__ import annotations

import json
import logging
import site
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from eegtune import storage
from eegtune.ensembles import score_runner
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.scoring_windows import build_scoring_set
from eegtune.ensembles.submission import EEGTUNE_IMPORT
from eegtune.metrics import nrmse, overall_score, rmse

REQUIRED = ("submission.py", "weights_challenge_1.pt", "weights_challenge_2.pt")
FAST_BATCH = 256

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChallengeScore:
    challenge: int
    n_windows: int
    n_subjects: int
    rmse: float
    nrmse: float
    r2: float
    mean_nrmse: float  # the mean predictor (the zip's centre c) on the same windows
    windows_per_s: float
    model_share: float  # share of the subprocess's time spent inside model.forward


@dataclass
class ScoreReport:
    scores: dict[int, ChallengeScore]
    problems: list[str]
    predictions: Path

    def overall(self) -> tuple[float, float] | None:
        if set(self.scores) != {1, 2}:
            return None
        s = self.scores
        return (
            overall_score(s[1].nrmse, s[2].nrmse),
            overall_score(s[1].mean_nrmse, s[2].mean_nrmse),
        )


def unpack_submission(zip_path: Path, dest: Path) -> None:
    """Unpack the zip into ``dest``; refuse a damaged zip, a folder inside, a missing file."""
    if not zip_path.is_file():
        raise EnsembleError(f"{zip_path}: no such submission zip")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            nested = [n for n in names if "/" in n or "\\" in n]
            if nested:
                raise EnsembleError(
                    f"{zip_path} is not single level: {nested[0]!r} is inside a folder"
                )
            missing = [n for n in REQUIRED if n not in names]
            if missing:
                raise EnsembleError(f"{zip_path} lacks {missing}")
            bad = zf.testzip()
            if bad is not None:
                raise EnsembleError(f"{zip_path} is damaged: {bad} fails its checksum")
            # The scorer's machine has no eegtune: a zip that needs it would fail there.
            for name in names:
                if name.endswith(".py") and EEGTUNE_IMPORT.search(zf.read(name).decode("utf-8")):
                    raise EnsembleError(
                        f"{zip_path}: {name} imports eegtune, which the scorer does not have"
                    )
            zf.extractall(dest)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise EnsembleError(f"{zip_path} is not a readable zip (truncated?): {exc}") from exc
    except UnicodeDecodeError as exc:
        raise EnsembleError(f"{zip_path}: a .py file is not UTF-8 text: {exc}") from exc


def run_submission(
    zip_dir: Path, challenge: int, files: list[Path], out: Path, batch_size: int
) -> dict[str, float]:
    """Predict ``files``' windows with the unpacked zip in a fresh, isolated process."""
    listing = out.with_suffix(".list")
    listing.write_text("\n".join(str(f) for f in files))
    sites = [p for p in site.getsitepackages() if Path(p).is_dir()]
    cmd = [
        sys.executable, "-I", "-S", score_runner.__file__, "--zip-dir", str(zip_dir),
        "--challenge", str(challenge), "--windows-list", str(listing), "--out", str(out),
        "--batch-size", str(batch_size), *[a for p in sites for a in ("--site", p)],
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=zip_dir)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise EnsembleError(f"the submission failed in the scorer's process (challenge "
                            f"{challenge}):\n{tail}")  # fmt: skip
    return json.loads(Path(str(out) + ".json").read_text())


def score_submission(
    zip_path: str | Path,
    bids: list[str | Path],
    predictions: str | Path,
    fast: bool = False,
    log: Callable[[str], None] | None = None,
    max_subjects: int | None = None,
) -> ScoreReport:
    log = log or logger.info
    zip_path = Path(zip_path)
    with tempfile.TemporaryDirectory(prefix="eegtune_score_") as tmp:
        zip_dir = Path(tmp) / "submission"
        zip_dir.mkdir()
        unpack_submission(zip_path, zip_dir)
        windows = build_scoring_set(
            [Path(b) for b in bids], Path(tmp) / "windows", log=log, max_subjects=max_subjects
        )
        scores, frames = {}, []
        for challenge in (1, 2):
            rows = windows.rows(challenge)
            if rows.empty:
                windows.problems.append(f"Challenge {challenge}: no window to score")
                continue
            log(f"Challenge {challenge}: predicting {len(rows)} windows in a fresh process")
            out = Path(tmp) / f"pred_c{challenge}.npy"
            timing = run_submission(
                zip_dir, challenge, windows.files[challenge], out, FAST_BATCH if fast else 1
            )
            pred = np.load(out)
            if len(pred) != len(rows):
                raise EnsembleError(f"{len(pred)} predictions for {len(rows)} windows")
            centre = _centre(zip_dir / f"weights_challenge_{challenge}.pt")
            scores[challenge] = _score(challenge, rows, pred, centre, timing)
            # The zip's centre too, so a report can show the mean predictor beside it.
            frames.append(rows.assign(challenge=challenge, prediction=pred, mean_prediction=centre))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    with storage.replacing(predictions) as tmp_file:
        table.to_parquet(tmp_file, index=False)
    return ScoreReport(scores, windows.problems, predictions)


def _centre(weights: Path) -> float:
    return float(torch.load(weights, map_location="cpu", weights_only=True)["centre"])


def _score(challenge, rows: pd.DataFrame, pred, centre: float, timing) -> ChallengeScore:
    y = rows["target"].to_numpy(dtype=np.float64)
    score = nrmse(y, pred)
    return ChallengeScore(
        challenge=challenge,
        n_windows=len(y),
        n_subjects=rows["subject"].nunique(),
        rmse=rmse(y, pred),
        nrmse=score,
        r2=1.0 - score**2,
        mean_nrmse=nrmse(y, np.full_like(y, centre)),
        windows_per_s=len(y) / max(timing["total_seconds"], 1e-9),
        model_share=timing["model_seconds"] / max(timing["total_seconds"], 1e-9),
    )


def format_scores(report: ScoreReport, floors: dict[int, float] | None = None) -> str:
    lines = [
        f"{'challenge':<10} {'windows':>8} {'subjects':>8} {'RMSE':>8} {'NRMSE':>8} {'R²':>8} "
        f"{'mean pred.':>10}" + (f" {'oracle':>8}" if floors else "")
    ]
    for c, s in sorted(report.scores.items()):
        floor = f" {floors[c]:>8.4f}" if floors and c in floors else ""
        lines.append(
            f"{c:<10} {s.n_windows:>8} {s.n_subjects:>8} {s.rmse:>8.4f} {s.nrmse:>8.4f} "
            f"{s.r2:>8.4f} {s.mean_nrmse:>10.4f}{floor}"
        )
    both = report.overall()
    if both:
        lines.append(f"overall 0.3·C1 + 0.7·C2: {both[0]:.4f} (mean predictor {both[1]:.4f})")
    for c, s in sorted(report.scores.items()):
        lines.append(
            f"Challenge {c}: {s.windows_per_s:.0f} windows/s in the scorer's process, "
            f"{s.model_share:.0%} of it inside the models"
        )
    if floors:
        lines.append("oracle: the generator's floors over its whole synthetic data set")
    lines += [f"not scored: {p}" for p in report.problems]
    lines.append(f"per-window predictions: {report.predictions}")
    return "\n".join(lines)
