"""`eegtune submission`: the exported zip predicts what the ensemble folders predict, in a
process that sees no eegtune, from plain weights files; incomplete folders are refused."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import eegtune
from eegtune.cli import main
from eegtune.ensembles import scoring
from eegtune.ensembles.candidates import experiment_candidates, open_experiment
from eegtune.ensembles.predictor import load_ensemble, write_ensemble

# Every test here builds on the shared 3-trial experiment (minutes on a busy machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PACKAGE = Path(eegtune.__file__).resolve().parent
C1 = {"challenge": 1, "weights": [0.4, 0.6], "alpha": 0.9, "centre": 1.5}
C2 = {"challenge": 2, "weights": [1.0], "alpha": 0.5, "centre": 0.25}
# OpenMP threads that spin-wait against other work on a small machine make a few windows
# take seconds; one thread per process keeps the subprocesses' forward passes in ms.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
EEGTUNE_IMPORT = re.compile(r"^\s*(import|from)\s+eegtune\b", re.MULTILINE)
SUB_IMPORT = re.compile(r"^\s*(?:from|import)\s+(sub_\w+)", re.MULTILINE)


def write_ensemble_dir(experiment: Path, out: Path, spec: dict, first: int = 0) -> Path:
    """An ensemble folder of trials ``first, first + 1, …`` with ``spec``'s weights
    (no weights: the mean predictor)."""
    cands = experiment_candidates(open_experiment(experiment))[first : first + len(spec["weights"])]
    description = {
        "challenge": spec["challenge"],
        "members": [
            {"label": c.label, "weight": w} for c, w in zip(cands, spec["weights"], strict=True)
        ],
        "alpha": spec["alpha"],
        "centre": spec["centre"],
    }
    write_ensemble(out, description, [c.checkpoints() for c in cands])
    return out


def predict(ens_dir: Path, x: np.ndarray) -> np.ndarray:
    """The folder's ensemble on ``x`` in this process, on one thread (see ONE_THREAD)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return load_ensemble(ens_dir)(torch.from_numpy(x)).numpy()[:, 0]
    finally:
        torch.set_num_threads(threads)


def random_windows(n: int, seed: int = 0) -> np.ndarray:
    """µV, as the store holds them."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 129, 200)) * 10).astype(np.float32)


def as_volts(x: np.ndarray) -> np.ndarray:
    """What the scorer feeds the zip for the same signal: float32 volts."""
    return (x.astype(np.float64) * 1e-6).astype(np.float32)


@pytest.fixture(scope="module")
def exported(finished_experiment, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(Challenge 1 folder, Challenge 2 folder, zip): C2 reuses another trial's folds."""
    root = tmp_path_factory.mktemp("submission")
    c1 = write_ensemble_dir(finished_experiment, root / "c1", C1)
    c2 = write_ensemble_dir(finished_experiment, root / "c2", C2, first=2)
    out = root / "submission.zip"
    assert main(["submission", "--c1", str(c1), "--c2", str(c2), "--out", str(out)]) == 0
    return c1, c2, out


def test_zip_predicts_what_the_folders_predict_in_the_scorers_process(
    exported, tmp_path, monkeypatch
):
    for name, value in ONE_THREAD.items():
        monkeypatch.setenv(name, value)
    c1, c2, zip_path = exported
    zip_dir = tmp_path / "unpacked"
    zip_dir.mkdir()
    scoring.unpack_submission(zip_path, zip_dir)
    x = random_windows(7)
    files = [tmp_path / "a.npy", tmp_path / "b.npy"]
    np.save(files[0], as_volts(x[:3]))
    np.save(files[1], as_volts(x[3:]))
    expected = {1: predict(c1, x), 2: predict(c2, x)}
    # The challenges' models must differ, or a swapped weights file would go unnoticed.
    assert np.abs(expected[1] - expected[2]).max() > 1e-3

    # Batch 1 is what the scorer does; 4 splits the first file's 3 windows unevenly.
    for challenge, batch in ((1, 1), (2, 4)):
        out = tmp_path / f"pred_c{challenge}_b{batch}.npy"
        timing = scoring.run_submission(zip_dir, challenge, files, out, batch)
        got = np.load(out)
        assert got.shape == (7,) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected[challenge], rtol=0, atol=1e-5)
        assert 0 <= timing["model_seconds"] <= timing["total_seconds"]


# One fresh `python -I -S` process: only the unpacked zip (without its weights), the
# standard library and site-packages on sys.path, eegtune refused, the weights in the cwd.
CHILD = r"""
import importlib.abc, importlib.util, json, sys
zip_dir, window, sites = sys.argv[1], sys.argv[2], sys.argv[3:]
asked = []

class NoEegtune(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "eegtune":
            asked.append(name)
            raise ImportError(f"eegtune is not available here: {name}")

sys.path[:] = [zip_dir, *[p for p in sys.path if p and "site-packages" not in p], *sites]
sys.meta_path.insert(0, NoEegtune())
import numpy as np, torch

spec = importlib.util.spec_from_file_location("submission", f"{zip_dir}/submission.py")
module = importlib.util.module_from_spec(spec)
sys.modules["submission"] = module
spec.loader.exec_module(module)
sub = module.Submission(100, "cpu")
x = torch.from_numpy(np.load(window))
result = {}
for c in (1, 2):
    model = getattr(sub, f"get_model_challenge_{c}")()
    with torch.no_grad():
        first, second = model(x), model(x)
    result[f"c{c}"] = {
        "shape": list(first.shape),
        "training": any(m.training for m in model.modules()),
        "repeat_equal": bool(torch.equal(first, second)),
        "pred": first[:, 0].tolist(),
    }
try:
    module.Submission(500, "cpu")
    result["sfreq_error"] = None
except ValueError as exc:
    result["sfreq_error"] = str(exc)
result["asked"] = asked
result["eegtune_modules"] = [m for m in sys.modules if m.split(".")[0] == "eegtune"]
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def isolated_run(exported, tmp_path_factory) -> tuple[dict, Path, np.ndarray]:
    """The CHILD's report, the zip's folder and the one window it predicted (in µV; the
    CHILD was given it in volts)."""
    root = tmp_path_factory.mktemp("isolated")
    zip_dir, weights_dir = root / "zip", root / "cwd"
    zip_dir.mkdir()
    weights_dir.mkdir()
    with zipfile.ZipFile(exported[2]) as zf:
        zf.extractall(zip_dir)
    for name in ("weights_challenge_1.pt", "weights_challenge_2.pt"):
        shutil.move(zip_dir / name, weights_dir / name)
    window = random_windows(1, seed=5)
    np.save(root / "window.npy", as_volts(window))
    sites = [p for p in site.getsitepackages() if Path(p).is_dir()]
    cmd = [sys.executable, "-I", "-S", "-c", CHILD, str(zip_dir), str(root / "window.npy"), *sites]
    env = {**os.environ, **ONE_THREAD}
    done = subprocess.run(
        cmd, capture_output=True, text=True, cwd=weights_dir, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), zip_dir, window


def test_zip_runs_without_eegtune_on_the_path(isolated_run):
    result, _, _ = isolated_run
    assert result["asked"] == [] and result["eegtune_modules"] == []
    for c in (1, 2):
        assert result[f"c{c}"]["shape"] == [1, 1]


def test_isolated_models_are_in_eval_and_match_the_folders(exported, isolated_run):
    c1, c2, _ = exported
    result, _, window = isolated_run
    for c, ens_dir in ((1, c1), (2, c2)):
        got = result[f"c{c}"]
        assert got["training"] is False and got["repeat_equal"] is True
        np.testing.assert_allclose(got["pred"], predict(ens_dir, window), rtol=0, atol=1e-5)


def test_weights_found_in_the_working_directory_and_other_rates_refused(isolated_run):
    result, zip_dir, _ = isolated_run
    # The weights were only in the cwd, so the models above were loaded from there.
    assert not list(zip_dir.glob("*.pt"))
    assert result["sfreq_error"] is not None and "100 Hz" in result["sfreq_error"]


def test_zip_is_single_level_and_imports_no_eegtune(exported):
    with zipfile.ZipFile(exported[2]) as zf:
        names = zf.namelist()
        sources = {n: zf.read(n).decode() for n in names if n.endswith(".py")}
    assert not [n for n in names if "/" in n or "\\" in n]
    assert {"submission.py", "weights_challenge_1.pt", "weights_challenge_2.pt"} <= set(names)
    assert all(n.startswith("sub_") for n in sources if n != "submission.py")
    assert not [n for n, text in sources.items() if EEGTUNE_IMPORT.search(text)]

    entry = PACKAGE / "ensembles" / "submission_entry.py"
    assert sources["submission.py"] == entry.read_text()
    tcn = (PACKAGE / "models" / "softargmax_tcn.py").read_text()
    assert "from eegtune.models." in tcn  # else the comparison below proves nothing
    assert sources["sub_softargmax_tcn.py"] == tcn.replace("from eegtune.models.", "from sub_")
    # Whatever the generated modules import from each other travels with them.
    imported = {m for text in sources.values() for m in SUB_IMPORT.findall(text)}
    assert {f"{m}.py" for m in imported} <= set(names)


def walk(value, path="blob"):
    """Every leaf of ``value`` with its path; fails on any type old torch could not load."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str | int), f"{path}: key {k!r}"
            yield from walk(v, f"{path}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        allowed = (str, int, float, bool, type(None), torch.Tensor)
        assert isinstance(value, allowed), f"{path} is a {type(value).__name__}"
        yield path, value


def test_weights_files_are_plain_containers_and_tensors(exported):
    with zipfile.ZipFile(exported[2]) as zf:
        blobs = {
            c: torch.load(io.BytesIO(zf.read(f"weights_challenge_{c}.pt")), weights_only=True)
            for c in (1, 2)
        }
    for c, spec in ((1, C1), (2, C2)):
        blob = blobs[c]
        leaves = list(walk(blob))
        assert any(isinstance(v, torch.Tensor) for _, v in leaves)
        assert blob["challenge"] == c
        assert blob["alpha"] == pytest.approx(spec["alpha"])
        assert blob["centre"] == pytest.approx(spec["centre"])
        assert [m["weight"] for m in blob["members"]] == pytest.approx(spec["weights"])
        assert all(len(m["folds"]) == 2 for m in blob["members"])


def test_incomplete_or_mismatched_folders_are_refused(exported, tmp_path, capsys):
    c1, c2, _ = exported

    def export(c1_dir: Path, c2_dir: Path) -> str:
        out = tmp_path / "out" / f"{c1_dir.name}_{c2_dir.name}.zip"
        args = ["submission", "--c1", str(c1_dir), "--c2", str(c2_dir), "--out", str(out)]
        assert main(args) == 2
        assert not out.exists()
        return capsys.readouterr().err

    missing = shutil.copytree(c1, tmp_path / "missing")
    (missing / "members" / "m1_fold1.pt").unlink()
    err = export(missing, c2)
    assert err.startswith("eegtune submission: error:") and "m1_fold1.pt" in err

    unknown = shutil.copytree(c2, tmp_path / "unknown")
    desc = json.loads((unknown / "ensemble.json").read_text())
    desc["fold_models"][0][1]["model_config"]["name"] = "no_such_net"
    (unknown / "ensemble.json").write_text(json.dumps(desc))
    err = export(c1, unknown)
    assert "no_such_net" in err

    err = export(c1, c1)
    assert "Challenge 1" in err and "Challenge 2" in err
    # Nor is a temporary file left where the zip would have gone.
    assert not any((tmp_path / "out").glob("*"))


def test_members_and_fold_models_differ_on_the_test_input(exported):
    """Agreement within 1e-5 above only means something if what is averaged differs: every
    fold model from every other, and every member from every other, by far more."""
    x = torch.from_numpy(random_windows(7))
    for ens_dir in exported[:2]:
        ensemble = load_ensemble(ens_dir)
        with torch.no_grad():
            members = [bag(x)[:, 0] for bag in ensemble.members]
            folds = [fold(x)[:, 0] for bag in ensemble.members for fold in bag.folds]
        for outputs in (members, folds):
            for i, a in enumerate(outputs):
                for b in outputs[i + 1 :]:
                    assert float((a - b).abs().max()) > 100 * 1e-5
        assert len(folds) >= 2


# Loads challenge 1 of the unpacked zip in a fresh process whose search list is the
# challenge's with its two /app folders moved under a test root; prints the prediction,
# which is the centre of whichever weights file was found.
SEARCH_CHILD = r"""
import json, sys
from pathlib import Path
import torch
zip_dir, app = sys.argv[1], Path(sys.argv[2])
sys.path.insert(0, zip_dir)
import submission
real = [str(p) for p in submission.SEARCH]
submission.SEARCH = (app / "input" / "res", app / "input", *submission.SEARCH[2:])
try:
    model = submission.Submission(100, "cpu").get_model_challenge_1()
    found = float(model(torch.zeros(1, 129, 200))[0][0])
except FileNotFoundError as exc:
    found = str(exc)
print(json.dumps({"real": real, "found": found}))
"""


@pytest.mark.timeout(300)
def test_weights_are_searched_in_the_challenges_order(tmp_path):
    """/app/input/res, /app/input, the working directory, beside submission.py: a weights
    file in each place (mean predictors with different centres), the first present wins."""
    places = ["res", "input", "cwd", "beside"]
    folders = {"res": tmp_path / "app" / "input" / "res", "input": tmp_path / "app" / "input",
               "cwd": tmp_path / "cwd", "beside": tmp_path / "zip"}  # fmt: skip
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    ensembles = {}
    for c in (1, 2):
        ensembles[c] = tmp_path / f"mean_c{c}"
        write_ensemble(
            ensembles[c], {"challenge": c, "members": [], "alpha": 1.0, "centre": 0.0}, []
        )
    zip_path = tmp_path / "mean.zip"
    assert main(["submission", "--c1", str(ensembles[1]), "--c2", str(ensembles[2]),
                 "--out", str(zip_path)]) == 0  # fmt: skip
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(folders["beside"])
    template = torch.load(folders["beside"] / "weights_challenge_1.pt", weights_only=True)
    for i, place in enumerate(places):
        torch.save({**template, "centre": float(i + 1)}, folders[place] / "weights_challenge_1.pt")

    def found() -> tuple[list[str], float | str]:
        cmd = [sys.executable, "-I", "-c", SEARCH_CHILD, str(folders["beside"]),
               str(tmp_path / "app")]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=folders["cwd"], timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return result["real"], result["found"]

    real, _ = found()
    assert real[:2] == ["/app/input/res", "/app/input"]  # the challenge's own folders
    assert Path(real[2]) == folders["cwd"] and Path(real[3]) == folders["beside"]
    for i, place in enumerate(places):
        assert found()[1] == float(i + 1), place
        (folders[place] / "weights_challenge_1.pt").unlink()
    missing = found()[1]
    assert isinstance(missing, str) and "weights_challenge_1.pt not found" in missing
    assert all(str(folders[p]) in missing for p in places)
