"""Replay stopping rules on trials that ran to the end: the same configurations, every rule.

A live study compares schedulers through the searcher too: each rule tells TPE different
things, so the arms soon try different configurations, and a pair's outcome is as much
the searcher's luck as the rule's. Here the configurations are fixed. The input is the
random + FIFO arms of ``benchmarks/search_efficiency.py`` (every trial ran every fold to
the last epoch, and each epoch's report holds every fold's inner-validation RMSE), and
each rule replays the trials in their order:

- **ASHA**: Ray Tune's own ``ASHAScheduler``, built as ``eegtune tune`` builds it, fed
  each trial's pooled epoch reports;
- **racing**: the product's ``FoldRacer`` and ``RaceBoard`` (plus ASHA, as under
  ``--scheduler race``), fed each fold's epoch reports, at the rungs the rule names.

What is modelled, not replayed, is time: two workers, every epoch the same length, so a
trial's folds 0 and 1 train side by side, then folds 2 and 3 (as one trial at a time on
a 2-CPU fold pool does); the racer is asked after every epoch step, before ASHA, as
``drive_trial`` does. A stopped trial costs the fold-epochs trained by then.

Per rule it prints each pair's fold-epochs against ASHA's, the median saving, the stops,
the pairs whose best trial was stopped (a lost winner) and by which scheduler, and how
much worse the best trial kept is. Each ``--race-keep`` runs as the product runs it
(a stopped trial filed with ASHA at its rung) and as it ran before ("not filed").
First it checks the replay against the live arms of the same study: ASHA against the
``asha`` arms, and with ``--check-race`` the board against another study's race arms,
fed their saved posts, at the keep and confidence they ran with. The time model and the
racer's calls have no such check: no live race arm ran the random arms' trials.

    .venv/bin/python benchmarks/race_replay.py --arms /tmp/search_eff/runs \\
        --check-race /tmp/search_eff_keep25/runs
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from eegtune.distributed.fold_pooling import VAL_METRIC
from eegtune.distributed.fold_race import FoldRacer, RaceBoard, race_rungs
from eegtune.distributed.trial_driver import EpochPooler
from eegtune.distributed.tune import asha_scheduler


@dataclass
class Trial:
    """One trial that ran to the end: each fold's inner-validation RMSE per epoch."""

    name: str
    fold_rmse: np.ndarray  # (epochs, folds)
    pooled: list[float]  # the pooled report per epoch, as ASHA saw it
    objective: float  # what the searcher was told at the end


def load_arm(arm: Path) -> list[Trial]:
    """The arm's trials in the order Tune started them."""
    trials = []
    for reports in _runs(arm).values():
        epochs = [r for r in reports if not r.get("final")]
        final = next(r for r in reports if r.get("final"))
        trials.append(
            Trial(
                name=reports[0]["trial_id"],
                fold_rmse=np.array([r["fold_val_rmse"] for r in epochs]),
                pooled=[r[VAL_METRIC] for r in epochs],
                objective=final[VAL_METRIC],
            )
        )
    return trials


def target_std(trial: Trial) -> float:
    """The inner-validation targets' spread, from RMSE and NRMSE (the same for every trial
    of a study: the folds are the same); it puts the board's estimates in NRMSE."""
    rmse = np.sqrt((trial.fold_rmse**2).mean(axis=1))
    return float(np.median(rmse / np.asarray(trial.pooled)))


def _report(rmse: float, epoch: int, std: float) -> dict[str, float]:
    # The board judges by RMSE (sqrt(sse / n)) and estimates by NRMSE: one window with the
    # targets' spread carries both.
    return {
        "epoch": epoch,
        "inner_val_rmse": rmse,
        "inner_val_n": 1.0,
        "inner_val_sse": rmse * rmse,
        "inner_val_sum_y": 0.0,
        "inner_val_sum_y2": std * std,
    }


@dataclass
class Outcome:
    fold_epochs: int  # every fold-epoch trained, stopped trials' included
    stopped: dict[str, str]  # trial -> "asha", or the race's reason


def _asha(max_epochs: int, grace: int):
    asha = asha_scheduler(max_epochs, grace)
    asha.set_search_properties(VAL_METRIC, "min")
    return asha


def replay(
    trials: list[Trial],
    max_epochs: int,
    grace: int,
    workers: int,
    race: dict | None,
) -> Outcome:
    """Run the trials one at a time under ASHA, plus racing when ``race`` gives its
    board's settings and rungs."""
    asha = _asha(max_epochs, grace)
    board = RaceBoard(race["confidence"], keep=race["keep"]) if race else None
    std = target_std(trials[0])
    spent, stopped = 0, {}
    for trial in trials:
        racer = FoldRacer(board, trial.name, race["rungs"]) if race else None
        trained, why = _replay_trial(trial, asha, racer, workers, std, bool(race and race["file"]))
        spent += trained
        if why is not None:
            stopped[trial.name] = why
    return Outcome(spent, stopped)


def _replay_trial(
    trial: Trial, asha, racer: FoldRacer | None, workers: int, std: float, file: bool
) -> tuple[int, str | None]:
    """(fold-epochs trained, why it stopped: "asha", the race's reason, or None)."""
    handle = SimpleNamespace(trial_id=trial.name)
    asha.on_trial_add(None, handle)
    n_epochs, n_folds = trial.fold_rmse.shape
    epochs: list[dict[int, dict]] = [{} for _ in range(n_folds)]
    done = [0] * n_folds
    reported = 0
    for first in range(0, n_folds, workers):  # a wave of folds, side by side
        for e in range(n_epochs):
            for k in range(first, min(first + workers, n_folds)):
                epochs[k][e] = _report(float(trial.fold_rmse[e, k]), e, std)
                done[k] = e + 1
            verdict = racer.check(epochs, [d == n_epochs for d in done]) if racer else None
            if verdict is not None:
                # The trial's last report, as its driver sends it to Tune.
                report = EpochPooler(n_folds).race_report(verdict)
                if not file:
                    del report["epoch"]  # as it was: ASHA ignored it
                asha.on_trial_result(None, handle, report)
                asha.on_trial_complete(None, handle, report)
                return sum(done), verdict.reason()
            # Pooled epochs are due once every fold has trained them.
            while reported < min(done):
                reported += 1
                result = {"epoch": reported, VAL_METRIC: trial.pooled[reported - 1]}
                if asha.on_trial_result(None, handle, result) == "STOP":
                    return sum(done), "asha"
    asha.on_trial_complete(None, handle, {"epoch": n_epochs + 1, VAL_METRIC: trial.objective})
    return sum(done), None


def check_asha(arm: Path, max_epochs: int, grace: int) -> tuple[int, int]:
    """(agreeing, trials): Ray's ASHA as replayed here, fed a live ASHA arm's pooled
    reports, stops the trials the live arm stopped, at the same epochs."""
    asha = _asha(max_epochs, grace)
    agree, runs = 0, _runs(arm)
    for reports in runs.values():
        handle = SimpleNamespace(trial_id=reports[0]["trial_id"])
        asha.on_trial_add(None, handle)
        live = None if reports[-1].get("final") else reports[-1]["epoch"]
        replayed = None
        for report in reports:
            if report.get("final"):
                asha.on_trial_complete(None, handle, report)
            elif asha.on_trial_result(None, handle, report) == "STOP":
                replayed = report["epoch"]
                break
        agree += live == replayed
    return agree, len(runs)


def check_board(arm: Path, keep: float, confidence: float) -> tuple[int, int]:
    """(agreeing, trials): the board, fed a live race arm's saved posts in trial order,
    stops the trials the live arm's board stopped, at the same rung and folds."""
    board = RaceBoard(confidence, keep=keep)
    agree, runs = 0, _runs(arm)
    for reports in runs.values():
        trial = reports[0]["trial_id"]
        posts = json.loads((arm / "race_board" / f"{trial}.json").read_text())
        replayed = None
        for rung in sorted(posts, key=int):
            for fold in sorted(posts[rung], key=int):
                verdict = board.post(trial, int(rung), int(fold), posts[rung][fold])
                if verdict.stop and replayed is None:
                    replayed = (verdict.rung, list(verdict.folds))
        saved = arm / "folds" / trial / "race.json"
        live = json.loads(saved.read_text()) if saved.exists() else None
        agree += replayed == (None if live is None else (live["rung"], live["folds"]))
    return agree, len(runs)


def _runs(arm: Path) -> dict[int, list[dict]]:
    """Each trial's reports, by Tune's trial counter (the order the trials ran in)."""
    runs = {}
    for path in arm.glob("ray/*/trial_*/result.json"):
        lines = path.read_text().splitlines()
        runs[int(path.parent.name.split("_")[2])] = [json.loads(x) for x in lines if x.strip()]
    return dict(sorted(runs.items()))


# The bars of --race-keep, each as the product runs it (a stopped trial filed with ASHA at
# its rung) and as it ran before (not filed: ASHA's rungs lacked the trials racing stopped).
KEEPS = (0.0, 0.125, 0.25, 0.5)
RULES: dict[str, dict | None] = {
    "asha": None,
    **{
        f"race, keep {keep:g}" + ("" if filed else ", not filed"): {"keep": keep, "file": filed}
        for filed in (True, False)
        for keep in KEEPS
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=Path, default=Path("/tmp/search_eff/runs"))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--grace", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument(
        "--rungs",
        help="epochs to race at, e.g. 2,3,4,6 (default: ASHA's, as the product races; a stop "
        "at another epoch is filed, as Ray files it, at ASHA's last rung before it, if any)",
    )
    parser.add_argument(
        "--check-race",
        type=Path,
        help="a live study's runs folder: check the board against its race arms (at the "
        "keep and confidence they ran with)",
    )
    args = parser.parse_args()

    rows = []
    for pair in range(args.pairs):
        trials = load_arm(args.arms / f"pair{pair}_random")
        max_epochs = trials[0].fold_rmse.shape[0]
        if (arm := args.arms / f"pair{pair}_asha").exists():
            n, of = check_asha(arm, max_epochs, args.grace)
            print(f"pair {pair}: replayed ASHA agrees with the live ASHA arm on {n} of {of}")
        if args.check_race is not None:
            arm = args.check_race / f"pair{pair}_race"
            ran = json.loads((arm / "tune_job.json").read_text())
            n, of = check_board(arm, ran["race_keep"], ran["race_confidence"])
            print(
                f"pair {pair}: replayed board agrees with the live race arm (keep "
                f"{ran['race_keep']:g}) on {n} of {of}"
            )
        best = min(trials, key=lambda t: t.objective)
        for rule, settings in RULES.items():
            race = None
            if settings is not None:
                rungs = (
                    [int(r) for r in args.rungs.split(",")]
                    if args.rungs
                    else race_rungs(args.grace, max_epochs)
                )
                race = {**settings, "confidence": args.confidence, "rungs": rungs}
            out = replay(trials, max_epochs, args.grace, args.workers, race)
            kept = min(t.objective for t in trials if t.name not in out.stopped)
            lost = out.stopped.get(best.name)
            rows.append(
                {
                    "pair": pair,
                    "rule": rule,
                    "fold_epochs": out.fold_epochs,
                    "best_kept": kept,
                    "best_all": best.objective,
                    "lost_to": None if lost is None else ("asha" if lost == "asha" else "race"),
                    "race_stops": sum(r != "asha" for r in out.stopped.values()),
                    "asha_stops": sum(r == "asha" for r in out.stopped.values()),
                }
            )
            if lost is not None:
                print(f"pair {pair}, {rule}: the pair's best trial stopped ({lost})")
    table = pd.DataFrame(rows)
    asha = table[table["rule"] == "asha"].set_index("pair")["fold_epochs"]
    table["ratio"] = table["fold_epochs"] / table["pair"].map(asha)
    print(
        f"\n{len(trials)} trials per pair, random arm, confidence {args.confidence}, "
        f"race rungs {args.rungs or 'as ASHA'}\n"
        "\n| rule | fold-epochs ÷ ASHA's, pairs 0–{last} | median saved | stops (race / "
        "ASHA) | pairs whose best trial was stopped (by) | best kept − best, per pair |\n"
        "|---|---|---|---|---|---|".replace("{last}", str(args.pairs - 1))
    )
    for rule, r in table.groupby("rule", sort=False):
        lost = r["lost_to"].dropna()
        by = ", ".join(f"{p}: {w}" for p, w in zip(r.loc[lost.index, "pair"], lost, strict=True))
        print(
            f"| {rule} | {' '.join(f'{x:.2f}' for x in r['ratio'])} | "
            f"{1 - r['ratio'].median():.0%} | {r['race_stops'].sum()} / {r['asha_stops'].sum()} "
            f"| {len(lost)}{f' ({by})' if by else ''} | "
            f"{' '.join(f'{x:+.3f}' for x in r['best_kept'] - r['best_all'])} |"
        )


if __name__ == "__main__":
    main()
