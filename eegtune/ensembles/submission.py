"""``eegtune submission``: two ensemble folders into the challenge's single-level zip.

The zip holds ``submission.py`` (:mod:`eegtune.ensembles.submission_entry`),
``weights_challenge_1.pt`` and ``weights_challenge_2.pt``, and the ``sub_*.py`` modules
the models need. Those are generated here from eegtune's own source (the architectures'
modules, the model base and registry, :mod:`eegtune.ensembles.ensemble_module`) with
``eegtune.models.X`` imports renamed ``sub_X``, so they can never drift from the code
that trained the models, and nothing in the zip imports eegtune.
"""

from __future__ import annotations

import importlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eegtune import storage
from eegtune.ensembles import ensemble_module
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.predictor import read_description
from eegtune.ensembles.remote import fetch_ensemble
from eegtune.models import get_model_class

PREFIX = "sub_"
# Read, never imported: it imports the sub_* modules that exist only inside the zip.
ENTRY = Path(__file__).with_name("submission_entry.py")
_IMPORT = re.compile(r"^(\s*from\s+)eegtune\.models\.(\w+)(\s+import\b)", re.MULTILINE)
EEGTUNE_IMPORT = re.compile(r"^\s*(from|import)\s+eegtune\b", re.MULTILINE)


@dataclass(frozen=True)
class SubmissionInfo:
    path: Path
    size_bytes: int
    files: list[str]
    members: dict[int, list[str]]  # per challenge: "label (weight)"


def weights_blob(ens_dir: Path, challenge: int) -> tuple[dict[str, Any], set[str]]:
    """The ensemble in ``ens_dir`` as plain containers and tensors, and its architectures.
    Refuses an incomplete folder or an architecture eegtune does not know."""
    desc = read_description(ens_dir)
    if desc.get("challenge") != challenge:
        raise EnsembleError(
            f"{ens_dir} is an ensemble for Challenge {desc.get('challenge')}, "
            f"given as Challenge {challenge}"
        )
    if len(desc.get("fold_models", [])) != len(desc.get("members", [])):
        raise EnsembleError(f"{ens_dir}/ensemble.json lists members without their fold models")
    members, names = [], set()
    for member, fold_files in zip(desc["members"], desc["fold_models"], strict=True):
        folds = []
        for entry in fold_files:
            name = entry["model_config"].get("name")
            try:
                get_model_class(name)
            except ValueError as exc:
                raise EnsembleError(f"{ens_dir}: {exc}") from None
            path = ens_dir / entry["file"]
            if not path.is_file():
                raise EnsembleError(f"{ens_dir}: missing member file {path}")
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise EnsembleError(f"{path} cannot be read: {exc}") from exc
            folds.append({"config": dict(entry["model_config"]), "state_dict": state})
            names.add(name)
        members.append(
            {"label": member["label"], "weight": float(member["weight"]), "folds": folds}
        )
    blob = {
        "format": 1,
        "challenge": challenge,
        "alpha": float(desc["alpha"]),
        "centre": float(desc["centre"]),
        "members": members,
    }
    return blob, names


def bundled_sources(architectures: set[str]) -> dict[str, str]:
    """``sub_*.py`` file name -> source: the architectures' modules and everything of
    ``eegtune.models`` they import, the registry, and the ensemble module."""
    todo = ["registry", *sorted(_module_of(n) for n in architectures)]
    sources: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if f"{PREFIX}{name}.py" in sources:
            continue
        text = Path(importlib.import_module(f"eegtune.models.{name}").__file__).read_text()
        todo += [m[1] for m in _IMPORT.findall(text)]
        sources[f"{PREFIX}{name}.py"] = _IMPORT.sub(rf"\g<1>{PREFIX}\g<2>\g<3>", text)
    sources[f"{PREFIX}ensemble_module.py"] = Path(ensemble_module.__file__).read_text()
    sources[f"{PREFIX}zoo.py"] = (
        "".join(
            f"import {PREFIX}{_module_of(n)}  # noqa: F401  registers {n!r}\n"
            for n in sorted(architectures)
        )
        or "# no architectures: every ensemble in this zip is the mean predictor\n"
    )
    return sources


def _module_of(architecture: str) -> str:
    module = get_model_class(architecture).__module__
    if not module.startswith("eegtune.models."):
        raise EnsembleError(f"architecture {architecture!r} lives outside eegtune.models")
    return module.rsplit(".", 1)[1]


def export_submission(c1_dir: str | Path, c2_dir: str | Path, out: str | Path) -> SubmissionInfo:
    """Write the zip (atomically: a temporary file renamed into place)."""
    out = Path(out)
    blobs, names = {}, set()
    for challenge, ens_dir in ((1, fetch_ensemble(c1_dir)), (2, fetch_ensemble(c2_dir))):
        blobs[challenge], used = weights_blob(ens_dir, challenge)
        names |= used
    files = {"submission.py": ENTRY.read_text(), **bundled_sources(names)}
    for file, text in files.items():
        if EEGTUNE_IMPORT.search(text):
            raise EnsembleError(f"{file} would import eegtune inside the zip; cannot export it")
    with (
        storage.replacing(out) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for name, text in sorted(files.items()):
            zf.writestr(name, text)
        for challenge, blob in blobs.items():
            buffer = io.BytesIO()
            torch.save(blob, buffer)
            zf.writestr(f"weights_challenge_{challenge}.pt", buffer.getvalue())
        listed = zf.namelist()
    members = {
        c: [f"{m['label']} (weight {m['weight']:.3f})" for m in blob["members"]]
        for c, blob in blobs.items()
    }
    return SubmissionInfo(out, out.stat().st_size, listed, members)
