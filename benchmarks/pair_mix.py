"""What a second model could add to a first: error correlation and the best in-sample mix.

Reads two run folders with out-of-fold predictions on the same windows (an ``eegtune cv
--out`` folder, or a trial's folder ``EXPERIMENT/folds/<id>``), and prints each one's
pooled NRMSE, the correlation of their errors, and the NRMSE of ``(1 − w)·a + w·b`` for
w from 0 to 0.5. The mix is fit and scored on the same rows: an upper bound on what
averaging the two could gain, not an estimate.

    .venv/bin/python benchmarks/pair_mix.py \\
        /tmp/ens_bench/runs/c1_softargmax_tcn/folds/771dd706 /tmp/ens_bench/dense_attention_cv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from eegtune.ensembles.candidates import ROW_KEY
from eegtune.errors import MissingFileError
from eegtune.metrics import nrmse
from eegtune.training.run_files import oof_frame


def _oof(run: Path, n_folds: int) -> pd.DataFrame:
    try:
        return oof_frame(run, n_folds)
    except MissingFileError as exc:
        raise SystemExit(str(exc)) from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="the first model's run folder")
    ap.add_argument("b", type=Path, help="the second model's run folder")
    ap.add_argument("--folds", type=int, default=4, help="folds of each run (default: 4)")
    args = ap.parse_args()

    a_oof, b_oof = _oof(args.a, args.folds), _oof(args.b, args.folds)
    both = a_oof.merge(b_oof, on=ROW_KEY, suffixes=("_a", "_b"), validate="1:1")
    if not np.allclose(both["target_a"], both["target_b"]):
        raise SystemExit("the two runs disagree on the targets: not the same store")
    y = both["target_a"].to_numpy(np.float64)
    a, b = (both[f"prediction_{k}"].to_numpy(np.float64) for k in ("a", "b"))
    print(f"{len(y)} windows in both; a {nrmse(y, a):.4f}, b {nrmse(y, b):.4f} (pooled OOF)")
    print(f"error correlation: {np.corrcoef(y - a, y - b)[0, 1]:.3f}")
    mixes = {w: nrmse(y, (1 - w) * a + w * b) for w in np.round(np.linspace(0, 0.5, 11), 2)}
    print("w: " + ", ".join(f"{w:.2f} {v:.4f}" for w, v in mixes.items()))
    w_best = min(mixes, key=mixes.get)
    print(f"best in-sample mix: w {w_best:.2f}, {1 - mixes[w_best] / mixes[0.0]:+.2%} against a")


if __name__ == "__main__":
    main()
