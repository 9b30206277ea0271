"""``eegtune ensemble``: from finished experiments to one scored, guarded predictor.

Steps: open the experiments and check they share their folds; take their COMPLETE trials
as candidates (plus, with ``seeds``, each top trial's seed bag: the trial retrained with
new seeds, averaged with its own run); line up their OOF predictions;
score every method nested and naive; apply the guard; write the chosen combination's
members to ``out`` (atomically). Every method is scored so the table shows what the
chosen one is measured against.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eegtune import storage
from eegtune.ensembles.candidates import (
    Candidate,
    check_same_folds,
    experiment_candidates,
    oof_rows,
    open_experiment,
)
from eegtune.ensembles.combiners import METHODS
from eegtune.ensembles.errors import EnsembleError
from eegtune.ensembles.finalists import retrain_with_seeds, seed_bags, seed_spread
from eegtune.ensembles.nested import AUTO, N_BOOT, Scores, choose_method, guarded, score_methods
from eegtune.ensembles.predictor import write_ensemble
from eegtune.ensembles.refit import refit_member
from eegtune.ensembles.remote import publish_ensemble

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsembleRequest:
    experiments: tuple[str, ...]
    challenge: int
    out: str
    method: str = AUTO  # or one of METHODS
    top_k: int = 5  # members of `mean`; also the trials `seeds` retrains
    size: int = 25  # picks of `greedy` (with replacement)
    max_models: int | None = None  # greedy's distinct members, at most (inference cost)
    seeds: int = 0  # new seeds per top trial (needs a running Ray)
    refit: bool = False  # each shipped member as one model trained on every subject
    n_boot: int = N_BOOT

    def __post_init__(self) -> None:
        if not self.experiments:
            raise EnsembleError("give at least one --experiment")
        if self.method not in (AUTO, *METHODS):
            raise EnsembleError(f"--method must be {AUTO} or one of {METHODS}, got {self.method!r}")
        if self.top_k < 1 or self.size < 1 or self.seeds < 0 or self.n_boot < 1000:
            raise EnsembleError(
                "--top-k and --size must be at least 1, --seeds at least 0, and the "
                "bootstrap at least 1000 resamples"
            )
        if self.max_models is not None and self.max_models < 1:
            raise EnsembleError(f"--max-models must be at least 1, got {self.max_models}")


@dataclass
class EnsembleResult:
    scores: Scores
    candidates: list[Candidate]
    shipped: str  # the method, or the fallback the guard chose
    guard: str  # the guard's one line, empty when the method shipped
    description: dict[str, Any] = field(default_factory=dict)


def build_ensemble(
    req: EnsembleRequest, log: Callable[[str], None] | None = None
) -> EnsembleResult:
    log = log or logger.info
    experiments = [open_experiment(p) for p in req.experiments]
    check_same_folds(experiments, req.challenge)
    candidates = [c for exp in experiments for c in experiment_candidates(exp)]
    singles = len(candidates)  # the trials as searched: what the best single trial is
    if req.seeds:
        top = sorted(candidates, key=lambda c: c.oof_nrmse)[: req.top_k]
        by_name = {exp.name: exp for exp in experiments}
        if len(by_name) != len(experiments):
            raise EnsembleError("two --experiment folders share a name; rename one")
        candidates += seed_bags(top, retrain_with_seeds(by_name, top, req.seeds, log=log))
    for cand in candidates:  # a trial without its fold models cannot become a member
        cand.checkpoints()
    bags = len(candidates) - singles
    log(
        f"candidates: {len(candidates)} member(s) from {len(experiments)} experiment(s); a "
        f"member is a trial, predicting the mean of its {experiments[0].n_folds} fold models"
        + (
            f", or one of {bags} seed bag(s): a trial and its {req.seeds} retraining(s) "
            f"with new seeds, predicting the mean of all their fold models"
            if bags
            else ""
        )
    )
    rows, _ = oof_rows(candidates)
    scores = score_methods(
        rows,
        METHODS,
        req.top_k,
        req.size,
        req.n_boot,
        experiments[0].seed,
        req.max_models,
        singles=singles,
    )
    centre = float(rows.target.mean())
    method, why = choose_method(scores, req.method)  # printed by format_report
    comb, shipped, guard = guarded(scores, method, len(candidates), centre)
    used = [int(i) for i in comb.members]
    members = [
        {**candidates[i].to_dict(), "label": candidates[i].label, "weight": float(comb.weights[i])}
        for i in used
    ]
    checkpoints = [candidates[i].checkpoints() for i in used]
    if req.refit:
        by_name = {exp.name: exp for exp in experiments}
        checkpoints = [  # a seed bag refits each of its runs: one model per seed
            [refit_member(run, by_name[run.experiment], log) for run in candidates[i].runs()]
            for i in used
        ]
    spread = seed_spread(candidates)
    description = {
        "challenge": req.challenge,
        "method": method,
        "asked": req.method,
        "why": why,
        "shipped": shipped,
        "guard": guard,
        "experiments": [str(e.path) for e in experiments],
        "store": experiments[0].store,
        "n_folds": experiments[0].n_folds,
        "split_seed": experiments[0].seed,
        "alpha": comb.alpha,
        "centre": comb.centre,
        "members": members,
        "n_candidates": len(candidates),
        "n_seed_bags": bags,
        "n_rows": len(rows.target),
        "n_subjects": len(np.unique(rows.subject)),
        "top_k": req.top_k,
        "size": req.size,
        "max_models": req.max_models,
        # Refit members hold no rows out: every score here is the fold models' (nested).
        "refit": req.refit,
        "n_boot": req.n_boot,
        "scores": scores_table(scores, candidates),
        "seeds": {"per_trial": req.seeds, "spread": spread},
    }
    if storage.is_remote(req.out):
        local = storage.local_mirror(req.out)
        write_ensemble(local, description, checkpoints)
        publish_ensemble(local, storage.normalize(req.out))
    else:
        write_ensemble(Path(req.out), description, checkpoints)
    return EnsembleResult(scores, candidates, shipped, guard, description=description)


def scores_table(scores: Scores, candidates: list[Candidate]) -> dict[str, Any]:
    best = candidates[scores.best_single]
    return {
        "best_single": {
            "member": best.label,
            "oof_nrmse": scores.best_single_nrmse,
            "nested_nrmse": scores.best_single_nested_nrmse,
        },
        "mean_predictor_nested_nrmse": scores.mean_predictor_nrmse,
        "methods": {
            name: {
                **{k: v for k, v in asdict(s).items() if k not in ("combination", "method")},
                "alpha": s.combination.alpha,
                "members_used": len(s.combination.members),
            }
            for name, s in scores.methods.items()
        },
    }


def format_report(result: EnsembleResult) -> str:
    """The printed table: one row per method, nested beside naive, against the baselines."""
    s = result.scores
    header = (
        f"{'method':<9} {'nested NRMSE [95% CI]':<26} {'gain vs best [95% CI]':<26} "
        f"{'naive (in-sample)':>17} {'alpha':>6} {'members':>8}"
    )
    lines = [header]
    for name, m in s.methods.items():
        mark = "*" if name == result.description["method"] else " "
        lo, hi = m.nested_interval
        glo, ghi = m.gain_interval
        lines.append(
            f"{name + mark:<9} {m.nested_nrmse:.4f} [{lo:.4f}, {hi:.4f}]{'':<5} "
            f"{m.gain:+7.2%} [{glo:+.2%}, {ghi:+.2%}]{'':<1} "
            f"{m.naive_nrmse:>17.4f} {m.combination.alpha:>6.3f} {len(m.combination.members):>8}"
        )
    best = result.candidates[s.best_single]
    lines.append(
        f"best single trial: {s.best_single_nrmse:.4f} ({best.label}, OOF; chosen in-sample), "
        f"{s.best_single_nested_nrmse:.4f} chosen nested"
    )
    lines.append(f"mean predictor:    {s.mean_predictor_nrmse:.4f} (nested: each fold's own mean)")
    spread = result.description["seeds"]["spread"]
    if spread:
        median = float(np.median([v["std"] for v in spread.values()]))
        for trial, v in spread.items():
            lines.append(
                f"seed spread {trial}: std {v['std']:.4f} over seeds {v['seeds']} "
                f"(OOF {', '.join(f'{x:.4f}' for x in v['oof_nrmse'])}); "
                f"their seed bag {v['bag_oof_nrmse']:.4f}"
            )
        gain = s.best_single_nrmse - s.methods[result.description["method"]].nested_nrmse
        if gain < median:
            lines.append(
                f"the gain over the best single trial ({gain:+.4f} NRMSE) is smaller than "
                f"the seed-to-seed spread ({median:.4f}): it is noise"
            )
    chosen = s.methods[result.description["method"]]
    if chosen.gain_interval[0] <= 0 <= chosen.gain_interval[1]:
        lines.append(
            f"{chosen.method}'s gain over the best single trial has a 95% interval that "
            f"includes 0: on these subjects it is not distinguishable from that trial"
        )
    if result.description.get("why"):
        lines.append(result.description["why"])
    if result.guard:
        lines.append(result.guard)
    desc = result.description
    lines.append(
        f"shipped: {desc['shipped']}, {len(desc['members'])} member(s), "
        f"alpha {desc['alpha']:.3f}, centre {desc['centre']:.4f}"
    )
    if desc.get("refit") and desc["members"]:
        lines.append(
            f"refit: each member is one model trained on every subject (a seed bag: one "
            f"per seed) instead of its {desc['n_folds']} fold models; the scores above are "
            f"the fold models' nested out-of-fold scores (a refit model has no held-out "
            f"rows of its own)"
        )
    return "\n".join(lines)
