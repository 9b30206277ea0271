"""Does a submission zip predict the same under the challenge's torch as under ours?

    make zip-check ZIP=demo_out/submission.zip
    # or, with a Python that has the scorer's torch:
    .venv/bin/python scripts/zip_check.py --zip Z --python .venv-torch2.2/bin/python

The scorer runs torch 2.2.2 (CHALLENGE.md), and eegtune trains with a newer one. This
unpacks the zip once and runs it in two fresh processes, one per interpreter (this one
and ``--python``): each loads both weights files with ``weights_only=True`` (the zip's
own ``submission.py`` does), builds both models, and predicts the same float32 volt
windows at batch size 1, as the scorer does. The predictions must agree within
``--tolerance`` (1e-5). Exit 0 when both challenges agree, 1 when not, 2 when a side
fails; either way the table says which torch and numpy each side ran.

Only the standard library, numpy and torch are imported here, so the script runs under
either interpreter; the windows are written once by this side and read by both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

# Runs in each interpreter, in the unpacked zip's folder.
CHILD = r"""
import json, sys
import numpy as np, torch
sys.path.insert(0, ".")
from submission import Submission
x = torch.from_numpy(np.load(sys.argv[1]))
out = {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
torch.set_num_threads(1)
for challenge in (1, 2):
    model = getattr(Submission(100, "cpu"), f"get_model_challenge_{challenge}")()
    model.eval()
    with torch.inference_mode():
        preds = [model.forward(x[i : i + 1]) for i in range(len(x))]
    assert all(tuple(p.shape) == (1, 1) for p in preds), [tuple(p.shape) for p in preds]
    out[f"c{challenge}"] = [float(p[0][0]) for p in preds]
print(json.dumps(out))
"""


def windows(n: int, seed: int) -> np.ndarray:
    """Float32 volts as the scorer feeds them: about 10 µV of noise with per-channel
    offsets and a slow drift, so a zip that forgot the unit could not pass by luck."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2.0, 200)
    noise = 10e-6 * rng.standard_normal((n, 129, 200))
    offsets = 30e-6 * rng.standard_normal((1, 129, 1))
    drift = 5e-6 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3, (n, 1, 1)))
    return (noise + offsets + drift).astype(np.float32)


def run_side(python: str, zip_dir: Path, x_file: Path) -> dict:
    done = subprocess.run(
        [python, "-I", "-c", CHILD, str(x_file)], cwd=zip_dir, capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        print(f"{python}: the zip failed to load or predict:\n{tail}", file=sys.stderr)
        sys.exit(2)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", required=True, type=Path)
    ap.add_argument("--python", required=True, help="an interpreter with the scorer's torch")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()
    if not args.zip.is_file():
        print(f"{args.zip}: no such zip", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="zip_check_") as tmp:
        zip_dir = Path(tmp) / "zip"
        with zipfile.ZipFile(args.zip) as zf:
            zf.extractall(zip_dir)
        x_file = Path(tmp) / "windows.npy"
        np.save(x_file, windows(args.windows, args.seed))
        sides = {"this": run_side(sys.executable, zip_dir, x_file)}
        # The sides run in the zip's folder: a relative interpreter path must not move.
        python = os.path.abspath(args.python) if os.sep in args.python else args.python
        sides["scorer's"] = run_side(python, zip_dir, x_file)
    print(f"{args.zip}: {args.windows} windows of float32 volts, batch size 1, CPU")
    for name, side in sides.items():
        print(f"  {name:<9} torch {side['torch']}, numpy {side['numpy']}, Python {side['python']}")
    ok = True
    for c in (1, 2):
        ours, theirs = (np.asarray(sides[s][f"c{c}"]) for s in ("this", "scorer's"))
        gap = float(np.abs(ours - theirs).max())
        spread = float(ours.max() - ours.min())
        agree = gap <= args.tolerance
        ok &= agree
        print(
            f"  Challenge {c}: largest gap {gap:.2e} (tolerance {args.tolerance:.0e}); "
            f"predictions span {spread:.4f}: {'agree' if agree else 'DIFFER'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
