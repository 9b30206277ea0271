"""Helpers shared by the search-space tests."""

from __future__ import annotations

from typing import Any

import pytest

from eegtune.models import EEGModel, create_model
from eegtune.search_spaces import SearchSpace, list_spaces
from eegtune.training.config import TrainConfig

ALL_SPACES = list_spaces()
SEEDS = range(20)


def build(config: dict[str, Any]) -> tuple[TrainConfig, EEGModel]:
    """What a trial does with its config first: parse it, then build the network."""
    train = TrainConfig.from_flat(config)
    return train, create_model(train.model, **train.model_params)


@pytest.fixture(params=ALL_SPACES, ids=lambda s: s.name)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return request.param
