import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from eegtune.data.bids import discover_recordings
from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.signal import CHANNELS, read_signal
from eegtune.data.store import load_manifest, read_windows
from eegtune.data.trials import scored_trials
from eegtune.data.tsv import read_events
from tests.conftest import CCD


def test_store_holds_every_scored_trial_with_its_label(prepared_store, synthetic_bids):
    bids, oracle = synthetic_bids
    eeg, meta = read_windows(prepared_store, 1)
    assert eeg.shape == (oracle["challenge1"]["n_trials"], 129, 200) and eeg.dtype == np.float32
    assert meta["target"].mean() == pytest.approx(oracle["challenge1"]["rt_mean"], abs=1e-6)
    assert set(meta["release"]) == {"R1", "R2"}
    # One recording checked against a direct read: same labels, same samples.
    rec = next(r for r in discover_recordings(bids / "R2_L100_bdf", {CCD}))
    trials = scored_trials(read_events(rec.events_path))
    mine = meta[meta["recording"] == rec.path.name].sort_values("window_index")
    np.testing.assert_allclose(mine["target"], trials["rt_from_stimulus"], atol=1e-6)
    assert mine["trial_index"].tolist() == trials["trial_index"].tolist()
    sig = read_signal(rec.path)
    first = mine.index[0]
    start = int(round((trials["stimulus_onset"].iloc[0] + 0.5) * 100))
    np.testing.assert_array_equal(eeg[first], sig.data[:, start : start + 200])


def test_challenge2_windows_and_targets(prepared_store, synthetic_bids):
    _, oracle = synthetic_bids
    eeg, meta = read_windows(prepared_store, 2)
    assert eeg.shape[1:] == (129, 400)
    assert len(meta) == oracle["challenge2"]["n_windows"]
    truth = {s["subject"]: s["externalizing"] for s in oracle["subjects"]}
    for subject, group in meta.groupby("subject"):
        assert np.allclose(group["target"], truth[subject], atol=1e-6)
    assert set(meta["task"]) == {CCD}


def test_manifest_channel_stats_match_the_windows(prepared_store):
    manifest = load_manifest(prepared_store)
    assert manifest["schema_version"] == 1 and manifest["complete"]
    eeg, _ = read_windows(prepared_store, 1)
    c1 = manifest["challenges"]["1"]
    np.testing.assert_allclose(
        c1["channel_mean"], eeg.mean(axis=(0, 2), dtype=np.float64), atol=1e-4
    )
    np.testing.assert_allclose(c1["channel_std"], eeg.std(axis=(0, 2), dtype=np.float64), rtol=1e-4)
    assert sum(f["rows"] for f in manifest["files"] if f["challenge"] == 1) == len(eeg)
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert all({"path", "bytes", "mtime_ns"} <= set(s) for s in manifest["source_files"])


def _signal_via_mne(path: Path) -> np.ndarray:
    """The recording as (129, n_times) float32 µV, read with MNE alone (no eegtune reader)."""
    import mne

    raw = mne.io.read_raw_bdf(path, preload=True, verbose="error")
    order = [raw.ch_names.index(name) for name in CHANNELS]
    return (raw.get_data()[order] * 1e6).astype(np.float32)


def test_pandas_reads_the_store_without_eegtune(prepared_store, synthetic_bids, tmp_path):
    bids, _ = synthetic_bids
    # The child reads the store with pandas + numpy only, exactly as the README shows, and
    # hands back a few whole windows (first, middle, last rows) with their identities.
    code = (
        "import sys, json, numpy as np, pandas as pd\n"
        "sys.modules['eegtune'] = None  # make any eegtune import fail\n"
        f"df = pd.read_parquet({str(prepared_store / 'challenge1')!r})\n"
        "x = np.stack(df['eeg'].to_numpy()).reshape(len(df), 129, 200)\n"
        "rows = sorted({0, len(df) // 3, 2 * len(df) // 3, len(df) - 1})\n"
        f"np.save({str(tmp_path / 'windows.npy')!r}, x[rows])\n"
        "ids = df.iloc[rows][['recording', 'window_start']]\n"
        "print(json.dumps([len(df), float(df['target'].mean()), ids.values.tolist()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, mean_rt, ids = json.loads(out.stdout)
    windows = np.load(tmp_path / "windows.npy")
    _, meta = read_windows(prepared_store, 1)
    assert n == len(meta) and mean_rt == pytest.approx(float(meta["target"].mean()), abs=1e-5)
    assert len(ids) == len(windows) >= 3 and len({rec for rec, _ in ids}) >= 2

    for window, (recording, window_start) in zip(windows, ids, strict=True):
        signal = _signal_via_mne(next(bids.rglob(recording)))
        start = int(round(window_start * 100))
        truth = signal[:, start : start + 200]
        # The whole (channel, time) window, against the recording read independently at
        # its own sample offset: a window stored as (time, channel), or flattened in
        # Fortran order, would put other samples at almost every position.
        np.testing.assert_allclose(window, truth, rtol=1e-6, atol=1e-4)
        # Spot checks off the diagonal, where a transposed layout differs most visibly.
        for c, t in ((0, 199), (128, 0), (5, 17), (77, 150)):
            assert window[c, t] == pytest.approx(float(truth[c, t]), rel=1e-6, abs=1e-4)
        # The windows are rich enough for the check to bite: read as if the store had been
        # written transposed or in Fortran order, they would not match.
        transposed = np.ascontiguousarray(truth.T).reshape(129, 200)
        fortran = truth.reshape(-1, order="F").reshape(129, 200)
        assert not np.allclose(transposed, truth) and not np.allclose(fortran, truth)


def test_rerun_reuses_everything_and_redoes_a_changed_subject(small_bids, tmp_path):
    store = tmp_path / "store"
    first = prepare([small_bids], store, PrepareOptions())
    assert first.reused == 0 and first.units == 2
    before = {f["path"]: f["sha256"] for f in load_manifest(store)["files"]}
    again = prepare([small_bids], store, PrepareOptions())
    assert again.reused == 2
    assert {f["path"]: f["sha256"] for f in load_manifest(store)["files"]} == before

    # Drop one trial from one subject's events: only that subject is redone.
    rec = discover_recordings(small_bids, {CCD})[0]
    events = read_events(rec.events_path)
    first_target = events.index[events["value"].str.endswith("_target")][0]
    events.drop(index=first_target).to_csv(rec.events_path, sep="\t", index=False, na_rep="n/a")
    third = prepare([small_bids], store, PrepareOptions())
    assert third.reused == 1
    assert third.windows["1"] == first.windows["1"] - 1


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_rerun_redoes_a_subject_whose_output_no_longer_matches_its_checksum(small_bids, tmp_path):
    store = tmp_path / "store"
    first = prepare([small_bids], store, PrepareOptions())
    assert (first.units, first.reused) == (2, 0)
    files = load_manifest(store)["files"]
    by_subject: dict[str, list[dict]] = {}
    for f in files:
        by_subject.setdefault(f["subject"], []).append(f)
    assert len(by_subject) == 2
    victim, bystander = sorted(by_subject)
    damaged = next(store / f["path"] for f in by_subject[victim] if f["challenge"] == 1)
    good_eeg, good_meta = read_windows(store, 1, subjects=[victim])
    # A rewrite goes through a temporary file and a rename: a new inode and a new mtime.
    untouched = {f["path"]: _identity(store / f["path"]) for f in by_subject[bystander]}

    # Flip bytes in the middle of the file, keeping its size: only the checksum can tell.
    data = bytearray(damaged.read_bytes())
    size = len(data)
    middle = size // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    damaged.write_bytes(bytes(data))
    assert damaged.stat().st_size == size
    manifest_sha = {f["path"]: f["sha256"] for f in files}
    assert _sha256(damaged) != manifest_sha[str(damaged.relative_to(store))]

    again = prepare([small_bids], store, PrepareOptions())
    # units counts every subject planned; reused those skipped: exactly one was redone.
    assert (again.units, again.reused) == (2, 1)
    assert again.windows == first.windows
    # The bystander's files were not rewritten...
    assert untouched and all(_identity(store / p) == ident for p, ident in untouched.items())
    # ...and the victim's file is whole again: it matches its (new) manifest checksum,
    # computed here from the bytes on disk, and holds the windows it held before.
    after = {f["path"]: f for f in load_manifest(store)["files"]}
    rel = str(damaged.relative_to(store))
    assert _sha256(damaged) == after[rel]["sha256"] == manifest_sha[rel]
    assert after[rel]["bytes"] == damaged.stat().st_size == size
    eeg, meta = read_windows(store, 1, subjects=[victim])
    np.testing.assert_array_equal(eeg, good_eeg)
    pd.testing.assert_frame_equal(meta, good_meta)
    assert all(_sha256(store / p) == f["sha256"] for p, f in after.items())


def test_changed_options_redo_the_store(small_bids, tmp_path):
    store = tmp_path / "store"
    prepare([small_bids], store, PrepareOptions())
    half = prepare([small_bids], store, PrepareOptions(dtype="float16"))
    assert half.reused == 0
    table = pq.read_table(next((store / "challenge1").rglob("*.parquet")))
    assert str(table.schema.field("eeg").type.value_type) == "halffloat"


def test_interrupted_run_keeps_finished_subjects_and_resumes(small_bids, tmp_path):
    store = tmp_path / "store"

    class StopAfterFirst:
        def start(self, total):
            pass

        def update(self, record):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare([small_bids], store, PrepareOptions(), progress=StopAfterFirst())
    manifest = load_manifest(store)
    assert manifest["complete"] is False and len(manifest["files"]) == 2
    assert not list(store.rglob("*.tmp*"))
    resumed = prepare([small_bids], store, PrepareOptions())
    assert resumed.reused == 1 and load_manifest(store)["complete"]


def test_parallel_workers_write_identical_files(small_bids, tmp_path):
    prepare([small_bids], tmp_path / "a", PrepareOptions(workers=1))
    prepare([small_bids], tmp_path / "b", PrepareOptions(workers=2))
    sums = [
        sorted((f["path"], f["sha256"]) for f in load_manifest(tmp_path / s)["files"])
        for s in ("a", "b")
    ]
    assert sums[0] == sums[1]


def test_resting_state_can_feed_challenge2(synthetic_bids, tmp_path):
    bids, _ = synthetic_bids
    store = tmp_path / "store"
    summary = prepare(
        [bids / "R1_L100_bdf"],
        store,
        PrepareOptions(challenges=(2,), c2_tasks=(CCD, "RestingState")),
        max_subjects=1,
    )
    _, meta = read_windows(store, 2)
    assert set(meta["task"]) == {CCD, "RestingState"}
    assert summary.windows == {"2": len(meta)}
    assert not (store / "challenge1").exists()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="challenges"):
        PrepareOptions(challenges=(3,))
    with pytest.raises(ValueError, match="dtype"):
        PrepareOptions(dtype="int8")


@pytest.mark.ray
def test_ray_data_reads_the_store(prepared_store):
    import ray

    from eegtune.distributed.runtime import start_ray

    start_ray(num_cpus=1)
    try:
        ds = ray.data.read_parquet(str(prepared_store / "challenge1"))
        batch = next(iter(ds.iter_batches(batch_size=8, batch_format="numpy")))
        assert batch["eeg"].shape == (8, 129, 200) and batch["eeg"].dtype == np.float32
        assert ds.count() == len(read_windows(prepared_store, 1)[1])
    finally:
        ray.shutdown()
    assert np.isfinite(batch["target"]).all()


def test_files_the_manifest_does_not_list_are_never_read(small_bids, tmp_path):
    from eegtune.data.store import store_files
    from eegtune.training.folds import store_subjects

    store = tmp_path / "store"
    prepare([small_bids], store, PrepareOptions())
    listed = [Path(f) for f in store_files(store, 1)]
    # A leftover of an older run (another release label) sits beside the real files.
    stray = store / "challenge1" / "R9" / listed[0].name
    stray.parent.mkdir()
    stray.write_bytes(listed[0].read_bytes())
    assert [Path(f) for f in store_files(store, 1)] == listed
    assert store_subjects(store, 1)["n_windows"].sum() == len(read_windows(store, 1)[1])
    assert set(store_subjects(store, 1)["release"]) == {"R1"}
