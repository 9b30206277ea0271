"""Memory or stream: how a fold's windows reach training, and the arithmetic that picks.

- **memory**: the windows sit in memory once (in ``eegtune cv``, the fold's windows in
  this process; under Ray, every window once per node in Ray's shared object store) and
  each epoch draws a full seeded permutation. Fastest, and bit-identical between the two.
- **stream**: the fold's Parquet files are read batch by batch every epoch through a
  shuffle buffer (:mod:`eegtune.training.fold_stream`), in bounded memory.
- **auto**: memory when the windows fit in the memory set aside for them, else stream;
  the choice and its numbers are printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from eegtune.data.store import load_manifest, store_files
from eegtune.errors import ConfigError

DATA_MODES = ("auto", "memory", "stream")
# cv in memory mode holds a fold's fit, inner-validation and (after training) held-out
# windows as float32 at once; leave the other half of free memory for everything else.
CV_MEMORY_FRACTION = 0.5


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@dataclass(frozen=True)
class StoreSize:
    """How much a challenge's windows take, as stored and as float32."""

    windows: int
    window_shape: tuple[int, int]
    stored_itemsize: int

    @property
    def window_bytes(self) -> int:
        """One window as float32, as training holds it."""
        return int(np.prod(self.window_shape)) * 4

    @property
    def stored_bytes(self) -> int:
        """All windows at the store's dtype: what Ray's object store holds in memory mode."""
        return self.windows * int(np.prod(self.window_shape)) * self.stored_itemsize

    @property
    def float32_bytes(self) -> int:
        return self.windows * self.window_bytes


def store_size(store: str | Path, challenge: int, subjects: list[str] | None = None) -> StoreSize:
    """From the manifest's row counts and one file's schema; reads no windows."""
    manifest = load_manifest(store) or {}
    wanted = None if subjects is None else set(subjects)
    rows = sum(
        f["rows"]
        for f in manifest.get("files", [])
        if f["challenge"] == challenge and (wanted is None or f["subject"] in wanted)
    )
    field = pq.read_schema(store_files(store, challenge)[0]).field("eeg").type
    shape = tuple(int(d) for d in field.shape)
    itemsize = np.dtype(field.value_type.to_pandas_dtype()).itemsize
    return StoreSize(windows=rows, window_shape=shape, stored_itemsize=itemsize)  # type: ignore[arg-type]


def available_memory() -> int:
    """Memory the kernel could give this process now (MemAvailable), in bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_cv_mode(mode: str, store: str | Path, challenge: int) -> tuple[str, str]:
    """The mode ``eegtune cv`` runs in, and a sentence saying why."""
    if mode not in DATA_MODES:
        raise ConfigError(f"data mode must be one of {DATA_MODES}, got {mode!r}")
    size = store_size(store, challenge)
    # Every fold holds all windows at some point (fit + inner validation, then held out).
    need, budget = size.float32_bytes, int(CV_MEMORY_FRACTION * available_memory())
    numbers = f"{size.windows} windows, {gib(need)} as float32; {gib(budget)} set aside"
    if mode == "auto":
        mode = "memory" if need <= budget else "stream"
        return mode, f"data: {mode} mode (auto: {numbers})"
    return mode, f"data: {mode} mode ({numbers})"
