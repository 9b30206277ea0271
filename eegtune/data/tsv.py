"""Strict reading of BIDS TSV sidecars (events.tsv, participants.tsv).

BIDS TSVs are UTF-8 with ``n/a`` for missing values. A file in another encoding is an
error that names the file and the byte, not a silently mangled table.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from eegtune.data.errors import RecordingError


def read_tsv(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a BIDS TSV as strings with ``n/a`` kept as NaN; check required columns."""
    path = Path(path)
    if not path.exists():
        raise RecordingError(path, "file is missing")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordingError(
            path, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from exc
    if not text.strip():
        raise RecordingError(path, "file is empty")
    try:
        table = pd.read_csv(
            io.StringIO(text), sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False
        )
    except Exception as exc:  # pandas raises ParserError and friends
        raise RecordingError(path, f"malformed TSV: {exc}") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise RecordingError(path, f"missing column(s) {', '.join(missing)}")
    return table


def read_events(path: str | Path) -> pd.DataFrame:
    """An events.tsv with numeric ``onset`` (seconds) and string ``value``."""
    table = read_tsv(path, required=("onset", "value"))
    onset = pd.to_numeric(table["onset"], errors="coerce")
    if onset.isna().any():
        row = int(onset.isna().to_numpy().argmax())
        raise RecordingError(
            path, f"non-numeric onset {table['onset'].iloc[row]!r} at row {row + 2}"
        )
    table["onset"] = onset.astype(float)
    table["value"] = table["value"].fillna("n/a")
    return table
