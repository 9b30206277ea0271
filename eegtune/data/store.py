"""The Parquet window store: one file per (release, subject, challenge) plus a manifest.

Layout::

    STORE/manifest.json
    STORE/challenge1/<release>/sub-<ID>.parquet   # (129, 200) windows, target = RT (s)
    STORE/challenge2/<release>/sub-<ID>.parquet   # (129, 400) windows, target = externalizing
    STORE/_units/<release>/sub-<ID>.json          # what made those files (for resuming)

The signal is an Arrow ``fixed_shape_tensor`` column, so ``ray.data.read_parquet`` yields
(batch, 129, T) arrays and pandas yields one flat array per row, both without eegtune.
Every file is written under a temporary name and renamed when complete. ``STORE`` may
be a local path or an object-storage URI (:mod:`eegtune.storage`); paths here are
strings for that reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from eegtune import storage
from eegtune.data.signal import CHANNELS
from eegtune.errors import MissingFileError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}


def relative_output(challenge: int, release: str, subject: str) -> str:
    return f"challenge{challenge}/{release}/sub-{subject}.parquet"


def output_path(store: str | Path, challenge: int, release: str, subject: str) -> str:
    return storage.join(store, relative_output(challenge, release, subject))


def unit_path(store: str | Path, release: str, subject: str) -> str:
    return storage.join(store, "_units", release, f"sub-{subject}.json")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with storage.open_input(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ChannelSums:
    """Running per-channel sums, so the store's mean and std need no second pass."""

    count: int
    total: np.ndarray  # (129,) float64
    total_sq: np.ndarray  # (129,) float64

    @classmethod
    def empty(cls) -> ChannelSums:
        return cls(0, np.zeros(len(CHANNELS)), np.zeros(len(CHANNELS)))

    @classmethod
    def of(cls, eeg: np.ndarray) -> ChannelSums:
        x = eeg.astype(np.float64, copy=False)
        return cls(
            int(eeg.shape[0] * eeg.shape[2]),
            x.sum(axis=(0, 2)),
            np.einsum("nct,nct->c", x, x),
        )

    def __add__(self, other: ChannelSums) -> ChannelSums:
        return ChannelSums(
            self.count + other.count, self.total + other.total, self.total_sq + other.total_sq
        )

    def to_json(self) -> dict:
        return {"count": self.count, "sum": self.total.tolist(), "sum_sq": self.total_sq.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> ChannelSums:
        return cls(int(d["count"]), np.asarray(d["sum"]), np.asarray(d["sum_sq"]))

    def mean_std(self) -> tuple[list[float], list[float]]:
        if self.count == 0:
            return [], []
        mean = self.total / self.count
        var = np.maximum(self.total_sq / self.count - mean**2, 0.0)
        return mean.tolist(), np.sqrt(var).tolist()


def windows_table(eeg: np.ndarray, meta: pd.DataFrame, dtype: str, challenge: int) -> pa.Table:
    np_dtype, _ = DTYPES[dtype]
    tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(eeg, dtype=np_dtype))
    table = pa.Table.from_pandas(meta, preserve_index=False).append_column("eeg", tensor)
    metadata = {
        b"eegtune.schema_version": str(SCHEMA_VERSION).encode(),
        b"eegtune.challenge": str(challenge).encode(),
        b"eegtune.sfreq": b"100",
        b"eegtune.channels": ",".join(CHANNELS).encode(),
        b"eegtune.eeg_shape": json.dumps(list(eeg.shape[1:])).encode(),
    }
    return table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})


# Windows per Parquet row group: a streaming reader decodes one group at a time, so this
# bounds what each open file costs it (256 Challenge 2 windows: 53 MB as float32).
ROW_GROUP_WINDOWS = 256


def write_table_atomic(table: pa.Table, path: str | Path) -> dict:
    """Write a Parquet file whole or not at all; return its manifest record.

    It is encoded in memory first (one subject's windows: tens of MB), so the checksum
    needs no second read and an object store receives it in one upload.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression="zstd", compression_level=1, row_group_size=ROW_GROUP_WINDOWS
    )
    data = sink.getvalue().to_pybytes()
    storage.write_bytes(path, data)
    return {"rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def load_manifest(store: str | Path) -> dict | None:
    path = storage.join(store, MANIFEST)
    if not storage.exists(path):
        return None
    return json.loads(storage.read_text(path))


def save_manifest(store: str | Path, manifest: dict) -> None:
    storage.write_text(storage.join(store, MANIFEST), json.dumps(manifest, indent=1))


def store_files(store: str | Path, challenge: int, subjects: list[str] | None = None) -> list[str]:
    """The window files the manifest lists for ``challenge`` (optionally some subjects).

    The manifest, not a directory listing, is the store's truth: a file left by an older
    run with other options or roots is never read back as training data.
    """
    manifest = load_manifest(store)
    if manifest is None:
        raise MissingFileError(f"{store}: no manifest.json (run eegtune prepare first)")
    entries = [f for f in manifest["files"] if f["challenge"] == challenge]
    if subjects is not None:
        wanted = set(subjects)
        entries = [f for f in entries if f["subject"] in wanted]
    if not entries:
        raise MissingFileError(f"{store}: no challenge {challenge} windows (run eegtune prepare)")
    return [storage.join(store, f["path"]) for f in sorted(entries, key=lambda f: f["path"])]


def read_window_files(paths: list[str], columns: list[str]) -> tuple[Any, ...]:
    """Each file's window count, then each file's windows as ``{"eeg": array, "meta":
    frame}``: ``(n_0, …, n_k, windows_0, …, windows_k)``, so that a Ray task with
    ``num_returns=2k`` hands back small counts and large arrays as separate objects.
    Torch-free, so the processes that run it start quickly."""
    counts, payloads = [], []
    for path in paths:
        try:
            table = pq.read_table(path, columns=[*columns, "eeg"])
        except Exception as exc:  # the driver's error must name the file
            raise OSError(f"{path}: cannot read its windows ({exc})") from exc
        eeg = table.column("eeg").combine_chunks().to_numpy_ndarray()
        counts.append(len(eeg))
        payloads.append({"eeg": eeg, "meta": table.drop(["eeg"]).to_pandas()})
    return (*counts, *payloads)


def read_windows(
    store: str | Path,
    challenge: int,
    subjects: list[str] | None = None,
    columns: list[str] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """All windows of one challenge as (eeg array, metadata frame); for small stores and tests."""
    files = store_files(store, challenge, subjects)
    tables = [
        pq.read_table(f, columns=None if columns is None else [*columns, "eeg"]) for f in files
    ]
    table = pa.concat_tables(tables)
    eeg = table.column("eeg").combine_chunks().to_numpy_ndarray()
    meta = table.drop(["eeg"]).to_pandas()
    return eeg, meta
