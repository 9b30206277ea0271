"""Ensembles on object storage (``s3://…``, ``gs://…``).

The ensemble code works on local folders: an experiment at a URI is mirrored first
(:meth:`eegtune.distributed.experiment.Experiment.open`). An ensemble written to a URI is
built in a local folder and uploaded with ``ensemble.json`` last, so a reader that finds
the description finds every member file too.
"""

from __future__ import annotations

from pathlib import Path

from eegtune import storage
from eegtune.ensembles.errors import EnsembleError

DESCRIPTION = "ensemble.json"


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
