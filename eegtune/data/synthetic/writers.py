"""Write one synthetic recording in the BIDS layout: signal, events, channels, eeg.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from eegtune import storage
from eegtune.data.bdf import write_bdf
from eegtune.data.bids import recording_stem
from eegtune.data.signal import CHANNELS


def write_set(path: Path, data_uv: np.ndarray, sfreq: float) -> None:
    """EEGLAB .set through eeglabio (MNE's own EEGLAB exporter uses it too)."""
    from eeglabio.raw import export_set

    tmp = path.with_name(path.stem + ".tmp.set")
    # eeglabio takes volts, like MNE, and stores microvolts as EEGLAB does.
    volts = data_uv.astype(np.float64) * 1e-6
    export_set(str(tmp), volts, sfreq, list(CHANNELS), ref_channels="Cz")
    tmp.replace(path)


def write_recording(
    root: Path,
    subject: str,
    task: str,
    run: int | None,
    data_uv: np.ndarray,
    events: pd.DataFrame,
    sfreq: int,
    fmt: str,
) -> Path:
    eeg_dir = root / f"sub-{subject}" / "eeg"
    eeg_dir.mkdir(parents=True, exist_ok=True)
    stem = recording_stem(subject, task, run)
    signal_path = eeg_dir / f"{stem}_eeg.{fmt}"
    if fmt == "bdf":
        write_bdf(signal_path, data_uv, sfreq, list(CHANNELS))
    else:
        write_set(signal_path, data_uv, sfreq)

    table = events.copy()
    if sfreq == 100:
        # The 100 Hz competition copies carry no sample column.
        table = table.drop(columns=["sample"], errors="ignore")
    else:
        table["sample"] = np.rint(pd.to_numeric(table["onset"]) * sfreq).astype(int)
        cols = ["onset", "duration", "sample"] + [
            c for c in table.columns if c not in ("onset", "duration", "sample")
        ]
        table = table[cols]
    storage.write_text(
        eeg_dir / f"{stem}_events.tsv", table.to_csv(sep="\t", index=False, na_rep="n/a")
    )
    channels = pd.DataFrame({"name": CHANNELS, "type": "EEG", "units": "uV"})
    storage.write_text(eeg_dir / f"{stem}_channels.tsv", channels.to_csv(sep="\t", index=False))
    sidecar = {
        "TaskName": task,
        "SamplingFrequency": sfreq,
        "EEGChannelCount": len(CHANNELS),
        "EEGReference": "Cz",
        "RecordingType": "continuous",
        "RecordingDuration": round(data_uv.shape[1] / sfreq, 3),
        "PowerLineFrequency": 60,
        "SoftwareFilters": "n/a",
    }
    storage.write_text(eeg_dir / f"{stem}_eeg.json", json.dumps(sidecar, indent=2))
    return signal_path
