"""Find the recordings of an HBN-EEG BIDS release and join participants.tsv.

A release root holds ``participants.tsv`` and ``sub-<ID>/eeg/`` folders with
``sub-<ID>_task-<Task>[_run-<k>]_eeg.{bdf,set}`` plus their ``_events.tsv``,
``_channels.tsv`` and ``_eeg.json`` sidecars (CHALLENGE.md, "BIDS paths").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from eegtune.data.errors import DatasetError, RecordingError
from eegtune.data.tsv import read_tsv

SCORE_COLUMNS = ("p_factor", "attention", "internalizing", "externalizing")
PARTICIPANT_COLUMNS = (
    "participant_id",
    "release_number",
    "sex",
    "age",
    "ehq_total",
    "commercial_use",
    "full_pheno",
    *SCORE_COLUMNS,
)
# participants.tsv task-availability column -> (task, run)
TASK_COLUMNS: dict[str, tuple[str, int | None]] = {
    "RestingState": ("RestingState", None),
    "DespicableMe": ("DespicableMe", None),
    "FunwithFractals": ("FunwithFractals", None),
    "ThePresent": ("ThePresent", None),
    "DiaryOfAWimpyKid": ("DiaryOfAWimpyKid", None),
    **{f"contrastChangeDetection_{k}": ("contrastChangeDetection", k) for k in (1, 2, 3)},
    **{f"surroundSupp_{k}": ("surroundSupp", k) for k in (1, 2)},
    "seqLearning6target": ("seqLearning6target", None),
    "seqLearning8target": ("seqLearning8target", None),
    "symbolSearch": ("symbolSearch", None),
}
SIGNAL_SUFFIXES = (".bdf", ".set", ".edf")
_NAME = re.compile(
    r"^sub-(?P<sub>[A-Za-z0-9]+)(?:_ses-[A-Za-z0-9]+)?_task-(?P<task>[A-Za-z0-9]+)"
    r"(?:_acq-[A-Za-z0-9]+)?(?:_run-(?P<run>\d+))?_eeg\.(?P<ext>bdf|set|edf)$"
)


def recording_stem(subject: str, task: str, run: int | None) -> str:
    return f"sub-{subject}_task-{task}" + (f"_run-{run}" if run is not None else "")


def parse_recording_name(name: str) -> tuple[str, str, int | None] | None:
    """(subject, task, run) from a BIDS EEG file name, or None if it is not one."""
    m = _NAME.match(name)
    if not m:
        return None
    return m["sub"], m["task"], int(m["run"]) if m["run"] else None


@dataclass(frozen=True)
class Participant:
    subject: str
    release: str | None
    age: float
    sex: str | None
    scores: dict[str, float]  # NaN where participants.tsv says n/a


@dataclass(frozen=True)
class Recording:
    path: Path
    subject: str
    task: str
    run: int | None
    root: Path

    @property
    def stem(self) -> str:
        return recording_stem(self.subject, self.task, self.run)

    def sidecar(self, suffix: str) -> Path:
        return self.path.with_name(f"{self.stem}_{suffix}")

    @property
    def events_path(self) -> Path:
        return self.sidecar("events.tsv")


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def read_participants(root: Path) -> dict[str, Participant]:
    """participants.tsv keyed by subject ID (without ``sub-``)."""
    path = Path(root) / "participants.tsv"
    try:
        table = read_tsv(path, required=("participant_id",))
    except RecordingError as exc:
        raise DatasetError(f"cannot read {exc.path}: {exc.problem}") from exc
    out = {}
    for row in table.to_dict("records"):
        sub = str(row["participant_id"]).removeprefix("sub-")
        release = row.get("release_number")
        out[sub] = Participant(
            subject=sub,
            release=None if release is None or release != release else str(release),
            age=_float(row.get("age")),
            sex=None if row.get("sex") != row.get("sex") else row.get("sex"),
            scores={c: _float(row.get(c)) for c in SCORE_COLUMNS},
        )
    return out


def release_of(root: Path, participants: dict[str, Participant]) -> str:
    """The release a root holds: participants.tsv's release_number, else the folder name."""
    counts = Counter(p.release for p in participants.values() if p.release)
    if counts:
        return counts.most_common(1)[0][0]
    m = re.match(r"(R\d+)", Path(root).resolve().name)
    return m.group(1) if m else Path(root).resolve().name


def find_bids_roots(path: Path) -> list[Path]:
    """``path`` itself if it is a BIDS root, else the BIDS roots directly inside it."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such directory")
    if (path / "participants.tsv").exists():
        return [path]
    roots = sorted(p for p in path.iterdir() if (p / "participants.tsv").exists())
    if not roots:
        raise DatasetError(f"{path}: no participants.tsv here or in its sub-folders")
    return roots


def discover_recordings(root: Path, tasks: set[str] | None = None) -> list[Recording]:
    """All EEG recordings under ``root`` for ``tasks`` (all tasks when None), sorted."""
    found: dict[tuple[str, str, int | None], Recording] = {}
    for sub_dir in sorted(Path(root).glob("sub-*")):
        eeg_dir = sub_dir / "eeg"
        if not eeg_dir.is_dir():
            continue
        for path in sorted(eeg_dir.iterdir()):
            parsed = parse_recording_name(path.name)
            if parsed is None or (tasks is not None and parsed[1] not in tasks):
                continue
            key = parsed
            # Prefer BDF when a folder holds the same recording in two formats.
            if key in found and found[key].path.suffix == ".bdf":
                continue
            found[key] = Recording(path, parsed[0], parsed[1], parsed[2], Path(root))
    return [found[k] for k in sorted(found, key=lambda k: (k[0], k[1], k[2] or 0))]
