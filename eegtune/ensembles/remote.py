"""Experiments and ensembles on object storage (``s3://…``, ``gs://…``).

The ensemble code works on local folders. An experiment at a URI is mirrored first: its
record and, per trial, the files a member needs (config, out-of-fold predictions, fold
checkpoints, metrics), never Ray's own checkpoints. An ensemble written to a URI is built
in a local folder and uploaded with ``ensemble.json`` last, so a reader that finds the
description finds every member file too.
"""

from __future__ import annotations

import re
from pathlib import Path

from eegtune import storage
from eegtune.distributed.study import SYNCED
from eegtune.ensembles.errors import EnsembleError

# What a member needs, under folds/<trial>/ and finalists/<trial>_seed<S>/.
_RUN_FILE = re.compile(r"^(config\.json|fold\d+/(oof\.parquet|checkpoint\.pt|metrics\.json))$")
DESCRIPTION = "ensemble.json"


def run_files(relative: str) -> bool:
    """What a member needs from one trial's (or finalist's) folder."""
    return bool(_RUN_FILE.match(relative))


def experiment_files(relative: str) -> bool:
    """The record, and the member files under ``folds/<trial>/`` and ``finalists/<run>/``."""
    if relative in SYNCED:
        return True
    top, _, rest = relative.partition("/")
    run, _, inside = rest.partition("/")
    return top in ("folds", "finalists") and bool(run) and run_files(inside)


def mirror_experiment(uri: str) -> Path:
    """The experiment at ``uri`` in this machine's mirror (new files only are fetched)."""
    local = storage.local_mirror(uri)
    try:
        storage.download_tree(uri, local, keep=experiment_files)
    except OSError as exc:
        raise EnsembleError(f"{uri}: cannot read the experiment: {exc}") from exc
    return local


def fetch_ensemble(location: str | Path) -> Path:
    """An ensemble folder here: itself, or a URI's copy in the mirror."""
    if not storage.is_remote(location):
        return Path(storage.normalize(location))
    uri = storage.normalize(location)
    if not storage.exists(storage.join(uri, DESCRIPTION)):
        raise EnsembleError(f"{uri} is not an ensemble (no {DESCRIPTION})")
    local = storage.local_mirror(uri)
    storage.download_tree(uri, local)
    return local


def publish_ensemble(local: Path, uri: str) -> None:
    """Upload the ensemble in ``local`` to ``uri``, its description last."""
    storage.upload_tree(local, uri, last=DESCRIPTION)
