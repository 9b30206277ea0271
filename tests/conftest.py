"""Shared fixtures: synthetic HBN-shaped BIDS data generated into temporary folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eegtune.data.prepare import PrepareOptions, prepare
from eegtune.data.synthetic import SynthOptions, synthesize

CCD = "contrastChangeDetection"
SHARED_METADATA = Path(__file__).resolve().parents[1].parent / "shared" / "hbn-r1-metadata"


@pytest.fixture(autouse=True)
def torch_threads_restored() -> Iterator[None]:
    """A test that pins torch to one thread must not pin every test after it: their speed,
    and so their timeouts, would then depend on the test order and the machine's cores."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def require_shared_metadata() -> Path:
    if not (SHARED_METADATA / "participants.tsv").exists():
        pytest.skip(f"real R1 metadata not found at {SHARED_METADATA} (only in the project's CI)")
    return SHARED_METADATA


@pytest.fixture(scope="session")
def synthetic_bids(tmp_path_factory) -> tuple[Path, dict]:
    """Six subjects over two releases, CCD and RestingState; shared read-only."""
    out = tmp_path_factory.mktemp("synth6")
    oracle = synthesize(
        SynthOptions(out=out, n_subjects=6, releases=("R1", "R2"), seed=3), progress=False
    )
    return out, oracle


@pytest.fixture(scope="session")
def prepared_store(synthetic_bids, tmp_path_factory) -> Path:
    bids, _ = synthetic_bids
    store = tmp_path_factory.mktemp("store6")
    prepare([bids], store, PrepareOptions())
    return store


@pytest.fixture
def small_bids(tmp_path) -> Path:
    """Two subjects, CCD only, in one release: a fresh copy each test may damage."""
    out = tmp_path / "bids"
    synthesize(SynthOptions(out=out, n_subjects=2, tasks=(CCD,), seed=11), progress=False)
    return out / "R1_L100_bdf"


@pytest.fixture
def copy_tree(tmp_path):
    def _copy(src: Path, name: str = "copy") -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's) on 127.0.0.1, for this test session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, tmp_path) -> str:
    """A fresh bucket, with the environment that S3 clients (pyarrow here, and the Ray
    workers a test starts afterwards) read: endpoint, dummy credentials, region."""
    import uuid

    import pyarrow.fs as pafs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("EEGTUNE_CACHE", str(tmp_path / "eegtune_cache"))
    bucket = f"eegtune-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(endpoint_override=s3_endpoint, allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}"


@pytest.fixture(scope="session")
def finished_experiment(prepared_store, tmp_path_factory) -> Path:
    """Three FIFO trials (so all three finish) of 2 folds × 1 epoch on Challenge 1, shared
    read-only by the ensemble and report tests (a test that damages it works on a copy).
    Its trials' reports also go to TensorBoard, under ``runs/tensorboard``."""
    runs = tmp_path_factory.mktemp("ens_runs")
    cmd = [
        sys.executable, "-m", "eegtune.cli", "tune",
        "--store", str(prepared_store), "--challenge", "1", "--space", "softargmax_tcn",
        "--trials", "3", "--folds", "2", "--max-epochs", "1", "--scheduler", "fifo",
        "--name", "c1", "--storage-path", str(runs), "--num-cpus", "2", "--quiet",
        "--tracking", f"tensorboard:{runs / 'tensorboard'}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return runs / "c1"
