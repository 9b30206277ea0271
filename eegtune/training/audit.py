"""``eegtune audit``: show a store's folds and prove they cannot leak."""

from __future__ import annotations

from pathlib import Path

from eegtune.training.folds import audit_folds, inner_split, make_folds, store_subjects


def audit_store(
    store: str | Path,
    challenge: int,
    split: str,
    n_folds: int,
    seed: int,
    inner_fraction: float = 0.2,
) -> tuple[str, list[str]]:
    """A per-fold table and the list of problems (empty when the split is leak-free)."""
    subjects = store_subjects(store, challenge)
    folds = make_folds(subjects, split, n_folds, seed)
    problems = audit_folds(folds, subjects["subject"].tolist())
    windows = subjects.set_index("subject")["n_windows"]
    lines = [
        "fold  name            fit subj  inner-val subj  test subj  test windows  test target mean"
    ]
    for fold in folds:
        fit, inner = inner_split(fold.train, inner_fraction, seed, fold.index)
        if set(inner) & set(fold.test) or set(fit) & set(fold.test) or set(fit) & set(inner):
            problems.append(f"{fold.name}: the inner validation split overlaps another set")
        test_mean = subjects.set_index("subject").loc[list(fold.test), "target"].mean()
        lines.append(
            f"{fold.index:>4}  {fold.name:<14}  {len(fit):>8}  {len(inner):>14}  "
            f"{len(fold.test):>9}  "
            f"{int(windows.loc[list(fold.test)].sum()):>12}  {test_mean:>16.3f}"
        )
    lines.append(
        f"{len(subjects)} subjects, {int(windows.sum())} windows; "
        + (
            "no leaks: every subject is held out exactly once, never trained on in its own fold"
            if not problems
            else f"{len(problems)} problem(s)"
        )
    )
    return "\n".join(lines + [f"  {p}" for p in problems]), problems
