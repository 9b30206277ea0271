"""cluster.yaml (AWS) and cluster.local.yaml, checked offline with Ray's own launcher code.

Ray has no public "validate only" call: ``ray.autoscaler.sdk.bootstrap_config`` runs
``prepare_config`` and ``validate_config`` and then the provider's bootstrap, which for AWS
calls EC2 and IAM. These tests run the two steps ``ray up`` takes before that
(``ray.autoscaler._private.commands._bootstrap_config``) and stop there.
"""

from __future__ import annotations

import copy
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

Config = dict[str, Any]

ROOT = Path(__file__).resolve().parents[1]
AWS_YAML = ROOT / "cluster.yaml"
LOCAL_YAML = ROOT / "cluster.local.yaml"
BOTH = pytest.mark.parametrize("path", [AWS_YAML, LOCAL_YAML], ids=["aws", "local"])

CPU_WORKER, GPU_WORKER = "cpu_worker", "gpu_worker"
# The roles the operator's commands rely on (prepare on CPU nodes, folds on GPU nodes).
PROJECT_WORKER_TYPES = (CPU_WORKER, GPU_WORKER)

# Schema errors, validate_config's own checks, and cli_logger.abort in prepare_local.
RAY_ERRORS = (jsonschema.ValidationError, ValueError, click.ClickException)


class ClusterConfigError(ValueError):
    """A rule of this project's that Ray's validator does not enforce."""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # A validator that quietly reached EC2 or IAM would pass on a laptop with credentials
    # and hang in CI; any connection attempt fails the test instead.
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access during config validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(path: Path) -> Config:
    return yaml.safe_load(path.read_text())


def ray_validate(config: Config) -> Config:
    """Ray's defaults filled in and its schema applied, as `ray up` does before bootstrap."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def check_cluster_config(prepared: Config) -> None:
    """What Ray 2.60 lets through: it checks only the sum of min_workers against the global
    max_workers, not min_workers against a node type's own max_workers; and it accepts any
    worker type names, so a renamed or misspelt type leaves its role with no nodes.
    """
    types: dict[str, Config] = prepared["available_node_types"]
    for name, node_type in types.items():
        if node_type["min_workers"] > node_type["max_workers"]:
            raise ClusterConfigError(
                f"{name}: min_workers {node_type['min_workers']} > "
                f"max_workers {node_type['max_workers']}"
            )
    if prepared["provider"]["type"] != "local":  # local has one node type, named by Ray
        missing = [t for t in PROJECT_WORKER_TYPES if t not in types]
        if missing:
            raise ClusterConfigError(f"worker types {missing} not in available_node_types")


def validate(config: Config) -> Config:
    prepared = ray_validate(config)
    check_cluster_config(prepared)
    return prepared


@BOTH
def test_file_passes_rays_schema_and_project_check(path: Path) -> None:
    prepared = validate(load(path))
    # prepare_config merged the common setup into the head's and workers' own lists.
    assert any("make venv" in c for c in prepared["head_setup_commands"])
    assert any("make venv" in c for c in prepared["worker_setup_commands"])


def _rename(mapping: Config, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _node_types(c: Config) -> dict[str, Config]:
    return c["available_node_types"]


Mutation = Callable[[Config], None]
# (case, file, mutation, who rejects it, a fragment of the error that says why)
BROKEN: list[tuple[str, Path, Mutation, str, str]] = [
    (
        "top-level max_worker",
        AWS_YAML,
        lambda c: _rename(c, "max_workers", "max_worker"),
        "ray",
        "'max_worker' was unexpected",
    ),
    (
        "top-level setup_comands",
        AWS_YAML,
        lambda c: _rename(c, "setup_commands", "setup_comands"),
        "ray",
        "'setup_comands' was unexpected",
    ),
    (
        "node-type max_worker",
        AWS_YAML,
        lambda c: _rename(_node_types(c)[GPU_WORKER], "max_workers", "max_worker"),
        "ray",
        "'max_worker' was unexpected",
    ),
    (
        "node-type setup_comands",
        AWS_YAML,
        lambda c: _node_types(c)[CPU_WORKER].update(setup_comands=["true"]),
        "ray",
        "'setup_comands' was unexpected",
    ),
    (
        "head_node_type not a node type",
        AWS_YAML,
        lambda c: c.update(head_node_type="hed"),
        "ray",
        "head_node_type` must be one of",
    ),
    (
        "local without worker_ips",
        LOCAL_YAML,
        lambda c: c["provider"].pop("worker_ips"),
        "ray",
        "worker_ips",
    ),
    (
        "local top-level setup_comands",
        LOCAL_YAML,
        lambda c: _rename(c, "setup_commands", "setup_comands"),
        "ray",
        "'setup_comands' was unexpected",
    ),
    (
        "node-type min_workers above max_workers",
        AWS_YAML,
        lambda c: _node_types(c)[GPU_WORKER].update(min_workers=3, max_workers=2),
        "project",
        "min_workers 3 > max_workers 2",
    ),
    (
        "worker type name not in available_node_types",
        AWS_YAML,
        lambda c: _rename(_node_types(c), GPU_WORKER, "gpu_wroker"),
        "project",
        "'gpu_worker'",
    ),
]


@pytest.mark.parametrize(
    ("path", "mutate", "caught_by", "why"),
    [pytest.param(*case[1:], id=case[0]) for case in BROKEN],
)
def test_broken_variant_is_rejected(path: Path, mutate: Mutation, caught_by: str, why: str) -> None:
    config = load(path)
    mutate(config)
    if caught_by == "ray":
        with pytest.raises(RAY_ERRORS, match=re.escape(why)):
            ray_validate(config)
    else:
        # Ray accepting it is why check_cluster_config exists; if Ray starts rejecting it,
        # move the case to "ray" and drop the rule.
        prepared = ray_validate(config)
        with pytest.raises(ClusterConfigError, match=re.escape(why)):
            check_cluster_config(prepared)


def test_gpu_workers_start_at_zero_and_ask_for_a_gpu() -> None:
    gpu = _node_types(load(AWS_YAML))[GPU_WORKER]
    assert gpu["min_workers"] == 0  # an idle cluster pays for no GPU
    assert gpu["resources"].get("GPU", 0) >= 1


def test_head_takes_no_training() -> None:
    config = load(AWS_YAML)
    assert _node_types(config)[config["head_node_type"]]["resources"]["CPU"] == 0


def test_credentials_come_from_instance_profiles() -> None:
    for name, node_type in _node_types(load(AWS_YAML)).items():
        assert "IamInstanceProfile" in node_type["node_config"], name


@BOTH
def test_dashboard_stays_on_loopback(path: Path) -> None:
    head_start = " ".join(load(path)["head_start_ray_commands"])
    assert "ray start --head" in head_start
    assert re.search(r"--dashboard-host[= ]127\.0\.0\.1\b", head_start)
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start


@BOTH
def test_setup_installs_like_make_venv(path: Path) -> None:
    config = load(path)
    assert config["file_mounts"] == {"~/eegtune": "."}
    setup = config["setup_commands"]
    assert "cd ~/eegtune && make venv" in setup
    assert any("python3-venv" in c and "make" in c for c in setup)
    assert any("source ~/eegtune/.venv/bin/activate" in c and "~/.bashrc" in c for c in setup)
    # A checkout's .venv synced over would make `make venv` a no-op on the node.
    assert ".venv" in config["rsync_exclude"]


@BOTH
def test_no_aws_keys_in_file(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text)
    assert "aws_secret_access_key" not in text.lower()


@BOTH
def test_storage_uri_is_defined_once(path: Path) -> None:
    definitions = re.findall(r"EEGTUNE_STORAGE=([^'\s]+)", path.read_text())
    assert len(definitions) == 1, definitions
    (setup,) = [c for c in load(path)["setup_commands"] if "EEGTUNE_STORAGE=" in c]
    assert "export EEGTUNE_STORAGE=" in setup and ">> ~/.bashrc" in setup
    if path == AWS_YAML:
        assert definitions[0].startswith("s3://")
