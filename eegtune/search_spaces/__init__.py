"""Named, versioned Optuna define-by-run search spaces over flat ``TrainConfig`` keys.

>>> from eegtune.search_spaces import get_space, sample_config
>>> config = sample_config(get_space("sparse_attention"), seed=0)
>>> config["model"], "model.head_ratio" in config, "lr" in config
('sparse_attention', True, True)

With Ray Tune: ``OptunaSearch(space=get_space("zoo").define, metric=..., mode=...)``.
"""

from eegtune.search_spaces.registry import (
    DefineFn,
    SearchSpace,
    get_space,
    list_space_names,
    list_spaces,
    register_space,
)
from eegtune.search_spaces.sampling import (
    ParamSummary,
    SpaceSummary,
    default_point,
    describe_space,
    format_distribution,
    sample_config,
    sample_configs,
    summarize_space,
)
from eegtune.search_spaces.spaces import (
    DENSE_ATTENTION,
    EEGNEX_RECIPE,
    SOFTARGMAX_TCN,
    SPARSE_ATTENTION,
    ZOO,
    ZOO_C2,
    make_zoo_space,
    zoo_for,
    zoo_models,
)
from eegtune.search_spaces.subspaces import ARCHITECTURES, lr_mult_key, model_key

__all__ = [
    "ARCHITECTURES",
    "DENSE_ATTENTION",
    "EEGNEX_RECIPE",
    "SOFTARGMAX_TCN",
    "SPARSE_ATTENTION",
    "ZOO",
    "ZOO_C2",
    "DefineFn",
    "ParamSummary",
    "SearchSpace",
    "SpaceSummary",
    "default_point",
    "describe_space",
    "format_distribution",
    "get_space",
    "list_space_names",
    "list_spaces",
    "lr_mult_key",
    "make_zoo_space",
    "model_key",
    "register_space",
    "sample_config",
    "sample_configs",
    "summarize_space",
    "zoo_for",
    "zoo_models",
]
