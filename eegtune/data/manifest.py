"""Unit records and the store's ``manifest.json``.

Each finished subject leaves a unit record (its sources, outputs, per-channel sums and
skips). The manifest is rebuilt from all unit records at the end of a run, so it never
needs a second pass over the windows and is always consistent with the files.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from eegtune import __version__, storage
from eegtune.data.signal import CHANNELS, TARGET_SFREQ
from eegtune.data.store import SCHEMA_VERSION, ChannelSums, unit_path

EEG_SHAPES = {"1": [len(CHANNELS), 200], "2": [len(CHANNELS), 400]}


def load_unit(store: str | Path, release: str, subject: str) -> dict | None:
    path = unit_path(store, release, subject)
    if not storage.exists(path):
        return None
    try:
        return json.loads(storage.read_text(path))
    except json.JSONDecodeError:
        return None  # a damaged record only means the unit is redone


def save_unit(store: str | Path, record: dict) -> None:
    path = unit_path(store, record["release"], record["subject"])
    storage.write_text(path, json.dumps(record, default=float))


def _target_summary(parts: list[dict]) -> dict:
    n = sum(p["n"] for p in parts)
    if n == 0:
        return {"n": 0}
    mean = sum(p["sum"] for p in parts) / n
    var = max(sum(p["sum_sq"] for p in parts) / n - mean**2, 0.0)
    return {
        "n": n,
        "mean": mean,
        "std": float(np.sqrt(var)),
        "min": min(p["min"] for p in parts),
        "max": max(p["max"] for p in parts),
    }


def build_manifest(
    records: list[dict], plan_skips: list[dict], sources: list[dict], options: dict, complete: bool
) -> dict:
    records = sorted(records, key=lambda r: (r["release"], r["subject"]))
    files, challenges = [], {}
    for c in sorted(options["challenges"]):
        key = str(c)
        sums, targets, subjects, releases = ChannelSums.empty(), [], set(), set()
        for r in records:
            if key not in r["outputs"]:
                continue
            out = r["outputs"][key]
            files.append({"challenge": c, "release": r["release"], "subject": r["subject"], **out})
            sums = sums + ChannelSums.from_json(r["stats"][key]["channels"])
            targets.append(r["stats"][key]["target"])
            subjects.add(r["subject"])
            releases.add(r["release"])
        mean, std = sums.mean_std()
        challenges[key] = {
            "directory": f"challenge{c}",
            "eeg_shape": EEG_SHAPES[key],
            "files": sum(1 for f in files if f["challenge"] == c),
            "windows": sum(t["n"] for t in targets),
            "subjects": len(subjects),
            "releases": sorted(releases),
            "target": _target_summary(targets),
            "channel_mean": mean,
            "channel_std": std,
        }
    skipped = list(plan_skips) + [s for r in records for s in r["skipped"]]
    return {
        "schema_version": SCHEMA_VERSION,
        "eegtune_version": __version__,
        "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": complete,
        "options": options,
        "sfreq": TARGET_SFREQ,
        "channels": list(CHANNELS),
        "roots": sources,
        "challenges": challenges,
        "files": files,
        "source_files": [s for r in records for s in r["sources"]],
        "skipped": skipped,
    }
