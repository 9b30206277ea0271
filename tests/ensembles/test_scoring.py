"""`eegtune score`: the challenge's metric on the scorer's own windows and crops, a zip run
end to end over BIDS data, and every kind of bad zip or recording refused by name."""

from __future__ import annotations

import json
import math
import random
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from eegtune.cli import main
from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.store import read_windows, store_files
from eegtune.ensembles import scoring
from eegtune.ensembles.predictor import write_ensemble
from eegtune.ensembles.scoring_windows import scorer_crops
from eegtune.ensembles.submission import export_submission
from tests.ensembles.test_submission import C1, ONE_THREAD, predict, write_ensemble_dir

# challenge, windows, subjects, RMSE, NRMSE, R², mean predictor[, oracle floor]
ROW = re.compile(
    r"^([12])\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(\S+))?$", re.MULTILINE
)
OVERALL = re.compile(r"^overall 0\.3·C1 \+ 0\.7·C2: (\S+) \(mean predictor (\S+)\)$", re.MULTILINE)
C2_CENTRE = 0.25
TIMING = {"total_seconds": 2.0, "model_seconds": 0.5, "load_seconds": 0.1}


def test_scores_are_the_challenge_metric_worked_by_hand():
    # Targets 0, 0, 4, 4: mean 2, population std 2 (the sample std would be 2.31).
    rows1 = pd.DataFrame({"subject": ["a", "a", "b", "b"], "target": [0.0, 0.0, 4.0, 4.0]})
    pred1 = np.array([1.0, -1.0, 4.0, 6.0], dtype=np.float32)  # squared errors 1, 1, 0, 4
    s1 = scoring._score(1, rows1, pred1, 1.0, TIMING)
    assert (s1.challenge, s1.n_windows, s1.n_subjects) == (1, 4, 2)
    assert s1.rmse == pytest.approx(math.sqrt(1.5))
    assert s1.nrmse == pytest.approx(math.sqrt(1.5) / 2)
    assert s1.r2 == pytest.approx(1 - 6 / 16)  # 1 − SSE / SST
    assert s1.mean_nrmse == pytest.approx(math.sqrt(5) / 2)  # centre 1: errors 1, 1, 3, 3
    assert s1.windows_per_s == pytest.approx(2.0) and s1.model_share == pytest.approx(0.25)

    # Targets 1, 1, 1, 3: mean 1.5, variance 0.75; the centre at the mean scores exactly 1.
    rows2 = pd.DataFrame({"subject": ["c", "c", "c", "d"], "target": [1.0, 1.0, 1.0, 3.0]})
    s2 = scoring._score(2, rows2, np.array([1.0, 2.0, 1.0, 3.0]), 1.5, TIMING)
    assert s2.nrmse == pytest.approx(0.5 / math.sqrt(0.75))
    assert s2.r2 == pytest.approx(2 / 3)
    assert s2.mean_nrmse == pytest.approx(1.0)

    report = scoring.ScoreReport({1: s1, 2: s2}, ["x.bdf: broken (not scored)"], Path("p.pq"))
    overall, mean = report.overall()
    assert overall == pytest.approx(0.3 * math.sqrt(0.375) + 0.7 / math.sqrt(3))
    assert mean == pytest.approx(0.3 * math.sqrt(5) / 2 + 0.7)
    assert scoring.ScoreReport({1: s1}, [], Path("p.pq")).overall() is None

    text = scoring.format_scores(report)
    assert {m[0]: float(m[4]) for m in ROW.findall(text)} == {
        "1": pytest.approx(s1.nrmse, abs=5e-5),
        "2": pytest.approx(s2.nrmse, abs=5e-5),
    }
    assert float(OVERALL.search(text)[1]) == pytest.approx(overall, abs=5e-5)
    assert "not scored: x.bdf: broken (not scored)" in text.splitlines()


def test_scorer_crops_are_the_seeded_offsets_in_window_order():
    n, chans, length = 9, 3, 400
    # Every sample holds its own (window, channel, time) so a crop shows where it came from.
    windows = (
        np.arange(length)[None, None, :]
        + 1_000 * np.arange(n)[:, None, None]
        + 100_000 * np.arange(chans)[None, :, None]
    ).astype(np.float32)
    rng = random.Random(42)
    offsets = [rng.randint(0, 200) for _ in range(n)]
    assert len(set(offsets)) > 1

    crops = scorer_crops(windows)
    assert crops.shape == (n, chans, 200) and crops.dtype == np.float32
    for i, off in enumerate(offsets):
        np.testing.assert_array_equal(crops[i], windows[i, :, off : off + 200])
    # Another recording restarts from the seed: its first windows get the same offsets.
    other = scorer_crops(windows[4:7])
    for i, off in enumerate(offsets[:3]):
        np.testing.assert_array_equal(other[i], windows[4 + i, :, off : off + 200])


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _files(submission: bytes = b"# a submission\n") -> dict[str, bytes]:
    noise = np.random.default_rng(0).bytes(20_000)  # big enough that half a zip loses its index
    return {
        "submission.py": submission,
        "weights_challenge_1.pt": noise,
        "weights_challenge_2.pt": noise[::-1],
    }


def truncated(tmp_path: Path) -> Path:
    whole = _zip(tmp_path / "whole.zip", _files()).read_bytes()
    out = tmp_path / "sub.zip"
    out.write_bytes(whole[: len(whole) // 2])
    return out


def in_a_folder(tmp_path: Path) -> Path:
    return _zip(tmp_path / "sub.zip", {f"submission/{n}": d for n, d in _files().items()})


def without_c2_weights(tmp_path: Path) -> Path:
    files = _files()
    del files["weights_challenge_2.pt"]
    return _zip(tmp_path / "sub.zip", files)


def _score(zip_path: Path, bids: Path, capsys) -> tuple[int, str, str]:
    code = main(["score", "--submission", str(zip_path), "--bids", str(bids), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def imports_eegtune(tmp_path: Path) -> Path:
    source = b"import torch\nfrom eegtune.models import create_model\n"
    return _zip(tmp_path / "sub.zip", {**_files(), "sub_helper.py": source})


def bad_crc(tmp_path: Path) -> Path:
    """A whole zip whose weights file has one byte flipped: only its CRC tells."""
    path = _zip(tmp_path / "sub.zip", _files())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("weights_challenge_1.pt").header_offset
    # The local header: 30 bytes, then the name and extra field whose lengths it gives.
    name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
    data[offset + 30 + name_len + extra_len + 1000] ^= 0xFF
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (truncated, "not a readable zip"),
        (in_a_folder, "not single level: 'submission/"),
        (without_c2_weights, "weights_challenge_2.pt"),
        (imports_eegtune, "sub_helper.py imports eegtune, which the scorer does not have"),
        (bad_crc, "is damaged: weights_challenge_1.pt fails its checksum"),
    ],
    ids=["truncated", "in_a_folder", "without_c2_weights", "imports_eegtune", "bad_crc"],
)
def test_bad_zip_is_refused_by_name(make, message, tmp_path, capsys):
    zip_path = make(tmp_path)
    code, _, err = _score(zip_path, tmp_path, capsys)
    assert code == 2
    assert err.startswith("eegtune score: error:") and message in err
    assert not list(tmp_path.glob("*.parquet"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_submission_failing_at_import_is_reported(synthetic_bids, tmp_path, capsys):
    source = b"raise RuntimeError('deliberately broken submission')\n"
    zip_path = _zip(tmp_path / "sub.zip", _files(source))
    code, _, err = _score(zip_path, synthetic_bids[0] / "R1_L100_bdf", capsys)
    assert code == 2
    assert "failed in the scorer's process" in err
    assert "deliberately broken submission" in err  # the process's own traceback, passed on
    assert not list(tmp_path.glob("*.parquet"))


# A submission whose model returns (B,) instead of the (B, 1) the scorer indexes.
FLAT_OUTPUT = b"""
import torch


class Flat(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(1, 2))


class Submission:
    def __init__(self, SFREQ, DEVICE):
        pass

    def get_model_challenge_1(self):
        return Flat()

    def get_model_challenge_2(self):
        return Flat()
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_model_of_the_wrong_output_shape_is_reported(small_bids, tmp_path, capsys):
    zip_path = _zip(tmp_path / "sub.zip", _files(FLAT_OUTPUT))
    code, _, err = _score(zip_path, small_bids, capsys)
    assert code == 2
    assert "the model returned (1,), not (1, 1)" in err
    assert not list(tmp_path.glob("*.parquet"))


def _stored(store: Path, challenge: int) -> pd.DataFrame:
    columns = ["subject", "recording", "window_index", "target"]
    files = store_files(store, challenge)
    return pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files])


@pytest.mark.slow
@pytest.mark.timeout(600)  # the shared experiment, on a busy machine
def test_score_end_to_end_with_a_truncated_recording(
    finished_experiment, small_bids, tmp_path, capsys, monkeypatch
):
    for name, value in ONE_THREAD.items():
        monkeypatch.setenv(name, value)
    damaged = sorted(small_bids.rglob("*_eeg.bdf"))[0]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    store = tmp_path / "store"
    prepare([small_bids], store, PrepareOptions())

    c1 = write_ensemble_dir(finished_experiment, tmp_path / "c1", C1)
    c2 = tmp_path / "c2"  # the mean predictor: no members, every prediction its centre
    write_ensemble(c2, {"challenge": 2, "members": [], "alpha": 1.0, "centre": C2_CENTRE}, [])
    zip_path = export_submission(c1, c2, tmp_path / "sub.zip").path
    parquet = tmp_path / "predictions.parquet"
    oracle_file = small_bids.parent / "oracle.json"
    oracle = json.loads(oracle_file.read_text())
    args = ["score", "--submission", str(zip_path), "--bids", str(small_bids), "--fast"]
    args += ["--predictions", str(parquet), "--oracle", str(oracle_file), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out

    not_scored = [line for line in out.splitlines() if line.startswith("not scored:")]
    assert any(damaged.name in line for line in not_scored), out
    table = pd.read_parquet(parquet)
    assert {"subject", "recording", "target", "prediction", "challenge"} <= set(table.columns)
    assert damaged.name not in set(table["recording"])

    printed = {int(m[0]): m for m in ROW.findall(out)}
    assert set(printed) == {1, 2}, out
    nrmses, centres = {}, {1: C1["centre"], 2: C2_CENTRE}
    for c in (1, 2):
        ours = table[table["challenge"] == c].sort_values(["recording", "window_index"])
        stored = _stored(store, c).sort_values(["recording", "window_index"])
        # The same windows as `prepare` cuts, recording by recording, with the same targets.
        assert len(ours) == len(stored) > 0
        assert ours["recording"].tolist() == stored["recording"].tolist()
        np.testing.assert_allclose(ours["target"], stored["target"], rtol=0, atol=1e-6)

        y, p = ours["target"].to_numpy(np.float64), ours["prediction"].to_numpy(np.float64)
        std = np.sqrt(np.mean((y - y.mean()) ** 2))
        nrmses[c] = np.sqrt(np.mean((y - p) ** 2)) / std
        _, windows, subjects, _, nrmse, r2, mean, floor = printed[c]
        assert int(windows) == len(ours) and int(subjects) == 2
        assert float(nrmse) == pytest.approx(nrmses[c], abs=5e-5)
        assert float(r2) == pytest.approx(
            1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2), abs=5e-5
        )
        assert float(mean) == pytest.approx(np.sqrt(np.mean((y - centres[c]) ** 2)) / std, abs=5e-5)
        assert float(floor) == pytest.approx(oracle[f"challenge{c}"]["nrmse_floor"], abs=5e-5)

    # Challenge 2's targets are the subjects' externalizing scores the generator drew.
    drawn = {s["subject"]: s["externalizing"] for s in oracle["subjects"]}
    for subject, targets in table[table["challenge"] == 2].groupby("subject")["target"]:
        np.testing.assert_allclose(targets, drawn[subject], rtol=0, atol=1e-6)

    # The mean predictor's Challenge 2: exactly its centre, so it scores as the mean does.
    c2_rows = table[table["challenge"] == 2]
    assert (c2_rows["prediction"] == np.float32(C2_CENTRE)).all()
    assert printed[2][4] == printed[2][6]
    assert float(OVERALL.search(out)[1]) == pytest.approx(
        0.3 * nrmses[1] + 0.7 * nrmses[2], abs=1e-4
    )

    # Challenge 1 predicted in batches of 256 equals the folder's model on the store's windows.
    c1_rows = table[table["challenge"] == 1].sort_values(["recording", "window_index"])
    eeg, meta = read_windows(store, 1, columns=["recording", "window_index"])
    order = np.lexsort((meta["window_index"].to_numpy(), meta["recording"].to_numpy()))
    expected = predict(c1, eeg[order])
    np.testing.assert_allclose(c1_rows["prediction"], expected, rtol=0, atol=1e-5)
