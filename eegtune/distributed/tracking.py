"""``eegtune tune --tracking``: the trials' reports handed to Ray Tune's own MLflow or
TensorBoard logger callbacks.

``tensorboard:DIR`` writes one event-file folder per trial under DIR (``tensorboard
--logdir DIR``); ``mlflow:URI`` logs each trial as a run of an MLflow experiment named
after the eegtune experiment, at that tracking URI. TensorBoard's writer (tensorboardX)
comes with Ray Tune; MLflow is the optional ``tracking`` extra.
"""

from __future__ import annotations

import os
from typing import Any

from eegtune.errors import ConfigError

KINDS = ("tensorboard", "mlflow")


def parse_tracking(spec: str) -> tuple[str, str]:
    kind, sep, target = spec.partition(":")
    if kind not in KINDS or not sep or not target:
        raise ConfigError(f"--tracking takes tensorboard:DIR or mlflow:URI, got {spec!r}")
    return kind, target


def tracking_callbacks(spec: str | None, experiment: str) -> list[Any]:
    """The Tune callbacks for ``spec``; none without it."""
    if not spec:
        return []
    kind, target = parse_tracking(spec)
    if kind == "tensorboard":
        return [_tensorboard_to(os.path.abspath(target))]
    try:
        import mlflow  # noqa: F401 - checked here so the error names the extra
    except ImportError as exc:
        raise ConfigError(
            "--tracking mlflow needs MLflow: pip install 'eegtune[tracking]'"
        ) from exc
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return [MLflowLoggerCallback(tracking_uri=target, experiment_name=experiment)]


def _tensorboard_to(root: str):
    """Ray Tune's TBXLoggerCallback, writing under ``root/<trial id>`` instead of inside
    Ray's own trial folders (which live in the storage path and its local staging)."""
    from ray.tune.logger import TBXLoggerCallback

    class TensorBoardTo(TBXLoggerCallback):
        def log_trial_start(self, trial) -> None:
            if trial in self._trial_writer:
                self._trial_writer[trial].close()
            folder = os.path.join(root, trial.trial_id)
            os.makedirs(folder, exist_ok=True)
            self._trial_writer[trial] = self._summary_writer_cls(folder, flush_secs=30)
            self._trial_result[trial] = {}

    return TensorBoardTo()
