"""`eegtune tune --tracking`: the trials' reports reach Ray Tune's TensorBoard callback."""

from __future__ import annotations

import struct

import pytest

from eegtune.cli import main
from eegtune.distributed.tracking import parse_tracking

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # the shared experiment


def _events(path) -> list:
    """The Event protos of one TFRecord event file (length, crc, payload, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        out.append(Event.FromString(data[at + 12 : at + 12 + length]))
        at += 12 + length + 4
    return out


def test_tensorboard_event_files_hold_every_trials_objective(finished_experiment):
    # The shared experiment ran with --tracking tensorboard:<runs>/tensorboard.
    root = finished_experiment.parent / "tensorboard"
    trials = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(trials) == 3
    for trial in trials:
        files = list(trial.glob("events.out.tfevents.*"))
        assert files, trial
        tags = {v.tag: v.simple_value for f in files for e in _events(f) for v in e.summary.value}
        objective = [t for t in tags if t.endswith("val_nrmse")]
        assert objective and all(0 < tags[t] < 10 for t in objective), sorted(tags)


@pytest.mark.parametrize("spec", ["tensorboard", "wandb:x", "mlflow:"])
def test_a_malformed_tracking_spec_is_refused_before_ray_starts(spec, capsys):
    with pytest.raises(ValueError, match="tensorboard:DIR or mlflow:URI"):
        parse_tracking(spec)
    argv = ["tune", "--store", "nowhere", "--challenge", "1", "--space", "softargmax_tcn",
            "--name", "x", "--tracking", spec]  # fmt: skip
    assert main(argv) == 2
    assert "--tracking" in capsys.readouterr().err
