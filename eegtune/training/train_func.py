"""Where a fold is trained: ``train_func(config)``, a pure function of its config.

It builds the data, model, AdamW over the model's parameter groups, the learning-rate
schedule (:mod:`eegtune.training.optimizer`), the loss and early stopping from the flat
``config``; trains on one fold; reports every epoch through
:mod:`eegtune.training.reporting`; and writes the fold's checkpoint and out-of-fold
predictions. One ``seed`` drives the split, the initialisation and the data order.

Early stopping and checkpoint selection use inner-validation subjects carved from the
fold's training subjects; the held-out subjects are read once, after training.

Every epoch's report carries the fold's :class:`TrainingState`; at its start the fold
asks the reporter for a saved one and, if there is one for this configuration, resumes
after its last epoch (see :mod:`eegtune.training.training_state`).
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eegtune import storage
from eegtune.errors import ConfigError
from eegtune.metrics import error_sums, nrmse_or_nan, rmse
from eegtune.models import create_model
from eegtune.models.base import EEGModel
from eegtune.training.config import FoldJob, TrainConfig, parse_config
from eegtune.training.devices import autocast, cpu_state, model_device, resolve_device, to_device
from eegtune.training.fold_data import (
    CROP_SAMPLES,
    FoldSource,
    FoldSubjects,
    WindowSet,
    eval_arrays,
    eval_batches,
    open_fold_source,
)
from eegtune.training.folds import inner_split, make_folds, saved_folds, store_subjects
from eegtune.training.optimizer import base_rate, build_optimizer, build_schedule
from eegtune.training.reporting import report, restore_state
from eegtune.training.run_files import CHECKPOINT, FOLD_METRICS, OOF, fold_dir, oof_frame
from eegtune.training.training_state import TrainingState, fingerprint

__all__ = ["CHECKPOINT", "OOF", "oof_frame", "predict", "train_func"]


def fold_subjects(job: FoldJob, hp: TrainConfig) -> FoldSubjects:
    """The fold's fit / inner-validation / held-out subjects, from the split seed alone
    (the training seed unless the job sets its own)."""
    seed = hp.seed if job.split_seed is None else job.split_seed
    folds = (
        saved_folds(job.split_file, job.split, job.n_folds, seed)
        if job.split_file
        else make_folds(store_subjects(job.store, job.challenge), job.split, job.n_folds, seed)
    )
    if not 0 <= job.fold < len(folds):
        raise ConfigError(f"fold {job.fold} does not exist; the split has {len(folds)} folds")
    fold = folds[job.fold]
    if job.refit_epochs:  # every subject trains; nothing is held out or validated
        return FoldSubjects(fit=tuple(sorted({*fold.train, *fold.test})), inner_val=(), test=())
    fit, inner = inner_split(fold.train, hp.inner_val_fraction, seed, job.fold)
    return FoldSubjects(fit=fit, inner_val=inner, test=fold.test)


def build_model(hp: TrainConfig) -> EEGModel:
    """The configured model; a hyperparameter it refuses is the user's setting to fix (model
    modules raise plain ValueError: they travel inside the zip, without eegtune)."""
    try:
        return create_model(
            hp.model, n_chans=129, n_times=CROP_SAMPLES, n_outputs=1, sfreq=100.0, **hp.model_params
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model {hp.model!r}: {exc}") from exc


@torch.inference_mode()
def predict(
    model: EEGModel, ws: WindowSet, batch_size: int = 256, precision: str = "32"
) -> np.ndarray:
    """Predictions on the model's own device, returned as float32 numpy."""
    model.eval()
    if len(ws) == 0:
        return np.zeros(0, dtype=np.float32)
    device = model_device(model)
    out = []
    for x in eval_batches(ws, batch_size):
        with autocast(device, precision):
            y = model(to_device(x, device))
        out.append(y.float().cpu().numpy()[:, 0])
    return np.concatenate(out)


def _save_torch(obj: Any, location: str) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    storage.write_bytes(location, buffer.getvalue())


def _write_oof(ws: WindowSet, pred: np.ndarray, fold: int, location: str) -> None:
    table = ws.meta.assign(prediction=pred.astype(np.float32), fold=np.int16(fold))
    storage.write_bytes(location, storage.parquet_bytes(table))


def _fit_by_gradient(
    model: EEGModel, source: FoldSource, hp: TrainConfig, job: FoldJob, subjects: FoldSubjects
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    opt = build_optimizer(model, hp)
    steps_per_epoch = max(1, math.ceil(len(source.fit_targets()) / hp.batch_size))
    sched = build_schedule(opt, hp, steps_per_epoch)
    source.attach(model, opt)
    # Selection uses inner-validation RMSE: on a fixed set it ranks epochs exactly as NRMSE
    # does, and it stays defined when those subjects share one target (Challenge 2).
    best = {"inner_val_rmse": math.inf, "epoch": -1, "resumed_at_epoch": 0}
    best_state = copy.deepcopy(model.state_dict())
    stale, start, stopped = 0, 0, False
    key = fingerprint(job, hp, subjects, source.data_mode)
    saved = restore_state(key)
    if saved is not None:
        model.load_state_dict(saved.model)
        opt.load_state_dict(saved.optimizer)
        sched.load_state_dict(saved.scheduler)
        torch.set_rng_state(saved.torch_rng)
        best_state = saved.best_model
        best = {
            "inner_val_rmse": saved.best_inner_val_rmse,
            "epoch": saved.best_epoch,
            "resumed_at_epoch": saved.epochs_done,
        }
        stale, start, stopped = saved.stale, saved.epochs_done, saved.stopped
    y_val = source.inner_val.target
    device = model_device(model)
    for epoch in range(start, hp.max_epochs):
        if stopped:
            break
        t0 = time.perf_counter()
        rng = np.random.default_rng([hp.seed, 3, job.fold, epoch])
        model.train()
        losses, seen = 0.0, 0
        for x, y in source.train_batches(hp.batch_size, rng):
            opt.zero_grad(set_to_none=True)
            with autocast(device, job.precision):
                loss = model.loss(to_device(x, device), to_device(y, device))
            loss.backward()
            opt.step()
            sched.step()
            losses += loss.item() * len(y)
            seen += len(y)
        metrics = {
            "epoch": epoch,
            "fold": job.fold,
            "train_loss": losses / max(seen, 1),
            "lr": base_rate(hp, sched.last_epoch, steps_per_epoch),
        }
        if job.refit_epochs:  # no validation: the last epoch is the model
            best = {**best, "epoch": epoch}
            # The schedule keeps the folds' length (max_epochs); it stops where they did.
            stopped = epoch + 1 >= min(job.refit_epochs, hp.max_epochs)
        else:
            val_pred = predict(model, source.inner_val, precision=job.precision)
            val = rmse(y_val, val_pred)
            if val < best["inner_val_rmse"]:
                best = {**best, "inner_val_rmse": val, "epoch": epoch}
                best_state = copy.deepcopy(model.state_dict())
                stale = 0
            else:
                stale += 1
            stopped = stale >= hp.patience or epoch + 1 == hp.max_epochs
            metrics |= {
                "inner_val_rmse": val,
                "best_inner_val_rmse": best["inner_val_rmse"],
                # Lets a fold-parallel run pool the inner-validation NRMSE across folds.
                **{f"inner_val_{k}": v for k, v in error_sums(y_val, val_pred).items()},
            }
        # Saved every epoch (a refit's too), so an interrupted run resumes after it.
        state = TrainingState(
            fingerprint=key,
            epochs_done=epoch + 1,
            stopped=stopped,
            model=model.state_dict(),
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            # A refit's model is its last epoch's: no best one to keep.
            best_model={} if job.refit_epochs else best_state,
            best_inner_val_rmse=best["inner_val_rmse"],
            best_epoch=best["epoch"],
            stale=stale,
            torch_rng=torch.get_rng_state(),
        )
        report({**metrics, "epoch_seconds": time.perf_counter() - t0}, state=state)
    if job.refit_epochs:
        best_state = copy.deepcopy(model.state_dict())
    return best_state, best


def refit_dir(run_dir: str | Path) -> str:
    """Where a run's refit model lands (one model in place of its K fold models)."""
    return storage.join(run_dir, "refit")


def train_func(config: dict[str, Any]) -> dict[str, Any]:
    """Train one fold from a flat config; return its summary metrics."""
    job, hp = parse_config(config)
    if job.threads:
        torch.set_num_threads(job.threads)
    torch.manual_seed(hp.seed * 1000 + job.fold)
    subjects = fold_subjects(job, hp)
    source = open_fold_source(job.store, job.challenge, subjects)
    model = build_model(hp)
    device = resolve_device(job.device)  # a device this process cannot use fails here
    if job.challenge not in type(model).challenges:
        raise ConfigError(f"model {hp.model!r} does not support challenge {job.challenge}")

    if model.trainable_by_gradient:
        y_fit = source.fit_targets()
        model.set_target_scale(float(y_fit.mean()), float(y_fit.std()) or 1.0)
        # Closed-form models fit with numpy and stay on the CPU.
        model.to(device)
        state, best = _fit_by_gradient(model, source, hp, job, subjects)
        model.load_state_dict(state)
    elif job.refit_epochs:
        fit = source.fit_windows()
        model.fit(eval_arrays(fit), fit.target)
        best = {"inner_val_rmse": math.nan, "epoch": 0, "resumed_at_epoch": 0}
    else:
        fit = source.fit_windows()
        model.fit(eval_arrays(fit), fit.target)
        val_pred = predict(model, source.inner_val)
        val = rmse(source.inner_val.target, val_pred)
        best = {"inner_val_rmse": val, "epoch": 0, "resumed_at_epoch": 0}
        sums = error_sums(source.inner_val.target, val_pred)
        report(
            {
                "epoch": 0,
                "fold": job.fold,
                "train_loss": float("nan"),  # fitted in closed form: no training loss
                "inner_val_rmse": val,
                "best_inner_val_rmse": val,
                **{f"inner_val_{k}": v for k, v in sums.items()},
            }
        )

    if job.refit_epochs:
        return _save_refit(model, job, config, best, len(source.fit_targets()))
    test = source.load_test()
    pred = predict(model, test, precision=job.precision)
    # A local folder, or a URI that every node of a cluster writes to.
    out = fold_dir(job.out_dir, job.fold)
    storage.makedirs(out)
    metrics = {
        "fold": job.fold,
        "best_epoch": best["epoch"],
        "inner_val_rmse": best["inner_val_rmse"],
        # Epochs restored from a saved state rather than trained in this run (0: fresh).
        "resumed_at_epoch": best["resumed_at_epoch"],
        "oof_rmse": rmse(test.target, pred),
        # A held-out fold of one Challenge 2 subject has one target: NRMSE is undefined.
        "oof_nrmse": nrmse_or_nan(test.target, pred),
        "n_fit_windows": len(source.fit_targets()),
        "n_test_windows": len(test),
        "subjects": {
            "fit": list(subjects.fit),
            "inner_val": list(subjects.inner_val),
            "test": list(subjects.test),
        },
    }
    if job.replica:  # a data-parallel replica: its fold's first worker writes the outputs
        report({**{k: v for k, v in metrics.items() if k != "subjects"}, "done": True})
        return metrics
    _write_oof(test, pred, job.fold, storage.join(out, OOF))
    # Plain JSON types only, so the checkpoint loads under weights_only=True.
    plain = json.loads(json.dumps({"metrics": metrics, "config": config}, default=float))
    _save_torch(
        {"state_dict": cpu_state(model), "model_config": model.get_config(), **plain},
        storage.join(out, CHECKPOINT),
    )
    storage.write_text(storage.join(out, FOLD_METRICS), json.dumps(metrics, indent=1))
    report(
        {**{k: v for k, v in metrics.items() if k != "subjects"}, "done": True}, checkpoint_dir=out
    )
    return metrics


def _save_refit(
    model: EEGModel, job: FoldJob, config: dict[str, Any], best: dict, n_fit: int
) -> dict[str, Any]:
    """A refit's one model and its figures: no out-of-fold rows, it held nothing out."""
    out = refit_dir(job.out_dir)
    storage.makedirs(out)
    metrics = {"refit_epochs": best["epoch"] + 1, "n_fit_windows": n_fit,
               "resumed_at_epoch": best["resumed_at_epoch"]}  # fmt: skip
    plain = json.loads(json.dumps({"metrics": metrics, "config": config}, default=float))
    _save_torch(
        {"state_dict": cpu_state(model), "model_config": model.get_config(), **plain},
        storage.join(out, CHECKPOINT),
    )
    storage.write_text(storage.join(out, FOLD_METRICS), json.dumps(metrics, indent=1))
    report({**metrics, "fold": job.fold, "done": True})
    return metrics


def load_checkpoint(path: str | Path) -> tuple[EEGModel, dict[str, Any]]:
    """Rebuild a fold's model from its checkpoint (``weights_only=True``: no pickled code)."""
    from eegtune.models import model_from_config

    data = io.BytesIO(storage.read_bytes(path))
    ckpt = torch.load(data, map_location="cpu", weights_only=True)
    model = model_from_config(ckpt["model_config"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
