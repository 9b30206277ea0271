"""BDF (24-bit European Data Format) header checks and a fast writer.

MNE reads BDF but cannot write it, and MNE does not notice a file that is shorter than
its header promises. The header check here runs before MNE so a truncated or corrupt
file is reported with the byte counts instead of being read as zeros or failing deep
inside MNE.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eegtune import storage
from eegtune.data.errors import RecordingError
from eegtune.errors import ConfigError

BDF_MAGIC = b"\xffBIOSEMI"
# ±80 mV physical range over a symmetric 24-bit digital range: about 0.0095 µV per step,
# far finer than EEG needs, and the range fits the 8-character header fields exactly.
PHYSICAL_MAX_UV = 80000.0
DIGITAL_MAX = 2**23 - 1


@dataclass(frozen=True)
class BdfHeader:
    n_channels: int
    n_records: int
    record_duration: float
    samples_per_record: tuple[int, ...]
    labels: tuple[str, ...]
    header_bytes: int

    @property
    def sfreq(self) -> float:
        return self.samples_per_record[0] / self.record_duration

    @property
    def expected_size(self) -> int:
        return self.header_bytes + 3 * self.n_records * sum(self.samples_per_record)


def _field(raw: bytes, path: Path, name: str) -> str:
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise RecordingError(path, f"corrupt BDF header: field {name!r} is not ASCII") from exc


def _number(text: str, path: Path, name: str, kind: type = int) -> float:
    try:
        return kind(text)
    except ValueError as exc:
        raise RecordingError(path, f"corrupt BDF header: {name} is {text!r}") from exc


def read_bdf_header(path: str | Path) -> BdfHeader:
    """Parse and validate a BDF header, including the file size it implies."""
    path = Path(path)
    size = path.stat().st_size
    if size < 256:
        raise RecordingError(path, f"truncated BDF: {size} bytes, shorter than a header")
    with open(path, "rb") as fh:
        fixed = fh.read(256)
        if fixed[:8] != BDF_MAGIC:
            raise RecordingError(path, "corrupt BDF: the file does not start with \\xffBIOSEMI")
        header_bytes = int(_number(_field(fixed[184:192], path, "header bytes"), path, "header"))
        n_records = int(_number(_field(fixed[236:244], path, "records"), path, "n_records"))
        duration = float(_number(_field(fixed[244:252], path, "duration"), path, "duration", float))
        ns = int(_number(_field(fixed[252:256], path, "signals"), path, "n_signals"))
        if ns <= 0 or header_bytes != 256 * (ns + 1):
            raise RecordingError(path, f"corrupt BDF header: {ns} signals, {header_bytes} bytes")
        if size < header_bytes:
            raise RecordingError(path, f"truncated BDF: {size} bytes, header needs {header_bytes}")
        rest = fh.read(256 * ns)
    labels = tuple(_field(rest[i * 16 : (i + 1) * 16], path, "label") for i in range(ns))
    off = ns * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80)
    spr = tuple(
        int(_number(_field(rest[off + i * 8 : off + (i + 1) * 8], path, "spr"), path, "spr"))
        for i in range(ns)
    )
    header = BdfHeader(ns, n_records, duration, spr, labels, header_bytes)
    if n_records == 0 or size == header_bytes:
        raise RecordingError(path, "zero-length recording: the BDF holds no data records")
    if n_records < 0:
        raise RecordingError(path, "corrupt BDF header: unknown record count (-1)")
    if duration <= 0:
        raise RecordingError(path, f"corrupt BDF header: record duration {duration}")
    if size < header.expected_size:
        raise RecordingError(
            path,
            f"truncated BDF: header promises {n_records} records ({header.expected_size} "
            f"bytes) but the file holds {size} bytes",
        )
    return header


def _fit(value: str | int | float, width: int) -> bytes:
    text = str(value)
    if isinstance(value, float):
        text = f"{value:.{max(width - 2, 1)}g}"[:width]
    return text.encode("ascii")[:width].ljust(width)


def write_bdf(
    path: str | Path,
    data_uv: np.ndarray,
    sfreq: float,
    ch_names: list[str],
) -> None:
    """Write ``data_uv`` (n_channels, n_times) in µV as BDF, atomically.

    The signal is padded with zeros to whole 1-second data records, as BDF needs.
    """
    path = Path(path)
    n_ch, n_times = data_uv.shape
    spr = int(round(sfreq))
    if abs(spr - sfreq) > 1e-9:
        raise ConfigError(f"BDF writer needs an integer sampling rate, got {sfreq}")
    n_rec = -(-n_times // spr)
    digital = np.zeros((n_ch, n_rec * spr), dtype=np.int32)
    scale = DIGITAL_MAX / PHYSICAL_MAX_UV
    digital[:, :n_times] = np.clip(np.rint(data_uv * scale), -DIGITAL_MAX, DIGITAL_MAX)
    dmin, dmax = -DIGITAL_MAX, DIGITAL_MAX
    pmin, pmax = -PHYSICAL_MAX_UV, PHYSICAL_MAX_UV

    start = dt.datetime(2020, 1, 1)
    head = bytearray()
    head += BDF_MAGIC
    head += _fit("X X X X", 80) + _fit("Startdate 01-JAN-2020 X eegtune-synthetic X", 80)
    head += _fit(start.strftime("%d.%m.%y"), 8) + _fit(start.strftime("%H.%M.%S"), 8)
    head += _fit(256 * (n_ch + 1), 8) + _fit("24BIT", 44)
    head += _fit(n_rec, 8) + _fit(1, 8) + _fit(n_ch, 4)
    for fields, width in (
        (ch_names, 16),
        (["AgAgCl electrode"] * n_ch, 80),
        (["uV"] * n_ch, 8),
        ([f"{pmin:.0f}"] * n_ch, 8),
        ([f"{pmax:.0f}"] * n_ch, 8),
        ([dmin] * n_ch, 8),
        ([dmax] * n_ch, 8),
        (["HP:0.5Hz LP:50Hz"] * n_ch, 80),
        ([spr] * n_ch, 8),
        ([""] * n_ch, 32),
    ):
        for value in fields:
            head += _fit(value, width)

    # Records are channel-major inside each record: (record, channel, sample) in 24-bit LE.
    blocks = digital.reshape(n_ch, n_rec, spr).transpose(1, 0, 2).astype("<i4")
    body = blocks.view(np.uint8).reshape(-1, 4)[:, :3]
    with storage.replacing(path, fsync=False) as tmp, open(tmp, "wb") as fh:
        fh.write(bytes(head))
        fh.write(np.ascontiguousarray(body).tobytes())
