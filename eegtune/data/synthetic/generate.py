"""``eegtune synth``: write an HBN-shaped BIDS data set with a known oracle.

Each release becomes its own BIDS root named like the competition copies
(``R1_L100_bdf``), with participants.tsv, sidecars and events in the real layout.
``oracle.json`` beside the roots holds the latent truth and the NRMSE floors.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from eegtune import storage
from eegtune.data.bids import PARTICIPANT_COLUMNS, SCORE_COLUMNS, TASK_COLUMNS
from eegtune.data.synthetic import events as ev
from eegtune.data.synthetic import oracle as orc
from eegtune.data.synthetic.signals import (
    HeadModel,
    SubjectTraits,
    add_motor_potentials,
    add_visual_responses,
    background,
)
from eegtune.data.synthetic.skeleton import SkeletonSubject, read_skeleton
from eegtune.data.synthetic.writers import write_recording
from eegtune.data.trials import scored_trials
from eegtune.errors import ConfigError

CCD = "contrastChangeDetection"
REST = "RestingState"
DEFAULT_TASKS = (CCD, REST)


@dataclass(frozen=True)
class GeneratorParams:
    """The generative model's constants; written to oracle.json."""

    latency_jitter_s: float = 0.2
    trait_correlation: float = 0.35
    externalizing_mean: float = 0.0
    externalizing_std: float = 0.75
    rt_population_mean: float = 1.55
    rt_between_subject_std: float = 0.15
    rt_within_subject_std: float = 0.33
    motor_amplitude_uv: float = 10.0
    p_missing_scores: float = 0.05


@dataclass(frozen=True)
class SynthOptions:
    out: Path
    n_subjects: int | None = None  # 6 without a skeleton, all skeleton subjects with one
    releases: tuple[str, ...] = ("R1",)
    sfreq: int = 100
    fmt: str = "bdf"
    tasks: tuple[str, ...] = DEFAULT_TASKS
    skeleton: Path | None = None
    seed: int = 0
    params: GeneratorParams = field(default_factory=GeneratorParams)

    def __post_init__(self) -> None:
        if self.sfreq not in (100, 500):
            raise ConfigError(f"--sfreq must be 100 or 500, got {self.sfreq}")
        if self.fmt not in ("bdf", "set"):
            raise ConfigError(f"--format must be bdf or set, got {self.fmt!r}")
        if self.n_subjects is not None and self.n_subjects < 1:
            raise ConfigError("--subjects must be at least 1")


@dataclass
class PlannedRecording:
    task: str
    run: int | None
    events: pd.DataFrame
    duration: float


@dataclass
class PlannedSubject:
    release: str
    subject: str
    row: dict
    recordings: list[PlannedRecording]
    traits: SubjectTraits


def _subject_ids(rng: np.random.Generator, n: int) -> list[str]:
    alphabet = np.array(list(string.ascii_uppercase + string.digits))
    ids: set[str] = set()
    while len(ids) < n:
        ids.add("NDAR" + "".join(rng.choice(alphabet, 8)))
    return sorted(ids)


def _trait_from_score(rng: np.random.Generator, y: float, p: GeneratorParams) -> float:
    """Draw z | y so that corr(z, y) = ρ with z ~ N(0, 1) marginally."""
    rho = p.trait_correlation
    if np.isnan(y):
        return float(rng.standard_normal())
    y_std = (y - p.externalizing_mean) / p.externalizing_std
    return float(rho * y_std + np.sqrt(1 - rho**2) * rng.standard_normal())


def _traits(rng: np.random.Generator, y: float, p: GeneratorParams) -> SubjectTraits:
    return SubjectTraits(
        spectral_trait=_trait_from_score(rng, y, p),
        alpha_freq=float(rng.uniform(8.5, 11.5)),
        motor_amplitude_uv=float(p.motor_amplitude_uv * rng.uniform(0.7, 1.3)),
    )


def _plan_generated(opts: SynthOptions, rng: np.random.Generator) -> list[PlannedSubject]:
    p = opts.params
    n = opts.n_subjects or 6
    subjects = []
    for i, sub in enumerate(_subject_ids(rng, n)):
        release = opts.releases[i % len(opts.releases)]
        y = float(np.round(rng.normal(p.externalizing_mean, p.externalizing_std), 3))
        scores = {c: float(np.round(rng.normal(0, 0.8), 3)) for c in SCORE_COLUMNS}
        scores["externalizing"] = y
        if rng.random() < p.p_missing_scores:
            scores = dict.fromkeys(SCORE_COLUMNS, float("nan"))
        behaviour = ev.SubjectBehaviour(
            rt_mean=float(rng.normal(p.rt_population_mean, p.rt_between_subject_std)),
            rt_std=p.rt_within_subject_std * float(rng.uniform(0.8, 1.2)),
        )
        recordings = []
        for task in opts.tasks:
            if task == CCD:
                for run in (1, 2, 3):
                    table, dur = ev.ccd_run_events(rng, behaviour, run)
                    recordings.append(PlannedRecording(task, run, table, dur))
            elif task == REST:
                table, dur = ev.resting_events(rng)
                recordings.append(PlannedRecording(task, None, table.drop(columns="feedback"), dur))
            else:
                dur = float(rng.integers(120, 300))
                table = pd.DataFrame([ev._row(0.0, "break cnt"), ev._row(dur - 2, "9999")])
                recordings.append(PlannedRecording(task, None, table.drop(columns="feedback"), dur))
        row = {
            "participant_id": f"sub-{sub}",
            "release_number": release,
            "sex": str(rng.choice(["M", "F"])),
            "age": round(float(rng.uniform(5.0, 21.0)), 4),
            "ehq_total": round(float(rng.uniform(-100, 100)), 2),
            "commercial_use": "Yes",
            "full_pheno": "Yes",
            **scores,
        }
        subjects.append(PlannedSubject(release, sub, row, recordings, _traits(rng, y, p)))
    return subjects


def _plan_skeleton(opts: SynthOptions, rng: np.random.Generator) -> list[PlannedSubject]:
    assert opts.skeleton is not None
    skeleton: list[SkeletonSubject] = read_skeleton(opts.skeleton, opts.tasks, opts.n_subjects)
    planned = []
    for s in skeleton:
        y = float(pd.to_numeric(s.row.get("externalizing"), errors="coerce"))
        recordings = [PlannedRecording(r.task, r.run, r.events, r.duration) for r in s.recordings]
        planned.append(
            PlannedSubject(s.release, s.subject, s.row, recordings, _traits(rng, y, opts.params))
        )
    return planned


def _root_name(release: str, opts: SynthOptions) -> str:
    return f"{release}_L{opts.sfreq}_{opts.fmt}"


def _synthesize_recording(
    subject: PlannedSubject,
    rec: PlannedRecording,
    head: HeadModel,
    opts: SynthOptions,
    seed: list[int],
) -> tuple[np.ndarray, dict]:
    """The signal of one recording and its latent C1 observations."""
    rng = np.random.default_rng(seed)
    sfreq = float(opts.sfreq)
    n_times = int(round(rec.duration * sfreq))
    closed = ev.eyes_closed_mask(rec.events, n_times, sfreq) if rec.task == REST else None
    data = background(rng, head, subject.traits, n_times, sfreq, closed)
    latents: dict = {"rt": [], "observed": []}
    if rec.task != CCD:
        return data, latents
    values = rec.events["value"].astype(str).to_numpy()
    onsets = pd.to_numeric(rec.events["onset"]).to_numpy(dtype=float)
    is_press = np.char.endswith(values.astype(str), "_buttonPress")
    press_on = onsets[is_press]
    jitter = rng.normal(0.0, opts.params.latency_jitter_s, size=len(press_on))
    amps = subject.traits.motor_amplitude_uv * np.maximum(
        0.2, 1 + 0.3 * rng.standard_normal(len(press_on))
    )
    sides = [v.split("_")[0] for v in values[is_press]]
    add_motor_potentials(data, sfreq, head, press_on + jitter, sides, amps)
    add_visual_responses(data, sfreq, head, onsets[np.char.endswith(values.astype(str), "_target")])
    trials = scored_trials(rec.events)
    fits = trials["stimulus_onset"] + orc.WINDOW_END_S <= n_times / sfreq
    for _, trial in trials[fits].iterrows():
        k = int(np.searchsorted(press_on, trial["response_onset"]))
        latents["rt"].append(float(trial["rt_from_stimulus"]))
        latents["observed"].append(float(press_on[k] + jitter[k] - trial["stimulus_onset"]))
    return data, latents


def _n_c2_windows(duration: float) -> int:
    return int((duration - 4.0) // 2.0) + 1 if duration >= 4.0 else 0


def synthesize(opts: SynthOptions, progress: bool = True) -> dict:
    """Write the data set; return the oracle (also saved as ``out/oracle.json``)."""
    rng = np.random.default_rng(opts.seed)
    subjects = _plan_skeleton(opts, rng) if opts.skeleton else _plan_generated(opts, rng)
    head = HeadModel(opts.seed)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    p = opts.params

    rts, observed, oracle_subjects = [], [], []
    c2_y, c2_z, c2_w = [], [], []
    total = sum(len(s.recordings) for s in subjects)
    bar = tqdm(total=total, desc="synth", unit="rec", disable=not progress)
    for si, subject in enumerate(subjects):
        root = out / _root_name(subject.release, opts)
        n_c2 = 0
        for ri, rec in enumerate(subject.recordings):
            data, lat = _synthesize_recording(subject, rec, head, opts, [opts.seed, si, ri])
            write_recording(
                root, subject.subject, rec.task, rec.run, data, rec.events, opts.sfreq, opts.fmt
            )
            rts += lat["rt"]
            observed += lat["observed"]
            if rec.task == CCD:
                n_c2 += _n_c2_windows(rec.duration)
            bar.update(1)
        y = float(pd.to_numeric(subject.row.get("externalizing"), errors="coerce"))
        if not np.isnan(y) and n_c2:
            c2_y.append(y)
            c2_z.append(subject.traits.spectral_trait)
            c2_w.append(n_c2)
        oracle_subjects.append(
            {
                "subject": subject.subject,
                "release": subject.release,
                "externalizing": None if np.isnan(y) else y,
                **asdict(subject.traits),
            }
        )
    bar.close()

    for release in sorted({s.release for s in subjects}):
        rows = [s for s in subjects if s.release == release]
        _write_dataset_files(out / _root_name(release, opts), rows, opts)

    rt_arr, obs_arr = np.array(rts), np.array(observed)
    if opts.skeleton:
        ys = np.array(c2_y) if c2_y else np.array([0.0])
        mu, sigma = float(ys.mean()), float(ys.std()) or 1.0
    else:
        mu, sigma = p.externalizing_mean, p.externalizing_std
    oracle = {
        "generator": "eegtune synth",
        "seed": opts.seed,
        "params": asdict(p),
        "roots": sorted({_root_name(s.release, opts) for s in subjects}),
        "challenge1": {
            "n_trials": len(rt_arr),
            "rt_mean": float(rt_arr.mean()) if len(rt_arr) else None,
            "rt_std": float(rt_arr.std()) if len(rt_arr) else None,
            "nrmse_floor": orc.challenge1_floor(rt_arr, obs_arr, p.latency_jitter_s)
            if len(rt_arr) > 1
            else None,
        },
        "challenge2": {
            "n_subjects": len(c2_y),
            "n_windows": int(sum(c2_w)),
            "trait_to_score": {"mu": mu, "sigma": sigma, "rho": p.trait_correlation},
            "nrmse_floor": orc.challenge2_floor(
                np.array(c2_y), np.array(c2_z), np.array(c2_w), mu, sigma, p.trait_correlation
            )
            if len(c2_y) > 1
            else None,
        },
        "subjects": oracle_subjects,
    }
    storage.write_text(out / "oracle.json", json.dumps(oracle, indent=2))
    return oracle


def _write_dataset_files(root: Path, subjects: list[PlannedSubject], opts: SynthOptions) -> None:
    rows = []
    for s in subjects:
        row = {c: s.row.get(c, "n/a") for c in PARTICIPANT_COLUMNS}
        available = {(r.task, r.run) for r in s.recordings}
        for col, (task, run) in TASK_COLUMNS.items():
            row[col] = "available" if (task, run) in available else "unavailable"
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("participant_id")
    storage.write_text(root / "participants.tsv", table.to_csv(sep="\t", index=False, na_rep="n/a"))
    description = {
        "Name": f"eegtune synthetic HBN-shaped data ({root.name})",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "GeneratedBy": [{"Name": "eegtune synth", "Description": f"seed {opts.seed}"}],
    }
    storage.write_text(root / "dataset_description.json", json.dumps(description, indent=2))
    storage.write_text(
        root / "README",
        "Synthetic EEG shaped like the HBN-EEG releases, written by `eegtune synth`.\n"
        "Not real data. The latent truth is in ../oracle.json.\n",
    )
