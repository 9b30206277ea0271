"""Model zoo: every architecture registered by name behind one ``EEGModel`` contract.

>>> from eegtune.models import create_model, list_models
>>> model = create_model("sparse_attention", head_ratio=0.1)
>>> model.get_config()["n_chans"]
129
"""

# The model modules are imported for their @register_model side effect.
from eegtune.models import (  # noqa: F401
    baselines,
    dense_attention,
    eegnex,
    softargmax_tcn,
    sparse_attention,
)
from eegtune.models.base import EEGModel, ModelHparams, WindowNorm
from eegtune.models.grouped_attention import DenseSelfAttention, GroupedSelfAttention
from eegtune.models.registry import (
    create_model,
    get_model_class,
    list_models,
    model_from_config,
    register_model,
)

__all__ = [
    "DenseSelfAttention",
    "EEGModel",
    "GroupedSelfAttention",
    "ModelHparams",
    "WindowNorm",
    "create_model",
    "get_model_class",
    "list_models",
    "model_from_config",
    "register_model",
]
