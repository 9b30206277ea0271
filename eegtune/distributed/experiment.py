"""An ``eegtune tune`` experiment: its settings, its folder, and every name in it.

::

    EXPERIMENT/                  --storage-path/--name: a folder, or an s3:// URI
      tune_job.json              the settings (TuneJob), the resource and data plans
      optuna_journal.log         the Optuna study: every trial's parameters and values
      folds.json                 the subjects of each fold, drawn once (a resume checks it)
      race_board/<trial id>.json   --scheduler race: the trial's per-fold figures per rung
      folds/<trial id>/          one trial's run folder (see eegtune.training.run_files)
      finalists/<trial id>_seed<S>/   a top trial retrained with another seed
      ray/, train/               Ray Tune's and Ray Train's own state

A new experiment is a :class:`TuneJob` (checked whole before Ray starts); a finished one is
read back with :meth:`Experiment.open` from its record, as it was saved, whatever today's
defaults are. The Optuna study and the results table live in :mod:`.study`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from eegtune import storage
from eegtune.distributed.fold_race import DEFAULT_CONFIDENCE, DEFAULT_KEEP
from eegtune.errors import ConfigError, ExperimentError
from eegtune.training.run_files import member_file

JOB_RECORD = "tune_job.json"
JOURNAL = "optuna_journal.log"
SPLIT_FILE = "folds.json"
TRIALS = "folds"  # trials' run folders, named by Tune trial id
FINALISTS = "finalists"
DRIVER = "driver.json"  # per trial folder: the process that drives the trial
TUNE_RESULTS = "ray/tune_*/*/result.json"  # Ray Tune's reports, one file per trial and run
# What lives on the driver's disk while a search runs; with a URI, copied both ways.
SYNCED = (JOURNAL, JOB_RECORD)

SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo", "race")
# What a --resume may change (the data mode too: a bigger cluster may hold in memory what
# a smaller one streamed).
RESUMABLE = (
    "n_trials", "max_failures", "data_mode", "device", "checkpoint_every", "race_confidence",
    "start_at_defaults", "race_keep",
)  # fmt: skip
# Settings of the experiment that a --set may not fix: its own flags set them.
OWN_FLAGS = ("seed", "max_epochs")


@dataclass(frozen=True)
class TuneJob:
    """A search to run: everything ``eegtune tune`` records of it (paths are flags)."""

    store: str
    challenge: int
    space: str
    n_trials: int
    n_folds: int
    name: str
    storage_path: str
    max_epochs: int = 30
    grace_period: int = 3
    seed: int = 0
    max_failures: int = 1  # restarts of a trial (and of its lost workers) from its checkpoint
    sampler: str = "tpe"  # "random": the baseline a search is measured against
    sampler_seed: int | None = None  # None: ``seed``, which also drives folds and training
    scheduler: str = "asha"  # "fifo": every trial runs all its epochs; "race": ASHA + folds
    # --scheduler race: the confidence with which a trial must be worse, fold by fold,
    # than the rival ``race_keep`` names, to be stopped (eegtune.distributed.fold_race).
    race_confidence: float = DEFAULT_CONFIDENCE
    # --scheduler race: the share of its rivals a trial may trail and not be stopped
    # (0.25 by default; 0.5, ASHA's cut at reduction factor 2; 0, the leader).
    race_keep: float = DEFAULT_KEEP
    # Training settings every trial shares and the space does not search (``--set``).
    fixed: dict[str, Any] = field(default_factory=dict)
    data_mode: str = "auto"  # memory, stream or auto (see eegtune.distributed.memory_plan)
    device: str = "auto"  # auto: the GPU Ray assigns each fold worker, else its CPUs
    precision: str = "32"  # "bf16": autocast; part of the experiment, unlike the device
    # Fold-pool workers save a fold's training state when the last save is older than this
    # (seconds), and when the fold ends: what a lost worker can lose at most.
    checkpoint_every: float = 30.0
    # The search's first trial is the space's architecture at its defaults (``TrainConfig``'s
    # and its own), trained at this search's epochs; once over resumes.
    start_at_defaults: bool = False

    def __post_init__(self) -> None:
        # Everything that needs no cluster is checked here, before Ray starts.
        from eegtune.search_spaces import get_space
        from eegtune.training.config import TrainConfig
        from eegtune.training.data_modes import DATA_MODES
        from eegtune.training.devices import check_device_settings

        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if not 0.5 <= self.race_confidence < 1:
            raise ConfigError(f"race confidence must be in [0.5, 1), got {self.race_confidence}")
        if not 0 <= self.race_keep <= 1:
            raise ConfigError(f"race keep must be in [0, 1], got {self.race_keep}")
        if self.challenge not in (1, 2):
            raise ConfigError(f"challenge must be 1 or 2, got {self.challenge}")
        if self.n_folds < 2 or self.n_trials < 0 or self.max_epochs < 1:
            raise ConfigError("need n_folds >= 2, n_trials >= 0 and max_epochs >= 1")
        TrainConfig().with_overrides(self.fixed)  # unknown keys or bad values fail here
        check_device_settings(self.device, self.precision)
        if self.data_mode not in DATA_MODES:
            raise ConfigError(f"data_mode must be one of {DATA_MODES}, got {self.data_mode!r}")
        if not self.checkpoint_every >= 0:
            raise ConfigError(f"checkpoint_every must be >= 0 s, got {self.checkpoint_every}")
        space = get_space(self.space)
        if not space.supports(self.challenge):
            raise ConfigError(f"space {space.name!r} is for challenge(s) {space.challenges}")
        if self.fixed:
            self._refuse_clashes(space)
        if self.start_at_defaults:
            self.first_points()  # a space over architectures has no one default: refused

    def first_points(self) -> list[dict[str, Any]]:
        """The trials a new search starts with: the defaults, when asked for."""
        from eegtune.search_spaces.sampling import default_point

        return [default_point(self.space)] if self.start_at_defaults else []

    def _refuse_clashes(self, space) -> None:
        from eegtune.search_spaces.sampling import summarize_space

        clash = sorted(set(self.fixed) & (summarize_space(space).keys() | set(OWN_FLAGS)))
        if clash:
            raise ConfigError(
                f"cannot fix {clash}: space {space.name!r} searches them, or a flag of its "
                f"own (--seed, --max-epochs) sets them"
            )

    @property
    def experiment_uri(self) -> str:
        """Where the experiment's outputs go: a folder, or a URI every node writes to."""
        return storage.join(self.storage_path, self.name)

    @property
    def experiment_dir(self) -> Path:
        """This machine's folder for the experiment's journal and record: the experiment
        folder itself, or with a URI storage path its local mirror."""
        return _local(self.experiment_uri)

    def record(self) -> dict[str, Any]:
        """What ``tune_job.json`` holds of the job (the plans are added when it runs)."""
        from eegtune.search_spaces import get_space

        return {**dataclasses.asdict(self), "space_version": get_space(self.space).version}

    def experiment(self) -> Experiment:
        return Experiment(self.experiment_uri, self.experiment_dir, self.record())


def check_resume(job: TuneJob, saved: dict[str, Any]) -> None:
    """Refuse a ``--resume`` that would not continue the saved experiment."""
    record = job.record()
    # Settings added since the experiment was saved count as their defaults.
    defaults = {
        f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        for f in dataclasses.fields(TuneJob)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    saved = {**defaults, **saved}
    changed = [k for k in record if k not in RESUMABLE and saved.get(k) != record[k]]
    if "space_version" in changed:
        # One study must hold one space: TPE would model the old trials' parameters (or
        # their absence) as draws from the new ranges.
        raise ExperimentError(
            f"--resume refused: experiment {job.name!r} was searched with space "
            f"{job.space}/v{saved.get('space_version')}, and this eegtune has "
            f"{job.space}/v{record['space_version']}, whose parameters or training recipe "
            f"differ; its trials cannot share one study. Start a new experiment (another "
            f"--name); the old one's trials stay usable by eegtune ensemble and report."
        )
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {record[k]!r}" for k in changed)
        raise ExperimentError(f"--resume must continue the same experiment; changed {detail}")


@dataclass(frozen=True)
class Experiment:
    """An experiment on disk, as its record describes it."""

    uri: str  # its folder or storage URI
    path: Path  # on this machine: the folder, or the URI's mirror
    settings: dict[str, Any]  # tune_job.json as saved

    @classmethod
    def open(cls, location: str | Path) -> Experiment:
        """The experiment at a folder or a storage URI (mirrored here first: its record and
        the files its trials' members need, never Ray's checkpoints)."""
        uri = storage.normalize(location) if storage.is_remote(location) else None
        if uri is not None:
            path = _local(uri)
            try:
                storage.download_tree(uri, path, keep=experiment_file)
            except OSError as exc:
                raise ExperimentError(f"{uri}: cannot read the experiment: {exc}") from exc
        else:
            path = Path(storage.normalize(location)).resolve()
        if not (path / JOB_RECORD).exists() or not (path / JOURNAL).exists():
            raise ExperimentError(
                f"{uri or path} is not an eegtune tune experiment (no {JOB_RECORD} and {JOURNAL})"
            )
        settings = json.loads((path / JOB_RECORD).read_text())
        return cls(uri or str(path), path, settings)

    @property
    def source(self) -> str | None:
        """The storage URI the experiment was mirrored from (None for a local folder)."""
        return self.uri if storage.is_remote(self.uri) else None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def challenge(self) -> int:
        return int(self.settings["challenge"])

    @property
    def n_folds(self) -> int:
        return int(self.settings["n_folds"])

    @property
    def seed(self) -> int:
        return int(self.settings["seed"])

    @property
    def store(self) -> str:
        return str(self.settings["store"])

    @property
    def max_epochs(self) -> int:
        return int(self.settings["max_epochs"])

    @property
    def split_uri(self) -> str:
        return storage.join(self.uri, SPLIT_FILE)

    def trial_uri(self, trial_id: str) -> str:
        """Where a trial's fold workers write (shared by every node)."""
        return storage.join(self.uri, TRIALS, trial_id)

    def trial_dir(self, trial_id: str) -> Path:
        """A trial's run folder on this machine."""
        return self.path / TRIALS / trial_id

    def finalist_uri(self, run: str) -> str:
        return storage.join(self.uri, FINALISTS, run)

    def finalist_dir(self, run: str) -> Path:
        return self.path / FINALISTS / run


def experiment_file(relative: str) -> bool:
    """The record, Tune's per-trial reports (what each trial spent), and the member files
    under ``folds/<trial>/`` and ``finalists/<run>/``."""
    if relative in SYNCED or relative == SPLIT_FILE:
        return True
    if relative.count("/") == TUNE_RESULTS.count("/") and fnmatchcase(relative, TUNE_RESULTS):
        return True
    top, _, rest = relative.partition("/")
    run, _, inside = rest.partition("/")
    return top in (TRIALS, FINALISTS) and bool(run) and member_file(inside)


def _local(uri: str) -> Path:
    return storage.local_mirror(uri) if storage.is_remote(uri) else Path(uri)
