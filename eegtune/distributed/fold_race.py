"""Fold racing: stop a trial confidently behind its rivals on the folds run so far.

ASHA judges a trial by one number, its pooled inner-validation NRMSE at a rung, and only
once every fold has reached that rung. The folds carry more than that: a configuration
worse than its rivals on every fold can be dropped with confidence before its later
folds run, and one worse on average only because of one odd fold should not be. Racing
(SMAC's intensification across instances, Optuna's ``WilcoxonPruner``) compares
configurations instance by instance; here the instances are the experiment's
subject-grouped folds.

At each rung (the epochs ASHA would use: ``grace``, ``2·grace``, ``4·grace``, … before the
last epoch) every fold of a trial posts its best inner-validation figures so far to the
experiment's :class:`RaceBoard`. The board ranks the trial's rivals on the folds it has
reached (by mean log error) and takes the **bar**: the rival ranked
``1 + ⌈(n-1)·keep⌉`` of ``n``. With ``keep = 1/η`` that is the rival at ASHA's cut,
behind which ASHA's percentile rule (keep the top ``1/η``) would stop a trial; with
``keep = 0`` it is the leader. The default, ``keep = 1/4``, lies between: over five seed
pairs it saved more fold-epochs than ASHA's cut and, like it, stopped no trial that would
have won, where the leader stopped winners in two pairs (BENCHMARKS.md, "Search
efficiency over seed pairs"). It tests the per-fold log ratios
``d_k = log(rmse_trial_k / rmse_bar_k)`` (scale-free: folds differ in difficulty) with a
one-sided paired t-test, and stops the trial when it is worse than the bar with the
confidence the user set and by at least ``margin``. At ``keep = 1/η`` this is ASHA's cut
applied early, on the folds run so far and by a different figure (mean log error per
fold, not the pooled NRMSE of all folds); at the default it is stricter than ASHA, so it
can stop trials ASHA would have kept. At any ``keep`` above 0, with two rivals or more,
it never stops a trial for trailing the leader alone. The board also holds the trials of
earlier runs of a resumed search, which a new run's ASHA has not seen. Where folds outnumber
the free slots, a trial that lost on its first folds never starts its later ones (the
fold pool drops them from its queue). Every stop is saved with its reason
(:func:`write_verdict`) for the results table and the report. The board saves each
trial's posts to ``race_board/<trial>.json`` in the experiment, so a resumed search
races its new trials against the earlier ones too.

ASHA stays on under ``--scheduler race``: racing adds fold-level stops, it does not
replace the epoch-level ones. A stopped trial's last report carries its rung as its
epoch, so ASHA files the board's estimate there as if it had judged the trial: its cut
stays a median over every trial that reached the rung. Without that, the weak trials
racing stops early were missing from ASHA's rungs and its cut rose: replayed on 5 pairs'
random trials at ``keep = 1/2``, ASHA then stopped the best trial of 2 pairs, and of
none once filed (``benchmarks/race_replay.py``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from eegtune import storage
from eegtune.distributed.fold_pooling import SUM_KEYS
from eegtune.metrics import pooled_nrmse

logger = logging.getLogger(__name__)

# rung -> trial -> fold -> the fold's error sums (n, sse, sum_y, sum_y2)
Scores = dict[int, dict[str, dict[int, dict[str, float]]]]

RACE_VERDICT = "race.json"  # in a trial's run folder: why racing stopped it
RACE_BOARD = "race_board"  # in the experiment's folder: one file of posts per trial
DEFAULT_CONFIDENCE = 0.9
DEFAULT_MARGIN = 0.01  # a trial less than 1% worse is never stopped: a tie, not a loss
DEFAULT_REDUCTION = 2  # ASHA's reduction factor η: a rung keeps the top 1/η of its trials
# The share of a trial's rivals it may trail and still not be stopped: 1/η tests it
# against ASHA's cut; 0 against the leader (stops more, and sooner). 1/4 measured best
# of the three: more saved than the cut, no winner stopped (the leader stopped some).
DEFAULT_KEEP = 0.25


def race_rungs(grace_period: int, max_epochs: int) -> list[int]:
    """Epochs done at which folds race: ASHA's rungs (grace × η^k), strictly before the
    last epoch (a stop there would save nothing and lose the trial's predictions)."""
    rungs, rung = [], max(1, grace_period)
    while rung < max_epochs:
        rungs.append(rung)
        rung *= DEFAULT_REDUCTION
    return rungs


def paired_test(errors: Sequence[float], leader: Sequence[float]) -> tuple[float, float]:
    """(mean log ratio, one-sided p) of a paired t-test that ``errors`` exceed ``leader``.

    Fewer than two pairs, or a mean ratio at or below 1, give p = 1; pairs that all differ
    by the same positive ratio give p = 0 (no spread to doubt them by)."""
    from scipy import stats

    d = np.log(np.asarray(errors, dtype=float)) - np.log(np.asarray(leader, dtype=float))
    mean = float(d.mean()) if len(d) else 0.0
    if len(d) < 2 or mean <= 0:
        return mean, 1.0
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return mean, 0.0
    t = mean / (sd / math.sqrt(len(d)))
    return mean, float(stats.t.sf(t, len(d) - 1))


@dataclass(frozen=True)
class Verdict:
    """The board's judgement of one trial at one rung."""

    trial: str
    rung: int  # epochs done
    folds: tuple[int, ...]  # the folds compared
    leader: str | None  # the best rival on these folds; None: no rival had reached them
    log_ratio: float  # mean of log(trial / bar) over the folds
    p_value: float
    stop: bool
    # The trial's pooled inner-validation NRMSE on every fold, estimated from the folds it
    # ran and the leader's: what the searcher is told of a stopped trial (its own pooled
    # figure on easy folds alone would flatter it).
    estimate: float
    bar: str | None = None  # the rival tested against: the one ``keep`` names
    bar_rank: int = 1  # its rank among the rivals (1: the leader)
    n_rivals: int = 0

    def reason(self) -> str:
        if self.leader is None:
            return f"no rival at epoch {self.rung} yet"
        rank = "" if self.bar_rank == 1 else f" (no. {self.bar_rank} of {self.n_rivals} rivals)"
        return (
            f"epoch {self.rung}: {math.exp(self.log_ratio) - 1:+.1%} error against "
            f"{self.bar or self.leader}{rank} on folds {list(self.folds)} "
            f"(paired t, one-sided p {self.p_value:.3g})"
        )


def _rmse(sums: dict[str, float]) -> float:
    return math.sqrt(sums["sse"] / sums["n"])


def _finite(sums: dict[str, float]) -> bool:
    return sums["n"] > 0 and math.isfinite(sums["sse"])


class RaceBoard:
    """Every trial's per-fold figures at every rung; judges a trial against its bar.

    Runs as one Ray actor per experiment (:func:`start_board`), or in process in tests.
    With a ``record`` (a folder or URI), it starts from the posts saved there and saves
    each trial's posts as they come (one small file per trial: a post costs one write of
    that trial's figures, whatever the experiment's size), so the trials of an
    interrupted run stay in the race after ``--resume``."""

    def __init__(
        self,
        confidence: float = DEFAULT_CONFIDENCE,
        margin: float = DEFAULT_MARGIN,
        record: str | None = None,
        keep: float = DEFAULT_KEEP,
        saved: Scores | None = None,
    ) -> None:
        if not 0.5 <= confidence < 1:
            raise ValueError(f"race confidence must be in [0.5, 1), got {confidence}")
        if not 0 <= keep <= 1:
            raise ValueError(f"race keep must be in [0, 1], got {keep}")
        self.confidence = confidence
        self.margin = margin
        self.keep = keep
        self.record = record
        # The posts at ``record``; ``saved`` when the caller has read them already.
        if saved is None:
            saved = read_board(record) if record else {}
        self.scores: Scores = saved

    def post(self, trial: str, rung: int, fold: int, sums: dict[str, float]) -> Verdict:
        """Record a fold's figures at a rung; judge the trial on every fold it has there."""
        self.scores.setdefault(rung, {}).setdefault(trial, {})[fold] = dict(sums)
        if self.record:
            self._save(trial)
        return self.judge(trial, rung)

    def _save(self, trial: str) -> None:
        mine = {rung: at[trial] for rung, at in self.scores.items() if trial in at}
        try:
            storage.write_text(storage.join(self.record, f"{trial}.json"), json.dumps(mine))
        except OSError as exc:  # the record only serves a resume: the race goes on
            logger.warning("race board: cannot save %s's posts (%s)", trial, exc)

    def judge(self, trial: str, rung: int) -> Verdict:
        at_rung = self.scores.get(rung, {})
        mine = at_rung.get(trial, {})
        folds = tuple(sorted(mine))
        own = pooled_nrmse([mine[k] for k in folds]) if folds else float("nan")
        rivals = {
            t: s
            for t, s in at_rung.items()
            if t != trial and folds and all(k in s and _finite(s[k]) for k in folds)
        }
        # A diverged fold (no finite error) is left to ASHA and the searcher: it can
        # neither lead the race nor be judged in it.
        if not rivals or not all(_finite(mine[k]) for k in folds):
            return Verdict(trial, rung, folds, None, 0.0, 1.0, False, own)

        def mean_log(s: dict[int, dict[str, float]]) -> float:
            return float(np.mean([math.log(_rmse(s[k])) for k in folds]))

        ranked = sorted(rivals, key=lambda t: mean_log(rivals[t]))
        leader = ranked[0]
        # With keep = 1/η, ASHA's cut among the n rivals (its nanpercentile at 1 - 1/η):
        # the trial is out once 1 + ⌈(n-1)·keep⌉ rivals are ahead of it. (The epsilon
        # keeps 6 · (1/3) from rounding up past 2.)
        n = len(ranked)
        bar_rank = min(1 + math.ceil((n - 1) * self.keep - 1e-9), n)
        bar = ranked[bar_rank - 1]
        log_ratio, p = paired_test(
            [_rmse(mine[k]) for k in folds], [_rmse(rivals[bar][k]) for k in folds]
        )
        stop = p < 1 - self.confidence and log_ratio >= math.log1p(self.margin)
        # Fold difficulty corrected by the leader: own(F) × leader(all) / leader(F).
        theirs = rivals[leader]
        leader_all = pooled_nrmse(list(theirs.values()))
        leader_here = pooled_nrmse([theirs[k] for k in folds])
        estimate = own * leader_all / leader_here if leader_here > 0 else own
        return Verdict(
            trial, rung, folds, leader, log_ratio, p, stop, estimate, bar, bar_rank, len(ranked)
        )


def start_board(
    confidence: float,
    margin: float = DEFAULT_MARGIN,
    record: str | None = None,
    keep: float = DEFAULT_KEEP,
    saved: Scores | None = None,
) -> Any:
    """The experiment's board as a Ray actor (no CPU: it only keeps numbers)."""
    import ray

    return ray.remote(num_cpus=0)(RaceBoard).remote(confidence, margin, record, keep, saved)


def read_board(record: str) -> Scores:
    """The posts saved under ``record`` (none if it does not exist yet), keys typed back."""
    scores: Scores = {}
    for name in storage.list_files(record):
        path = storage.join(record, name)
        try:
            saved = json.loads(storage.read_text(path))
            for rung, folds in saved.items():
                scores.setdefault(int(rung), {})[name.removesuffix(".json")] = {
                    int(k): _sums(v) for k, v in folds.items()
                }
        except (ValueError, AttributeError, TypeError, KeyError) as exc:
            raise ValueError(
                f"{path}: not a race board file ({exc!r}); remove it (the trial is then "
                f"left out of the race) or the whole {record}"
            ) from exc
    return scores


def _sums(saved: dict[str, Any]) -> dict[str, float]:
    """One fold's error sums: exactly the keys the board judges by."""
    if set(saved) != set(SUM_KEYS):
        raise KeyError(f"error sums need {sorted(SUM_KEYS)}, got {sorted(saved)}")
    return {key: float(saved[key]) for key in SUM_KEYS}


class FoldRacer:
    """One trial's side of the race: posts each fold's figures as it passes a rung."""

    def __init__(self, board: Any, trial: str, rungs: Sequence[int]) -> None:
        self.board = board
        self.trial = trial
        self.rungs = list(rungs)
        self.posted: set[tuple[int, int]] = set()  # (rung, fold)

    def check(self, epochs: list[dict[int, dict[str, Any]]], ended: list[bool]) -> Verdict | None:
        """Post what is new; the first verdict that stops the trial, else None.

        ``epochs[k]`` holds fold k's epoch reports by epoch index; ``ended[k]`` says the fold
        has finished (early stopping on patience: it keeps its best up to any later rung)."""
        if all(ended):
            return None  # the trial is over: nothing left to save
        for rung in self.rungs:
            for k, reports in enumerate(epochs):
                if (rung, k) in self.posted or not reports:
                    continue
                upto = [m for e, m in reports.items() if e < rung]
                if max(reports) < rung - 1 and not ended[k]:
                    continue  # this fold has not reached the rung yet
                if not upto:
                    continue
                best = min(upto, key=lambda m: m["inner_val_rmse"])
                sums = {key: float(best[f"inner_val_{key}"]) for key in SUM_KEYS}
                self.posted.add((rung, k))
                verdict = _call(self.board, "post", self.trial, rung, k, sums)
                if verdict.stop:
                    return verdict
        return None


def _call(board: Any, method: str, *args: Any) -> Any:
    """Call the board, in process or as a Ray actor."""
    if isinstance(board, RaceBoard):
        return getattr(board, method)(*args)
    import ray

    return ray.get(getattr(board, method).remote(*args))


def write_verdict(run_dir: str, verdict: Verdict) -> None:
    storage.write_text(
        storage.join(run_dir, RACE_VERDICT),
        json.dumps({**asdict(verdict), "reason": verdict.reason()}, indent=1),
    )


def read_verdict(run_dir: str) -> dict[str, Any] | None:
    path = storage.join(run_dir, RACE_VERDICT)
    return json.loads(storage.read_text(path)) if storage.exists(path) else None
