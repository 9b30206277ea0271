"""The ensemble as one ``nn.Module``, and its folder: ``ensemble.json`` plus state_dicts.

``ENS_DIR/ensemble.json`` describes everything (members, their source folders, weights,
α, the centre, the scores); ``ENS_DIR/members/m{i}_fold{k}.pt`` holds each fold model's
plain ``state_dict`` (tensors only, so ``torch.load(..., weights_only=True)`` reads it).
The folder is written beside its destination and renamed into place, so an interrupted
or refused build never leaves half an ensemble.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from eegtune.ensembles.ensemble_module import EnsemblePredictor, TrialBag
from eegtune.ensembles.errors import EnsembleError
from eegtune.models import model_from_config

DESCRIPTION = "ensemble.json"
MEMBERS = "members"
FORMAT = 1

__all__ = ["EnsemblePredictor", "TrialBag", "load_ensemble", "read_description", "write_ensemble"]


def write_ensemble(out: Path, description: dict[str, Any], members: list[list[Path]]) -> None:
    """Write ``description`` and each member's fold state_dicts (``members[i]``: its fold
    checkpoints, K per seed for a seed bag) to ``out`` atomically: a temporary sibling
    folder renamed into place."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / DESCRIPTION).exists():
        raise EnsembleError(f"{out} exists and does not hold an ensemble; choose another --out")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / MEMBERS).mkdir(parents=True)
    try:
        entries = []
        for i, files in enumerate(members):
            fold_files = []
            for k, path in enumerate(files):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
                name = f"{MEMBERS}/m{i}_fold{k}.pt"
                torch.save(ckpt["state_dict"], tmp / name)
                fold_files.append({"file": name, "model_config": ckpt["model_config"]})
            entries.append(fold_files)
        description = {"format": FORMAT, **description, "fold_models": entries}
        (tmp / DESCRIPTION).write_text(json.dumps(description, indent=1, default=float))
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_description(ens_dir: str | Path) -> dict[str, Any]:
    path = Path(ens_dir) / DESCRIPTION
    if not path.exists():
        raise EnsembleError(f"{ens_dir} is not an ensemble folder (no {DESCRIPTION})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EnsembleError(f"{path} is damaged: {exc}") from exc


def load_ensemble(ens_dir: str | Path) -> EnsemblePredictor:
    """The ensemble in ``ens_dir`` as one module in eval mode (weights_only loading)."""
    ens_dir = Path(ens_dir)
    desc = read_description(ens_dir)
    bags = []
    for fold_files in desc["fold_models"]:
        folds = []
        for entry in fold_files:
            path = ens_dir / entry["file"]
            if not path.exists():
                raise EnsembleError(f"{ens_dir}: missing member file {path}")
            model = model_from_config(entry["model_config"])
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            folds.append(model)
        bags.append(TrialBag(folds))
    weights = [m["weight"] for m in desc["members"]]
    module = EnsemblePredictor(bags, weights, desc["alpha"], desc["centre"])
    return module.eval()
