"""Every kind of bad input: a clear message naming the file, a recorded skip, no loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eegtune.cli import main
from eegtune.data.bdf import write_bdf
from eegtune.data.bids import discover_recordings
from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.store import load_manifest
from eegtune.data.tsv import read_events, read_tsv
from tests.conftest import CCD


def first_run(root):
    return discover_recordings(root, {CCD})[0]


def truncate(root):
    rec = first_run(root)
    data = rec.path.read_bytes()
    rec.path.write_bytes(data[: len(data) // 2])
    return rec.path, "truncated BDF", [1, 2]


def corrupt(root):
    rec = first_run(root)
    data = bytearray(rec.path.read_bytes())
    data[:8] = b"GARBAGE!"
    rec.path.write_bytes(bytes(data))
    return rec.path, "corrupt BDF", [1, 2]


def zero_length(root):
    rec = first_run(root)
    write_bdf(
        rec.path, np.zeros((129, 0), np.float32), 100, [f"E{i}" for i in range(1, 129)] + ["Cz"]
    )
    return rec.path, "zero-length", [1, 2]


def missing_events(root):
    rec = first_run(root)
    rec.events_path.unlink()
    return rec.events_path, "file is missing", [1]


def missing_participant_row(root):
    rec = first_run(root)
    table = read_tsv(root / "participants.tsv")
    table = table[table["participant_id"] != f"sub-{rec.subject}"]
    table.to_csv(root / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return rec.path, f"no row for sub-{rec.subject} in", [1, 2]


def nan_target(root):
    rec = first_run(root)
    table = read_tsv(root / "participants.tsv")
    table.loc[table["participant_id"] == f"sub-{rec.subject}", "externalizing"] = np.nan
    table.to_csv(root / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return rec.path, "NaN target", [2]


def channels(n):
    def damage(root):
        rec = first_run(root)
        names = [f"E{i}" for i in range(1, n + 1)]
        write_bdf(rec.path, np.zeros((n, 3000), np.float32), 100, names)
        return rec.path, f"has {n} channels, expected 129", [1, 2]

    damage.__name__ = f"channels_{n}"
    return damage


def wrong_rate(root):
    rec = first_run(root)
    names = [f"E{i}" for i in range(1, 129)] + ["Cz"]
    write_bdf(rec.path, np.zeros((129, 60000), np.float32), 250, names)
    return rec.path, "250 Hz is not 100 or 500 Hz", [1, 2]


def no_scorable_trials(root):
    rec = first_run(root)
    events = read_events(rec.events_path)
    events = events[~events["value"].str.endswith("_buttonPress")]
    events.to_csv(rec.events_path, sep="\t", index=False, na_rep="n/a")
    return rec.events_path, "no scorable trials", [1]


def events_past_end(root):
    rec = first_run(root)
    events = read_events(rec.events_path)
    late = pd.DataFrame([{**events.iloc[-1].to_dict(), "onset": 99999.0}])
    pd.concat([events, late]).to_csv(rec.events_path, sep="\t", index=False, na_rep="n/a")
    return rec.events_path, "events run to 99999.000 s", [1]


def non_utf8_events(root):
    rec = first_run(root)
    text = rec.events_path.read_text().replace("smiley_face", "smiley_fäce", 1)
    rec.events_path.write_bytes(text.encode("latin-1"))
    return rec.events_path, "not UTF-8", [1]


CASES = [
    truncate,
    corrupt,
    zero_length,
    missing_events,
    missing_participant_row,
    nan_target,
    channels(128),
    channels(130),
    wrong_rate,
    no_scorable_trials,
    events_past_end,
    non_utf8_events,
]


@pytest.mark.parametrize("damage", CASES, ids=lambda f: f.__name__)
def test_bad_recording_is_skipped_named_and_recorded(damage, small_bids, tmp_path, capsys):
    path, reason, challenges = damage(small_bids)
    store = tmp_path / "store"
    assert main(["prepare", "--bids", str(small_bids), "--out", str(store), "--quiet"]) == 0
    manifest = load_manifest(store)
    hits = [s for s in manifest["skipped"] if s["file"] == str(path) and reason in s["reason"]]
    assert hits, manifest["skipped"]
    assert sorted({c for s in hits for c in s["challenges"]}) == challenges
    printed = capsys.readouterr().out
    assert str(path) in printed and reason in printed  # the summary names it too
    # Everything else was still prepared: the other subject has all its windows.
    assert manifest["challenges"]["1"]["subjects"] >= 1
    assert not list(store.rglob("*.tmp*"))

    # --strict turns the skip into an error exit that names the file.
    strict_store = tmp_path / "strict"
    code = main(
        ["prepare", "--bids", str(small_bids), "--out", str(strict_store), "--quiet", "--strict"]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and reason in err


def test_subject_in_two_releases_is_kept_once(small_bids, copy_tree, tmp_path):
    other = copy_tree(small_bids, "R2_L100_bdf")
    table = read_tsv(other / "participants.tsv")
    table["release_number"] = "R2"
    table.to_csv(other / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    store = tmp_path / "store"
    summary = prepare([small_bids, other], store, PrepareOptions())
    assert summary.units == 2
    dup = [s for s in summary.skipped if "also appears in release R1" in s["reason"]]
    assert len(dup) == 6 and all(s["file"].startswith(str(other)) for s in dup)
    assert load_manifest(store)["challenges"]["1"]["releases"] == ["R1"]


def test_a_failed_redo_does_not_touch_other_subjects_files(small_bids, tmp_path):
    store = tmp_path / "store"
    prepare([small_bids], store, PrepareOptions())
    before = {
        f["subject"]: f["sha256"] for f in load_manifest(store)["files"] if f["challenge"] == 1
    }
    _, _, _ = truncate(small_bids)
    prepare([small_bids], store, PrepareOptions())
    after = {
        f["subject"]: f["sha256"] for f in load_manifest(store)["files"] if f["challenge"] == 1
    }
    damaged = first_run(small_bids).subject
    other = next(s for s in before if s != damaged)
    assert after[other] == before[other]
    assert after[damaged] != before[damaged]  # rewritten without the truncated run


def test_unreadable_participants_is_a_clear_error(small_bids, tmp_path, capsys):
    (small_bids / "participants.tsv").write_bytes(b"participant_id\tage\nsub-\xff\x00\t7\n")
    code = main(["prepare", "--bids", str(small_bids), "--out", str(tmp_path / "s"), "--quiet"])
    assert code == 2
    assert "participants.tsv" in capsys.readouterr().err


def test_missing_bids_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["prepare", "--bids", str(tmp_path / "nope"), "--out", str(tmp_path / "s")])
    assert code == 2 and "no such directory" in capsys.readouterr().err
