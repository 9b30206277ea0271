"""Where a fold trains (``--device``) and at what precision (``--precision``).

This machine has no GPU, so the CPU tests pin what must hold everywhere: ``auto`` is the
CPU and changes nothing, ``cuda`` fails with a message instead of deep inside torch, and
bf16 really autocasts yet stays close to full precision. The CUDA test runs where a GPU is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eegtune import storage
from eegtune.cli import main
from eegtune.data.store import MANIFEST
from eegtune.training.config import FoldJob, TrainConfig
from eegtune.training.cross_validate import CVResult, run_cv
from eegtune.training.devices import (
    autocast,
    cpu_state,
    model_device,
    resolve_device,
    to_device,
)
from eegtune.training.train_func import fold_subjects
from eegtune.training.training_state import fingerprint

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"
)

TINY_TCN = {"n_filters": 8, "n_blocks": 2}
# Two folds of two epochs: about half a second a run here, yet the weights move enough
# for bf16 rounding to show in the predictions.
HP = TrainConfig(model="softargmax_tcn", model_params=TINY_TCN, max_epochs=2, patience=10)
N_FOLDS = 2

# bf16 against fp32 on the synthetic store, measured over seeds 0-5 (2 folds, 2 epochs)
# on the CPU this was first written on: correlation of the OOF predictions >= 0.9996,
# pooled NRMSE apart by <= 1.8e-5, largest prediction gap 6.3e-4..8.1e-4 (<= 0.23% of the
# targets' std). On a Xeon with native bf16 (avx512_bf16; AMX capped, see eegtune.cpu_bf16)
# the NRMSE gap was 6.3e-5 and the correlation 0.9998; pinned to AVX2 emulation, 2.5e-5.
# The bounds below leave >= 16x room for other kernels; the lower bound shows autocast was
# not a no-op (fp32 runs are bit-identical to each other, so any gap is bf16's).
BF16_MIN_CORRELATION = 0.99
BF16_MAX_NRMSE_GAP = 1e-3
BF16_MIN_PREDICTION_GAP = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Two threads on a busy two-core machine run several times slower than one; every run
    # here gets the same count, so "bit-identical" still compares like with like.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cv(store: Path, out: Path, device: str = "auto", precision: str = "32") -> CVResult:
    return run_cv(store, 1, HP, out, n_folds=N_FOLDS, device=device, precision=precision)


@pytest.fixture(scope="module")
def cv_runs(prepared_store, tmp_path_factory) -> dict[str, CVResult]:
    """The same configuration on cpu, auto and cpu-bf16; shared so each trains once."""
    root = tmp_path_factory.mktemp("devices_cv")
    return {
        "cpu": _cv(prepared_store, root / "cpu", device="cpu"),
        "auto": _cv(prepared_store, root / "auto", device="auto"),
        "bf16": _cv(prepared_store, root / "bf16", device="cpu", precision="bf16"),
    }


def _predictions(result: CVResult) -> np.ndarray:
    return result.oof.sort_values(["subject", "recording", "window_index"])["prediction"].to_numpy()


# --- devices.py on its own -------------------------------------------------------------


def test_auto_is_the_cpu_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_refused_with_the_flag_named(name: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ValueError, match="no CUDA") as err:
        resolve_device(name)
    assert f"--device {name}" in str(err.value)


@pytest.mark.parametrize(("field", "value"), [("device", "tpu"), ("precision", "16")])
def test_bad_device_settings_fail_at_construction(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        FoldJob(store="s", challenge=1, out_dir="o", **{field: value})


@pytest.mark.parametrize("name", ["cuda:abc", "cuda:"])
def test_a_malformed_cuda_index_fails_at_construction(name: str) -> None:
    with pytest.raises(ValueError, match="device"):
        FoldJob(store="s", challenge=1, out_dir="o", device=name)


def test_cpu_batches_are_not_copied_and_full_precision_adds_nothing() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = to_device(x, torch.device("cpu"))
    # Pinning and a non-blocking copy only make sense for a GPU; the CPU shares the array.
    assert t.device.type == "cpu" and not t.is_pinned() and np.shares_memory(t.numpy(), x)
    lin = torch.nn.Linear(3, 1)
    with autocast(torch.device("cpu"), "32"):
        assert lin(t).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert lin(t).dtype == torch.bfloat16
    assert model_device(lin) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters at all
    state = cpu_state(lin)
    assert state.keys() == lin.state_dict().keys()
    assert all(not v.requires_grad and v.device.type == "cpu" for v in state.values())


# --- run_cv on each device and precision -----------------------------------------------


def test_auto_and_cpu_give_bit_identical_predictions_here(cv_runs: dict[str, CVResult]) -> None:
    if torch.cuda.is_available():
        pytest.skip("auto means cuda on this machine")
    pd.testing.assert_frame_equal(cv_runs["cpu"].oof, cv_runs["auto"].oof, check_exact=True)
    assert cv_runs["cpu"].pooled_nrmse == cv_runs["auto"].pooled_nrmse


def test_bf16_runs_and_stays_close_to_full_precision(cv_runs: dict[str, CVResult]) -> None:
    fp32, bf16 = _predictions(cv_runs["cpu"]), _predictions(cv_runs["bf16"])
    assert len(fp32) == len(bf16) > 0 and np.isfinite(bf16).all()
    assert np.abs(fp32 - bf16).max() > BF16_MIN_PREDICTION_GAP
    assert np.corrcoef(fp32, bf16)[0, 1] > BF16_MIN_CORRELATION
    assert np.isfinite(cv_runs["bf16"].pooled_nrmse)
    assert abs(cv_runs["bf16"].pooled_nrmse - cv_runs["cpu"].pooled_nrmse) < BF16_MAX_NRMSE_GAP


def test_bf16_checkpoints_hold_float32_cpu_weights(cv_runs: dict[str, CVResult]) -> None:
    for k in range(N_FOLDS):
        path = cv_runs["bf16"].run_dir / f"fold{k}" / "checkpoint.pt"
        ckpt = torch.load(path, weights_only=True)
        state = ckpt["state_dict"]
        assert state and all(v.device.type == "cpu" for v in state.values())
        # Autocast computes in bf16 but must leave the saved weights in float32
        # (integer buffers such as BatchNorm's step counter aside).
        floats = [v for v in state.values() if v.is_floating_point()]
        assert floats and all(v.dtype == torch.float32 for v in floats)
        # The checkpoint records how it was trained.
        assert ckpt["config"]["precision"] == "bf16" and ckpt["config"]["device"] == "cpu"


def test_a_full_precision_rerun_does_not_resume_a_bf16_state(
    prepared_store, tmp_path, cv_runs: dict[str, CVResult]
) -> None:
    _cv(prepared_store, tmp_path, device="cpu", precision="bf16")
    again = _cv(prepared_store, tmp_path, device="cpu")
    assert [f["resumed_at_epoch"] for f in again.folds] == [0] * N_FOLDS
    pd.testing.assert_frame_equal(again.oof, cv_runs["cpu"].oof, check_exact=True)


# --- the resume fingerprint ------------------------------------------------------------


def _fingerprint_inputs(store: Path, out: Path, **job_fields: str):
    job = FoldJob(store=str(store), challenge=1, out_dir=str(out), fold=1, n_folds=3, **job_fields)
    # The recipe from before parameter groups, whose states these fingerprints must find.
    hp = TrainConfig(model="softargmax_tcn", model_params=TINY_TCN, decay_norms_and_biases=True)
    return job, hp, fold_subjects(job, hp)


def _fingerprint_before_precision_existed(job: FoldJob, hp: TrainConfig, subjects) -> str:
    """The digest eegtune computed before ``precision`` was added, written out, so
    states saved then still resume."""
    manifest = storage.join(job.store, MANIFEST)
    added_since = ("warmup_epochs", "decay_norms_and_biases")  # and lr_mult.*: none here
    relevant = {
        **{k: v for k, v in hp.to_flat().items() if k not in added_since},
        "challenge": job.challenge,
        "fold": job.fold,
        "subjects": [list(subjects.fit), list(subjects.inner_val), list(subjects.test)],
        "manifest": hashlib.sha256(storage.read_bytes(manifest)).hexdigest(),
    }
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_fingerprint_tells_precisions_apart_but_not_devices(prepared_store, tmp_path) -> None:
    old = _fingerprint_inputs(prepared_store, tmp_path)
    full = _fingerprint_inputs(prepared_store, tmp_path, precision="32")
    bf16 = _fingerprint_inputs(prepared_store, tmp_path, precision="bf16")
    assert fingerprint(*full) == fingerprint(*old) == _fingerprint_before_precision_existed(*old)
    assert fingerprint(*bf16) != fingerprint(*full)
    # A config saved before these fields existed reads back as the same job.
    flat = {k: v for k, v in old[0].to_flat().items() if k not in ("device", "precision")}
    assert fingerprint(FoldJob.from_flat(flat), *old[1:]) == fingerprint(*old)
    # A fold resumed on another device continues its own state.
    for device in ("cpu", "cuda", "cuda:1"):
        moved = _fingerprint_inputs(prepared_store, tmp_path, device=device)
        assert fingerprint(*moved) == fingerprint(*full)


# --- the command line ------------------------------------------------------------------


def test_cli_cv_on_cuda_without_cuda_exits_2(prepared_store, tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code = main(
        [
            "cv",
            *("--store", str(prepared_store), "--challenge", "1", "--model", "softargmax_tcn"),
            *("--folds", "2", "--set", "max_epochs=1", "--set", "model.n_filters=8"),
            *("--out", str(tmp_path / "run"), "--device", "cuda", "--quiet"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--device cuda" in err and "no CUDA" in err
    assert not list((tmp_path / "run").glob("fold*/checkpoint.pt"))


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cli_tune_on_cuda_without_gpus_per_fold_exits_before_ray(
    prepared_store, tmp_path, capsys, monkeypatch, device: str
) -> None:
    import ray

    import eegtune.distributed.runtime as runtime

    def no_ray(*args, **kwargs) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(runtime, "start_ray", no_ray)
    code = main(
        [
            "tune",
            *("--store", str(prepared_store), "--challenge", "1", "--space", "softargmax_tcn"),
            *("--name", "gpu", "--storage-path", str(tmp_path), "--device", device),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda" in err and "--gpus-per-fold" in err
    assert not ray.is_initialized()


# --- on a GPU ----------------------------------------------------------------------------


@requires_cuda
def test_cuda_matches_the_cpu_and_bf16_runs_there(
    prepared_store, tmp_path, cv_runs: dict[str, CVResult]
) -> None:
    cuda = _cv(prepared_store, tmp_path / "cuda", device="cuda")
    # No exact match: cuDNN picks other kernels and convolutions default to TF32, whose
    # mantissa is finer than bf16's, so the bf16 bounds measured on the CPU hold here too.
    cpu, gpu = _predictions(cv_runs["cpu"]), _predictions(cuda)
    assert np.isfinite(gpu).all()
    assert np.corrcoef(cpu, gpu)[0, 1] > BF16_MIN_CORRELATION
    assert abs(cuda.pooled_nrmse - cv_runs["cpu"].pooled_nrmse) < BF16_MAX_NRMSE_GAP
    state = torch.load(tmp_path / "cuda" / "fold0" / "checkpoint.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in state["state_dict"].values())

    bf16 = _cv(prepared_store, tmp_path / "cuda_bf16", device="cuda", precision="bf16")
    assert np.isfinite(_predictions(bf16)).all()
    assert abs(bf16.pooled_nrmse - cv_runs["cpu"].pooled_nrmse) < BF16_MAX_NRMSE_GAP
