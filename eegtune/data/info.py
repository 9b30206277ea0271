"""``eegtune info``: summarise a window store from its manifest (and verify it)."""

from __future__ import annotations

from pathlib import Path

from eegtune import storage
from eegtune.data.store import load_manifest, sha256_file
from eegtune.errors import MissingFileError


def verify_store(store: str | Path, manifest: dict) -> list[str]:
    """Files whose size or checksum no longer matches the manifest."""
    problems = []
    for f in manifest["files"]:
        path = storage.join(store, f["path"])
        if not storage.exists(path):
            problems.append(f"{path}: missing")
        elif storage.size(path) != f["bytes"] or sha256_file(path) != f["sha256"]:
            problems.append(f"{path}: changed since it was written (checksum mismatch)")
    return problems


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def describe_store(store: str | Path, verify: bool = False) -> str:
    store = storage.normalize(store)
    manifest = load_manifest(store)
    if manifest is None:
        raise MissingFileError(f"{store}: no manifest.json (is this a window store?)")
    lines = [f"store        {store}"]
    lines.append(
        f"schema       v{manifest['schema_version']}  ({manifest['options']['dtype']}, "
        f"{manifest['sfreq']:g} Hz, {len(manifest['channels'])} channels)"
    )
    if not manifest.get("complete", True):
        lines.append(
            "status       INCOMPLETE: the last prepare was interrupted; rerun it to resume"
        )
    releases = ", ".join(f"{r['release']} ({r['root']})" for r in manifest["roots"])
    lines.append(f"releases     {releases}")
    lines.append("")
    lines.append("challenge  subjects  windows  shape       target mean   std     min     max")
    for key, c in manifest["challenges"].items():
        t = c["target"]
        shape = "x".join(str(s) for s in c["eeg_shape"])
        lines.append(
            f"{key:>9}  {c['subjects']:>8}  {c['windows']:>7}  {shape:<10}  "
            f"{_fmt(t.get('mean')):>11}  {_fmt(t.get('std')):>6}  {_fmt(t.get('min')):>6}  "
            f"{_fmt(t.get('max')):>6}"
        )
    skipped = manifest["skipped"]
    lines.append("")
    lines.append(f"skipped      {len(skipped)} recording(s)")
    for s in skipped:
        which = ",".join(str(c) for c in s["challenges"])
        lines.append(f"  [C{which}] {s['file']}: {s['reason']}")
    if verify:
        problems = verify_store(store, manifest)
        lines.append("")
        lines.append(
            f"verify       {len(manifest['files'])} files, "
            + ("all checksums match" if not problems else f"{len(problems)} problem(s)")
        )
        lines += [f"  {p}" for p in problems]
    return "\n".join(lines)
