"""`eegtune score` against the official scoring flow, rebuilt here without eegtune's data code.

The challenge's ``local_scoring.py`` reads each CCD recording with MNE (volts, float32),
cuts Challenge 1 windows from stimulus + 0.5 s to + 2.5 s of each scored trial and
Challenge 2 windows of 4 s every 2 s, crops the latter at ``random.Random(42)`` offsets
per recording, and feeds them one at a time to the zip's models. Everything of that flow
is written out below with MNE, numpy and the standard library only (nothing from
``eegtune.data`` or ``eegtune.ensembles.scoring_windows``), and the unpacked zip is run
on those windows in a fresh process. Its predictions must equal what `eegtune score`
printed and saved, window by window, on both challenges, with trained members on both.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest

from eegtune.cli import main
from eegtune.data.store import read_windows
from eegtune.ensembles.candidates import experiment_candidates, open_experiment
from eegtune.ensembles.predictor import write_ensemble
from eegtune.training.config import TrainConfig
from eegtune.training.cross_validate import run_cv
from tests.ensembles.test_scoring import OVERALL, ROW
from tests.ensembles.test_submission import ONE_THREAD, predict, write_ensemble_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SFREQ = 100
TOLERANCE = 1e-5

# --- The official definitions (CHALLENGE.md), written out -----------------------------


def official_trials(events_tsv: Path) -> list[tuple[float, float]]:
    """(stimulus onset, rt_from_stimulus) of every scored trial, in order.

    A trial runs from one ``contrastTrial_start`` to the next; the last one is closed by
    ``end_experiment`` or dropped. Its stimulus is its first ``*_target``; its response
    the first ``*_buttonPress`` at or after the stimulus and before the trial ends.
    """
    with open(events_tsv, newline="") as f:
        rows = [(float(r["onset"]), r["value"]) for r in csv.DictReader(f, delimiter="\t")]
    rows.sort(key=lambda r: r[0])  # stable, like a mergesort on onset
    starts = [t for t, v in rows if v == "contrastTrial_start"]
    trials = []
    for i, start in enumerate(starts):
        if i + 1 < len(starts):
            end = starts[i + 1]
        else:
            closing = [t for t, v in rows if v == "end_experiment" and t >= start]
            if not closing:
                continue
            end = closing[0]
        targets = [t for t, v in rows if v in ("left_target", "right_target") and start <= t < end]
        if not targets:
            continue
        stim = targets[0]
        presses = [
            t for t, v in rows if v in ("left_buttonPress", "right_buttonPress") and stim <= t < end
        ]
        if presses:
            trials.append((stim, presses[0] - stim))
    return trials


def c1_windows(volts: np.ndarray, events_tsv: Path) -> tuple[list[np.ndarray], list[float]]:
    """braindecode's windows from MNE events: the event sample is MNE's rounding of
    onset × sfreq (half to even), the window [sample + 50, sample + 250); a window that
    runs past the recording is not cut."""
    windows, targets = [], []
    for stim, rt in official_trials(events_tsv):
        start = int(np.round(stim * SFREQ)) + int(0.5 * SFREQ)
        if start >= 0 and start + 2 * SFREQ <= volts.shape[1]:
            windows.append(volts[:, start : start + 2 * SFREQ])
            targets.append(rt)
    return windows, targets


def c2_windows(volts: np.ndarray) -> list[np.ndarray]:
    """4 s windows every 2 s, the last partial one dropped, each cropped to 2 s at
    ``rng.randint(0, 200)`` with a fresh ``random.Random(42)`` per recording."""
    rng = random.Random(42)
    n = (volts.shape[1] - 4 * SFREQ) // (2 * SFREQ) + 1
    out = []
    for k in range(n):
        offset = k * 2 * SFREQ + rng.randint(0, 2 * SFREQ)
        out.append(volts[:, offset : offset + 2 * SFREQ])
    return out


def externalizing(participants_tsv: Path) -> dict[str, float]:
    with open(participants_tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    scores = {}
    for r in rows:
        value = r.get("externalizing", "n/a")
        scores[r["participant_id"].removeprefix("sub-")] = (
            float("nan") if value in ("n/a", "") else float(value)
        )
    return scores


def official_windows(bids: Path) -> dict[int, pd.DataFrame]:
    """Per challenge: one row per window (recording, window_index, target, volts)."""
    scores = externalizing(bids / "participants.tsv")
    rows: dict[int, list[dict]] = {1: [], 2: []}
    for bdf in sorted(bids.rglob("*_task-contrastChangeDetection*_eeg.bdf")):
        raw = mne.io.read_raw_bdf(bdf, preload=True, verbose="error")
        volts = raw.get_data().astype(np.float32)  # what the scorer's X holds
        subject = bdf.name.split("_")[0].removeprefix("sub-")
        events = bdf.with_name(bdf.name.replace("_eeg.bdf", "_events.tsv"))
        windows, targets = c1_windows(volts, events)
        for k, (x, y) in enumerate(zip(windows, targets, strict=True)):
            rows[1].append(dict(recording=bdf.name, window_index=k, target=y, x=x))
        score = scores.get(subject, float("nan"))
        if raw.n_times >= 4 * SFREQ and not math.isnan(score):
            for k, x in enumerate(c2_windows(volts)):
                rows[2].append(dict(recording=bdf.name, window_index=k, target=score, x=x))
    return {c: pd.DataFrame(r) for c, r in rows.items()}


# The unpacked zip in a fresh process, one window at a time, as local_scoring.py calls it.
CHILD = r"""
import json, sys
import numpy as np, torch
zip_dir, x_file = sys.argv[1], sys.argv[2]
sys.path.insert(0, zip_dir)
from submission import Submission
x = torch.from_numpy(np.load(x_file))
out = {}
for c in (1, 2):
    model = getattr(Submission(100, "cpu"), f"get_model_challenge_{c}")()
    model.eval()
    with torch.inference_mode():
        out[c] = [float(model.forward(x[c - 1][i : i + 1])[0][0]) for i in range(x.shape[1])]
print(json.dumps(out))
"""


def run_zip(zip_dir: Path, windows: dict[int, pd.DataFrame], tmp: Path) -> dict[int, np.ndarray]:
    preds = {}
    for c, frame in windows.items():
        x = np.stack(frame["x"].to_list())[None].repeat(2, axis=0)  # (2, n, 129, 200)
        np.save(tmp / f"x{c}.npy", x)
        cmd = [sys.executable, "-I", "-c", CHILD, str(zip_dir), str(tmp / f"x{c}.npy")]
        done = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        preds[c] = np.asarray(json.loads(done.stdout.strip().splitlines()[-1])[str(c)])
    return preds


# --- The zip under test: trained members on both challenges ---------------------------


@pytest.fixture(scope="module")
def trained_zip(finished_experiment, prepared_store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("official_flow")
    c1_spec = {"challenge": 1, "weights": [0.5, 0.5], "alpha": 0.8, "centre": 1.5}
    c1 = write_ensemble_dir(finished_experiment, root / "c1", c1_spec)
    # Challenge 2: ridge on band powers fitted to the store's Challenge 2 windows (it has no
    # per-window normalisation, so volts taken for µV would wreck it) beside a trained
    # network of the experiment. Neither is the mean predictor.
    hp = TrainConfig(model="ridge_bandpower")
    run_cv(prepared_store, 2, hp, root / "ridge", n_folds=2)
    ridge_folds = [root / "ridge" / f"fold{k}" / "checkpoint.pt" for k in range(2)]
    tcn_folds = experiment_candidates(open_experiment(finished_experiment))[2].checkpoints()
    members = [{"label": "ridge", "weight": 0.7}, {"label": "tcn", "weight": 0.3}]
    c2 = root / "c2"
    description = {"challenge": 2, "members": members, "alpha": 0.9, "centre": 0.1}
    write_ensemble(c2, description, [ridge_folds, tcn_folds])
    zip_path = root / "submission.zip"
    assert main(["submission", "--c1", str(c1), "--c2", str(c2), "--out", str(zip_path)]) == 0
    return {"c1": c1, "c2": c2, "zip": zip_path, "root": root}


@pytest.fixture(scope="module")
def scored(trained_zip, synthetic_bids) -> dict:
    """`eegtune score` at its defaults (batch size 1) on R1, and its printed report."""
    bids = synthetic_bids[0] / "R1_L100_bdf"
    predictions = trained_zip["root"] / "predictions.parquet"
    env = {**os.environ, **ONE_THREAD}
    cmd = [sys.executable, "-m", "eegtune.cli", "score", "--submission", str(trained_zip["zip"]),
           "--bids", str(bids), "--predictions", str(predictions), "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return {"bids": bids, "table": pd.read_parquet(predictions), "out": done.stdout}


@pytest.fixture(scope="module")
def official(trained_zip, scored) -> dict:
    """The official flow's windows and the unpacked zip's predictions on them."""
    windows = official_windows(scored["bids"])
    zip_dir = trained_zip["root"] / "unpacked"
    with zipfile.ZipFile(trained_zip["zip"]) as zf:
        zf.extractall(zip_dir)
    return {"windows": windows, "preds": run_zip(zip_dir, windows, trained_zip["root"])}


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["recording", "window_index"]).reset_index(drop=True)


@pytest.mark.parametrize("challenge", [1, 2])
def test_score_predicts_what_the_official_flow_predicts(challenge, scored, official):
    ours = _keyed(scored["table"][scored["table"]["challenge"] == challenge])
    theirs = official["windows"][challenge].assign(prediction=official["preds"][challenge])
    theirs = _keyed(theirs)
    # The same windows, with the same targets, in each recording.
    assert len(ours) == len(theirs) > 20
    assert ours["recording"].tolist() == theirs["recording"].tolist()
    assert ours["window_index"].tolist() == theirs["window_index"].tolist()
    np.testing.assert_allclose(ours["target"], theirs["target"], rtol=0, atol=1e-6)
    # And the same predictions, window by window; they vary, so equality means something.
    assert np.ptp(theirs["prediction"]) > 100 * TOLERANCE
    np.testing.assert_allclose(ours["prediction"], theirs["prediction"], rtol=0, atol=TOLERANCE)


def test_printed_scores_are_the_official_scorers(scored, official):
    """local_scoring.py's arithmetic: float32 targets and predictions, rmse / y.std(),
    printed to 4 decimals; the overall score 0.3·C1 + 0.7·C2."""
    printed = {int(m[0]): m for m in ROW.findall(scored["out"])}
    nrmses = {}
    for c in (1, 2):
        y = official["windows"][c]["target"].to_numpy(np.float32)
        p = official["preds"][c].astype(np.float32)
        rmse = np.sqrt(np.mean((y - p) ** 2))
        nrmses[c] = rmse / y.std()
        _, windows, _, our_rmse, our_nrmse, *_ = printed[c]
        assert int(windows) == len(y)
        assert (our_rmse, our_nrmse) == (f"{rmse:.4f}", f"{nrmses[c]:.4f}")
    overall = 0.3 * nrmses[1] + 0.7 * nrmses[2]
    assert OVERALL.search(scored["out"])[1] == f"{overall:.4f}"


def test_zip_on_volts_equals_the_ensemble_on_the_stores_microvolts(
    trained_zip, official, prepared_store
):
    """The unit boundary: the zip fed MNE's volts predicts what the ensemble folder predicts
    on the store's µV windows of the same trials (Challenge 2: the same crops)."""
    for c in (1, 2):
        theirs = official["windows"][c].assign(prediction=official["preds"][c])
        eeg, meta = read_windows(prepared_store, c, columns=["recording", "window_index"])
        keys = zip(meta["recording"], meta["window_index"].astype(int), strict=True)
        where = {key: i for i, key in enumerate(keys)}
        wanted = zip(theirs["recording"], theirs["window_index"], strict=True)
        stored = eeg[[where[key] for key in wanted]]
        if c == 2:  # the store keeps 4 s windows; take the official 2 s crops of them
            offsets = _crop_offsets(theirs)
            pairs = zip(stored, offsets, strict=True)
            stored = np.stack([w[:, o : o + 2 * SFREQ] for w, o in pairs])
        assert stored.shape[1:] == (129, 2 * SFREQ)
        # The store holds µV: a million times the volts, not merely proportional.
        volts = np.stack(theirs["x"].to_list())
        np.testing.assert_allclose(stored, volts * 1e6, rtol=1e-5, atol=1e-3)
        expected = predict(trained_zip[f"c{c}"], np.ascontiguousarray(stored))
        assert np.ptp(expected) > 100 * TOLERANCE
        np.testing.assert_allclose(theirs["prediction"], expected, rtol=0, atol=TOLERANCE)


def _crop_offsets(frame: pd.DataFrame) -> list[int]:
    """Each window's crop offset: the official generator restarted for every recording."""
    offsets = []
    for _, group in frame.groupby("recording", sort=False):
        rng = random.Random(42)
        offsets += [rng.randint(0, 2 * SFREQ) for _ in range(len(group))]
    return offsets
