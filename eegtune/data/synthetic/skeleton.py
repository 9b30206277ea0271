"""Read a real release's metadata (participants, events, durations) as a skeleton.

``eegtune synth --skeleton ../shared/hbn-r1-metadata`` keeps the real participants and
event files and lays synthetic signals under them. BDF stores whole 1-second data
records, so each recording's real duration is rounded up to whole seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eegtune.data.bids import parse_recording_name
from eegtune.data.errors import DatasetError
from eegtune.data.tsv import read_tsv


@dataclass
class SkeletonRecording:
    task: str
    run: int | None
    events: pd.DataFrame
    duration: float


@dataclass
class SkeletonSubject:
    release: str
    subject: str
    row: dict
    recordings: list[SkeletonRecording]


def _duration(eeg_json: Path, events: pd.DataFrame) -> float:
    if eeg_json.exists():
        meta = json.loads(eeg_json.read_text())
        if "RecordingDuration" in meta:
            return float(math.ceil(float(meta["RecordingDuration"])))
    return float(math.ceil(pd.to_numeric(events["onset"]).max() + 5.0))


def read_skeleton(
    root: Path, tasks: tuple[str, ...], n_subjects: int | None
) -> list[SkeletonSubject]:
    root = Path(root)
    if not (root / "participants.tsv").exists():
        raise DatasetError(f"{root}: not a BIDS root (no participants.tsv)")
    participants = read_tsv(root / "participants.tsv", required=("participant_id",))
    rows = participants.to_dict("records")
    if n_subjects is not None:
        rows = rows[:n_subjects]
    subjects = []
    for row in rows:
        sub = str(row["participant_id"]).removeprefix("sub-")
        recordings = []
        for events_path in sorted((root / f"sub-{sub}" / "eeg").glob("*_events.tsv")):
            parsed = parse_recording_name(events_path.name.replace("_events.tsv", "_eeg.bdf"))
            if parsed is None or parsed[1] not in tasks:
                continue
            events = read_tsv(events_path, required=("onset", "value"))
            eeg_json = events_path.with_name(events_path.name.replace("_events.tsv", "_eeg.json"))
            recordings.append(
                SkeletonRecording(parsed[1], parsed[2], events, _duration(eeg_json, events))
            )
        release = str(row.get("release_number") or "R1")
        clean = {k: (None if pd.isna(v) else v) for k, v in row.items()}
        subjects.append(SkeletonSubject(release, sub, clean, recordings))
    return subjects
