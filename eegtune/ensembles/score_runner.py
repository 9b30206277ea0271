"""Runs a submission the way the challenge's scorer does, in a process of its own.

Started by ``eegtune score`` as ``python -I -S score_runner.py …``: no site-packages
processing, no user paths, no current folder. ``sys.path`` is set here to the unpacked
zip, the standard library and the site-packages folders given on the command line, and
a finder refuses any import of eegtune, so the zip must stand on its own. It imports only
the standard library, numpy and torch, like the zip.

For each recording file, in order, the windows go through ``model.forward`` under
``torch.inference_mode()`` in batches of ``--batch-size`` (1 is what the scorer does);
the (B, 1) outputs are checked and saved with the seconds spent in the model.
"""

import argparse
import importlib.abc
import importlib.util
import json
import sys
import time


class _NoEegtune(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "eegtune" or name.startswith("eegtune."):
            raise ImportError(f"the submission imported {name!r}: the zip must not need eegtune")
        return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zip-dir", required=True)
    ap.add_argument("--site", action="append", default=[])
    ap.add_argument("--challenge", type=int, required=True)
    ap.add_argument("--windows-list", required=True, help="a file naming one .npy per line")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    stdlib = [p for p in sys.path if p and "site-packages" not in p and p != args.zip_dir]
    sys.path[:] = [args.zip_dir, *stdlib, *args.site]
    sys.meta_path.insert(0, _NoEegtune())

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spec = importlib.util.spec_from_file_location("submission", f"{args.zip_dir}/submission.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    sub = module.Submission(100, args.device)
    model = getattr(sub, f"get_model_challenge_{args.challenge}")()
    model.eval()
    loaded = time.perf_counter() - t0
    preds, in_model = [], 0.0
    with torch.inference_mode():
        with open(args.windows_list) as f:
            paths = [line.strip() for line in f if line.strip()]
        for path in paths:
            x = np.load(path)
            for start in range(0, len(x), args.batch_size):
                batch = torch.from_numpy(x[start : start + args.batch_size]).to(args.device)
                t1 = time.perf_counter()
                y = model.forward(batch)
                in_model += time.perf_counter() - t1
                if tuple(y.shape) != (len(batch), 1):
                    raise ValueError(f"the model returned {tuple(y.shape)}, not ({len(batch)}, 1)")
                preds.append(y[:, 0].float().cpu().numpy())
    out = np.concatenate(preds) if preds else np.zeros(0, dtype=np.float32)
    np.save(args.out, out)
    timing = {
        "load_seconds": loaded,
        "model_seconds": in_model,
        "total_seconds": time.perf_counter() - t0,
    }
    with open(args.out + ".json", "w") as f:
        json.dump(timing, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
