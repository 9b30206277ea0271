"""Where a fold's training is resumed from: the state ``train_func`` saves every epoch.

A fold killed mid-training (a lost Ray worker, a Ctrl-C'd ``eegtune cv``) restarts from
its last finished epoch instead of from scratch. The state holds everything the next
epoch depends on, so a resumed fold ends with exactly the weights an uninterrupted one
would: model, optimiser and schedule, the early-stopping bookkeeping, and torch's RNG
(dropout). The data order needs nothing saved: each epoch's shuffle is seeded from
(seed, fold, epoch). (A data-parallel fold restores its leader's RNG on every replica,
so with dropout its resumed run is close to, not bit-equal with, an uninterrupted one.)

The state is plain tensors and JSON types, so it loads under ``weights_only=True``.
A state saved for another configuration is never used: it carries a fingerprint of
every setting that changes training.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eegtune import storage
from eegtune.data.store import MANIFEST
from eegtune.errors import ConfigError
from eegtune.training.config import LR_MULT_PREFIX, FoldJob, TrainConfig
from eegtune.training.fold_data import FoldSubjects

STATE_FILE = "training_state.pt"
LEGACY_SETTINGS = {"warmup_epochs": 0.0, "decay_norms_and_biases": True}


def fingerprint(
    job: FoldJob, hp: TrainConfig, subjects: FoldSubjects, data_mode: str = "memory"
) -> str:
    """A digest of what training depends on (not where it runs or writes): the settings,
    the fold's subjects, the store's manifest and how batches are drawn (stream mode
    mixes them differently), so a state saved before the store was prepared again, for
    another split or in the other mode, is never resumed."""
    manifest = storage.join(job.store, MANIFEST)
    settings = hp.to_flat()
    # Settings at the value that trains as eegtune did before they existed are left out,
    # so such a run keeps the fingerprint of its saved states.
    for key, legacy in LEGACY_SETTINGS.items():
        if settings.get(key) == legacy:
            del settings[key]
    for key in [k for k, v in settings.items() if k.startswith(LR_MULT_PREFIX) and v == 1.0]:
        del settings[key]
    relevant = {
        **settings,
        "challenge": job.challenge,
        "fold": job.fold,
        "subjects": [list(subjects.fit), list(subjects.inner_val), list(subjects.test)],
        "manifest": hashlib.sha256(storage.read_bytes(manifest)).hexdigest()
        if storage.exists(manifest)
        else None,
    }
    if data_mode != "memory":  # absent in memory mode: states saved before modes existed
        relevant["data_mode"] = data_mode
    if job.precision != "32":  # likewise absent at full precision; the device is not kept
        relevant["precision"] = job.precision
    if job.refit_epochs:  # a refit of another length stops elsewhere: another run
        relevant["refit_epochs"] = job.refit_epochs
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TrainingState:
    """The fold's training after ``epochs_done`` epochs."""

    fingerprint: str
    epochs_done: int
    stopped: bool  # early-stopped or out of epochs: nothing left to train
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_model: dict[str, torch.Tensor]
    best_inner_val_rmse: float
    best_epoch: int
    stale: int
    torch_rng: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        return cls(**data)


def save_state(state: TrainingState, path: str | Path) -> None:
    """Write atomically, to a local path or a storage URI: a kill mid-write leaves the
    previous save intact."""
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    storage.write_bytes(path, buffer.getvalue())


def load_state(path: str | Path, expected_fingerprint: str) -> TrainingState | None:
    """The saved state if it exists and belongs to this configuration, else None."""
    if not storage.exists(path):
        return None
    try:
        data = torch.load(
            io.BytesIO(storage.read_bytes(path)), map_location="cpu", weights_only=True
        )
    except Exception as exc:  # writes are atomic, so this is damage from outside: say so
        raise ConfigError(
            f"{path}: unreadable training state ({exc}); delete it to start the fold over"
        ) from exc
    if not isinstance(data, dict) or data.get("fingerprint") != expected_fingerprint:
        return None
    try:
        return TrainingState.from_dict(data)
    except TypeError as exc:  # saved by another version of eegtune
        raise ConfigError(f"{path}: not a training state this version can resume ({exc})") from exc
