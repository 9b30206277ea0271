"""``eegtune prepare``: BIDS releases -> Parquet window store, resumable and atomic.

The unit of work is one subject of one release: its recordings are read once and give
that subject's Challenge 1 and Challenge 2 files. A unit finishes by writing its record
under ``_units/``; a rerun skips every unit whose record, sources and outputs still
match, so an interrupted run resumes where it stopped and loses nothing it wrote.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from eegtune import storage
from eegtune.data.bids import (
    Participant,
    Recording,
    discover_recordings,
    find_bids_roots,
    read_participants,
    release_of,
)
from eegtune.data.errors import RecordingError
from eegtune.data.manifest import build_manifest, load_unit, save_unit
from eegtune.data.signal import read_signal
from eegtune.data.store import (
    DTYPES,
    SCHEMA_VERSION,
    ChannelSums,
    output_path,
    relative_output,
    save_manifest,
    sha256_file,
    windows_table,
    write_table_atomic,
)
from eegtune.data.trials import scored_trials
from eegtune.data.tsv import read_events
from eegtune.data.windows import Windows, check_events_within, cut_challenge1, cut_challenge2
from eegtune.errors import ConfigError, EegtuneError

CCD = "contrastChangeDetection"


class StrictModeError(EegtuneError):
    """Raised under ``--strict`` for the first recording that would have been skipped."""


@dataclass(frozen=True)
class PrepareOptions:
    challenges: tuple[int, ...] = (1, 2)
    c2_tasks: tuple[str, ...] = (CCD,)
    dtype: str = "float32"
    strict: bool = False
    workers: int = 1

    def __post_init__(self) -> None:
        if not set(self.challenges) <= {1, 2} or not self.challenges:
            raise ConfigError(f"challenges must be 1, 2 or both, got {self.challenges}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")

    def fingerprint(self) -> dict:
        """What changes the contents of the store (workers and strictness do not)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "challenges": sorted(self.challenges),
            "c2_tasks": sorted(self.c2_tasks),
            "dtype": self.dtype,
        }

    def wants(self, task: str) -> list[int]:
        out = []
        if 1 in self.challenges and task == CCD:
            out.append(1)
        if 2 in self.challenges and task in self.c2_tasks:
            out.append(2)
        return out


@dataclass(frozen=True)
class SubjectUnit:
    release: str
    subject: str
    root: Path
    participant: Participant | None
    recordings: tuple[Recording, ...]


def plan_units(
    roots: list[Path], options: PrepareOptions
) -> tuple[list[SubjectUnit], list[dict], list[dict]]:
    """Units to prepare, the recordings skipped while planning, and the roots' releases."""
    tasks = {CCD} | set(options.c2_tasks)
    units: list[SubjectUnit] = []
    skipped: list[dict] = []
    sources: list[dict] = []
    seen: dict[str, tuple[str, Path]] = {}
    for given in roots:
        for root in find_bids_roots(Path(given)):
            participants = read_participants(root)
            release = release_of(root, participants)
            sources.append({"root": str(root), "release": release})
            by_subject: dict[str, list[Recording]] = {}
            for rec in discover_recordings(root, tasks):
                if options.wants(rec.task):
                    by_subject.setdefault(rec.subject, []).append(rec)
            for subject, recs in by_subject.items():
                participant = participants.get(subject)
                sub_release = (participant.release if participant else None) or release
                if subject in seen:
                    first_release, first_root = seen[subject]
                    for rec in recs:
                        skipped.append(
                            _skip(
                                rec.path,
                                options.wants(rec.task),
                                f"subject sub-{subject} also appears in release {first_release} "
                                f"({first_root}); a subject must belong to one release only",
                            )
                        )
                    continue
                seen[subject] = (sub_release, root)
                units.append(SubjectUnit(sub_release, subject, root, participant, tuple(recs)))
    return units, skipped, sources


def _skip(path: Path | str, challenges: list[int], reason: str) -> dict:
    return {"file": str(path), "challenges": challenges, "reason": reason}


def _fingerprint(path: Path) -> dict | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return {"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def unit_sources(unit: SubjectUnit) -> list[dict]:
    """Size and mtime of every file the unit reads; a change forces a redo on rerun."""
    paths = [unit.root / "participants.tsv"]
    for rec in unit.recordings:
        paths += [rec.path, rec.events_path, rec.path.with_suffix(".fdt")]
    return [fp for fp in (_fingerprint(p) for p in paths) if fp is not None]


def unit_is_current(store: str | Path, unit: SubjectUnit, options: PrepareOptions) -> dict | None:
    """The unit's saved record if its options, sources and outputs all still match."""
    record = load_unit(store, unit.release, unit.subject)
    if record is None or record.get("options") != options.fingerprint():
        return None
    if record.get("sources") != unit_sources(unit):
        return None
    for out in record.get("outputs", {}).values():
        path = storage.join(store, out["path"])
        if not storage.exists(path) or storage.size(path) != out["bytes"]:
            return None
        if sha256_file(path) != out["sha256"]:
            return None
    return record


def challenge1_windows(rec: Recording, signal) -> Windows:
    events = read_events(rec.events_path)
    check_events_within(signal, events, rec.events_path)
    trials = scored_trials(events)
    if trials.empty:
        raise RecordingError(
            rec.events_path, "CCD run with no scorable trials (no target followed by a press)"
        )
    windows, _ = cut_challenge1(signal, trials)
    if len(windows) == 0:
        raise RecordingError(rec.path, "no trial window fits inside the signal")
    return windows


def _recording_columns(unit: SubjectUnit, rec: Recording, n: int) -> pd.DataFrame:
    p = unit.participant
    assert p is not None
    return pd.DataFrame(
        {
            "subject": [unit.subject] * n,
            "release": [unit.release] * n,
            "task": [rec.task] * n,
            "run": pd.array([rec.run] * n, dtype="Int16"),
            "recording": [rec.path.name] * n,
            "age": np.full(n, p.age, dtype=np.float32),
            "sex": [p.sex] * n,
        }
    )


def process_unit(unit: SubjectUnit, store: str | Path, options: PrepareOptions) -> dict:
    """Read one subject's recordings, write its window files and its unit record."""
    parts: dict[int, list[tuple[Recording, Windows]]] = {1: [], 2: []}
    skipped: list[dict] = []
    participants_tsv = unit.root / "participants.tsv"
    for rec in unit.recordings:
        wanted = options.wants(rec.task)
        if unit.participant is None:
            reason = f"no row for sub-{unit.subject} in {participants_tsv}"
            skipped.append(_skip(rec.path, wanted, reason))
            continue
        try:
            signal = read_signal(rec.path)
        except RecordingError as exc:
            skipped.append(_skip(exc.path, wanted, exc.problem))
            continue
        if 1 in wanted:
            try:
                parts[1].append((rec, challenge1_windows(rec, signal)))
            except RecordingError as exc:
                skipped.append(_skip(exc.path, [1], exc.problem))
        if 2 in wanted:
            target = unit.participant.scores["externalizing"]
            if not np.isfinite(target):
                reason = (
                    f"externalizing is n/a (NaN target) for sub-{unit.subject} "
                    f"in {participants_tsv}"
                )
                skipped.append(_skip(rec.path, [2], reason))
            elif signal.duration < 4.0:
                reason = f"only {signal.duration:.2f} s of signal; Challenge 2 needs at least 4 s"
                skipped.append(_skip(rec.path, [2], reason))
            else:
                parts[2].append((rec, cut_challenge2(signal, target)))

    outputs, stats = {}, {}
    for challenge in options.challenges:
        path = output_path(store, challenge, unit.release, unit.subject)
        if not parts[challenge]:
            # A redo that now yields nothing must not leave the old file behind.
            storage.remove(path)
            continue
        eeg = np.concatenate([w.eeg for _, w in parts[challenge]])
        meta = pd.concat(
            [
                pd.concat([_recording_columns(unit, rec, len(w)), w.meta], axis=1)
                for rec, w in parts[challenge]
            ],
            ignore_index=True,
        )
        info = write_table_atomic(windows_table(eeg, meta, options.dtype, challenge), path)
        outputs[str(challenge)] = {
            "path": relative_output(challenge, unit.release, unit.subject),
            **info,
        }
        y = meta["target"].to_numpy(dtype=np.float64)
        stats[str(challenge)] = {
            "channels": ChannelSums.of(eeg).to_json(),
            "target": {
                "n": len(y),
                "sum": y.sum(),
                "sum_sq": (y**2).sum(),
                "min": y.min(),
                "max": y.max(),
            },
        }
    record = {
        "release": unit.release,
        "subject": unit.subject,
        "root": str(unit.root),
        "options": options.fingerprint(),
        "sources": unit_sources(unit),
        "n_recordings": len(unit.recordings),
        "outputs": outputs,
        "stats": stats,
        "skipped": skipped,
    }
    save_unit(store, record)
    return record


UnitRunner = Callable[[list["SubjectUnit"], str, PrepareOptions], Iterator[dict]]


def run_units_locally(
    units: list[SubjectUnit], store: str, options: PrepareOptions
) -> Iterator[dict]:
    """Process units here, with ``options.workers`` processes; yield records as they finish."""
    if options.workers == 1 or len(units) <= 1:
        for unit in units:
            yield process_unit(unit, store, options)
        return
    # A forkserver imports the heavy modules once and forks clean workers from that state;
    # plain fork would copy pyarrow's and tqdm's threads, spawn would re-import per worker.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["eegtune.data.prepare"])
    with ProcessPoolExecutor(options.workers, mp_context=ctx) as pool:
        pending = {pool.submit(process_unit, u, store, options) for u in units}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()


class ProgressSink(Protocol):
    """Receives the number of recordings up front, then every finished unit record."""

    def start(self, total_recordings: int) -> None: ...

    def update(self, record: dict) -> None: ...


@dataclass
class PrepareSummary:
    store: str
    units: int
    reused: int
    recordings: int
    windows: dict[str, int]
    skipped: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(
    roots: list[Path],
    store: str | Path,
    options: PrepareOptions,
    progress: ProgressSink | None = None,
    max_subjects: int | None = None,
    run_units: UnitRunner = run_units_locally,
) -> PrepareSummary:
    """Prepare ``roots`` into ``store`` (a path or a URI); ``max_subjects`` limits a smoke
    test; ``run_units`` processes the units that are not current (here, or elsewhere: see
    ``eegtune.distributed.prepare_on_ray``)."""
    store = storage.normalize(store)
    storage.makedirs(store)
    units, plan_skips, sources = plan_units(roots, options)
    if max_subjects is not None:
        units = units[:max_subjects]
    if progress:
        progress.start(sum(len(u.recordings) for u in units))
    if options.strict and plan_skips:
        s = plan_skips[0]
        raise StrictModeError(f"{s['file']}: {s['reason']}")
    records: list[dict] = []
    todo: list[SubjectUnit] = []
    for unit in units:
        current = unit_is_current(store, unit, options)
        if current:
            records.append(current)
        else:
            todo.append(unit)
    reused = len(records)
    for record in records:
        if progress:
            progress.update({**record, "reused": True})

    def finish(complete: bool) -> dict:
        manifest = build_manifest(records, plan_skips, sources, options.fingerprint(), complete)
        save_manifest(store, manifest)
        return manifest

    try:
        for record in run_units(todo, store, options):
            records.append(record)
            if progress:
                progress.update({**record, "reused": False})
            if options.strict and record["skipped"]:
                s = record["skipped"][0]
                finish(complete=False)
                raise StrictModeError(f"{s['file']}: {s['reason']}")
    except KeyboardInterrupt:
        finish(complete=False)
        raise
    manifest = finish(complete=True)
    return PrepareSummary(
        store=str(store),
        units=len(units),
        reused=reused,
        recordings=sum(r["n_recordings"] for r in records),
        windows={k: v["windows"] for k, v in manifest["challenges"].items()},
        skipped=manifest["skipped"],
    )
