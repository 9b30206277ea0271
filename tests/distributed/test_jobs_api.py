"""The operator's path through Ray's Jobs API: `ray start --head`, `ray job submit` of an
`eegtune tune --address auto`, then `ray job status` / `ray job logs`, all through the CLI.

The head node is this test's own: loopback only, every fixed port chosen free, its own
temp dir and token, and it is torn down by process, never with `ray stop` (which would
also stop every other Ray on the machine: a user's, or another test run's).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import psutil
import pytest

from eegtune.distributed.experiment import JOURNAL
from eegtune.distributed.runtime import LOOPBACK_ENV
from tests.distributed.drills import trials

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
# The venv's own CLIs: the test must not depend on the venv being on PATH.
RAY = str(Path(sys.executable).parent / "ray")
# Every process of the head node inherits this variable with the test's own value, so
# its workers can be found even after they rename themselves (`ray::IDLE`, ...).
TAG_ENV = "EEGTUNE_JOBS_API_TEST"
N_TRIALS = 1


@dataclass(frozen=True)
class Head:
    dashboard: str  # the Jobs API address, http://127.0.0.1:PORT
    temp_dir: Path
    tag: str
    # A client's environment: it carries the cluster's token (kept out of reprs).
    env: dict[str, str] = field(repr=False)


def _free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 now (all held at once so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _head_processes(head_pid: int | None, temp_dir: Path, tag: str) -> list[psutil.Process]:
    """This head node's processes: by temp dir in the command line, by inherited tag, and
    the descendants of both and of the `ray start` process."""
    me = os.getpid()
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid == me:
                continue
            if str(temp_dir) in " ".join(proc.cmdline()) or proc.environ().get(TAG_ENV) == tag:
                found[proc.pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    roots = list(found.values())
    if head_pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            roots.append(psutil.Process(head_pid))
    for root in roots:
        try:
            found.update({p.pid: p for p in root.children(recursive=True)})
            found.setdefault(root.pid, root)
        except psutil.NoSuchProcess:
            continue
    found.pop(me, None)
    return list(found.values())


def _signal(procs: list[psutil.Process], kill: bool) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill() if kill else proc.terminate()


def _stop(procs: list[psutil.Process], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after grace_s, in `ray stop`'s order: the raylet first (its
    workers and agents follow it), the GCS last. The GCS and the autoscaler monitor can
    outlast a grace period when they are stopped before the raylet."""
    by_name: dict[str, list[psutil.Process]] = {"raylet": [], "other": [], "gcs_server": []}
    for proc in procs:
        try:
            name = proc.name()
        except psutil.NoSuchProcess:
            continue
        by_name.get(name, by_name["other"]).append(proc)
    for group in by_name.values():
        _signal(group, kill=False)
        _, alive = psutil.wait_procs(group, timeout=grace_s)
        _signal(alive, kill=True)
        psutil.wait_procs(alive, timeout=grace_s)


@pytest.fixture
def ray_head() -> Iterator[Head]:
    # A short path: Ray's Unix sockets live under the temp dir, and a socket path is
    # limited to ~107 characters, which pytest's tmp_path can exceed.
    temp_dir = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))
    tag = secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        {
            TAG_ENV: tag,
            # Without it Ray swaps 127.0.0.1 for the machine's outward address and listens
            # on every interface (see eegtune.distributed.runtime).
            LOOPBACK_ENV: "0",
            # Token auth made explicit: left unset, `ray start` turns it on whenever
            # ~/.ray/auth_token exists (which any local ray.init creates), but the job CLI
            # only sends a token when RAY_AUTH_MODE=token, so the outcome would depend on
            # what ran on this machine before.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
    )
    gcs, dashboard, client, agent_http, agent_grpc, env_agent, metrics = _free_ports(7)
    cmd = [
        RAY, "start", "--head", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        f"--port={gcs}", f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
        # Given ports, not Ray's random ones: a random agent port the raylet must read from
        # a file the agent writes once up, and on a loaded CI machine (the agent imports
        # slowly) NodeManager::WaitForDashboardAgentPorts gave up after ~15 s and aborted.
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
        f"--metrics-export-port={metrics}",
        # 0/0: each worker binds a port the OS picks, instead of Ray's shared default range.
        "--min-worker-port=0", "--max-worker-port=0",
        "--num-cpus=2", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    head_pid: int | None = None
    try:
        starter = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        head_pid = starter.pid
        out, _ = starter.communicate(timeout=120)
        assert starter.returncode == 0, out
        yield Head(f"http://127.0.0.1:{dashboard}", temp_dir, tag, env)
    finally:
        _stop(_head_processes(head_pid, temp_dir, tag))
        left = _head_processes(None, temp_dir, tag)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, [(p.pid, p.name()) for p in left]


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    # gRPC listens on IPv6 sockets: 127.0.0.1 shows up as ::ffff:127.0.0.1.
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def _listening_addresses(head: Head) -> set[str]:
    ips: set[str] = set()
    for proc in _head_processes(None, head.temp_dir, head.tag):
        try:
            ips.update(
                c.laddr.ip for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return ips


# Measured on the 2-core CI machine: ~90 s in all (store, head, job, teardown) when it is
# otherwise idle; several minutes when other Ray tests share its cores.
@pytest.mark.timeout(480)
def test_tune_submitted_through_the_jobs_api(ray_head: Head, prepared_store: Path, tmp_path):
    head, runs, job_id = ray_head, tmp_path / "runs", f"eegtune-{ray_head.tag}"
    listening = _listening_addresses(head)
    assert listening and all(map(_is_loopback, listening)), listening

    # As cluster.yaml's operator does: the checkout as the working dir, the driver joining
    # the running cluster (--address auto reads the RAY_ADDRESS the job supervisor sets;
    # no --num-cpus, which only sizes a local Ray). The venv's interpreter, not PATH,
    # stands in for the operator's activated venv.
    entrypoint = [
        sys.executable, "-m", "eegtune.cli", "tune", "--address", "auto",
        "--store", str(prepared_store), "--challenge", "1", "--space", "softargmax_tcn",
        "--trials", str(N_TRIALS), "--folds", "2", "--max-epochs", "1", "--scheduler", "fifo",
        "--name", "jobs", "--storage-path", str(runs), "--quiet",
    ]  # fmt: skip
    job = ["--address", head.dashboard]
    submitted = _ray(
        ["job", "submit", *job, "--submission-id", job_id, "--working-dir", str(REPO),
         "--no-wait", "--", *map(shlex.quote, entrypoint)],
        head.env, timeout=60,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    # `logs --follow` returns when the job ends: one call instead of polling the status.
    logs = _ray(["job", "logs", *job, "--follow", job_id], head.env, 300)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    status = _ray(["job", "status", *job, job_id], head.env, 60)
    assert status.returncode == 0, status.stdout + status.stderr
    # The CLI's wording of JobStatus.SUCCEEDED (it exits 0 whatever the status).
    assert f"Job '{job_id}' succeeded" in status.stdout, status.stdout + logs.stdout

    # The results table `eegtune tune` prints, one COMPLETE row per trial.
    assert re.search(r"^\s*trial\s+status\s+val_nrmse", logs.stdout, re.M), logs.stdout
    assert len(re.findall(r"\bCOMPLETE\b", logs.stdout)) == N_TRIALS, logs.stdout
    assert f"experiment in {runs / 'jobs'}" in logs.stdout

    assert (runs / "jobs" / JOURNAL).exists()
    done = trials(runs, "jobs")
    assert [t.state for t in done] == [optuna.trial.TrialState.COMPLETE] * N_TRIALS
    for trial in done:
        trial_dir = runs / "jobs" / "folds" / trial.user_attrs["tune_trial_id"]
        oofs = sorted(p.parent.name for p in trial_dir.glob("fold*/oof.parquet"))
        assert oofs == ["fold0", "fold1"], trial_dir

    # Token auth is on, and a client sends its token only with RAY_AUTH_MODE=token (a
    # token in ~/.ray/auth_token is not enough): without it the request carries none and
    # gets a 401; with another token, a 403.
    bare = {k: v for k, v in head.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    wrong = {**head.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    for env, refusal in ((bare, "Authentication required"), (wrong, "Authentication failed")):
        refused = _ray(["job", "status", *job, job_id], env, 60)
        out = refused.stdout + refused.stderr
        assert refused.returncode != 0 and refusal in out, out
