"""Per-architecture and training-recipe sub-spaces, shared by every registered space.

Each sub-space suggests its parameters on the trial (under their flat ``TrainConfig`` keys) and
returns nothing: the values live in ``trial.params``, and under Ray the suggest calls are what
gets captured into the trial config.

Every parameter name is suggested from exactly one place here, with one distribution. That is
what keeps the mixed ``zoo`` space well defined: TPE pools the history of a parameter name
across trials, so ``model.dropout`` must mean the same range whichever architecture asked.

Ranges keep the networks small: training runs on CPU over a few hundred windows per fold.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from eegtune.training.config import LR_MULT_PREFIX, MODEL_PREFIX

__all__ = [
    "ARCHITECTURES",
    "ATTENTION_MODELS",
    "BATCH_SIZES",
    "D_MODELS",
    "N_HEADS",
    "SubSpace",
    "lr_mult_key",
    "model_key",
    "suggest_attention_backbone",
    "suggest_dense_attention",
    "suggest_eegnex",
    "suggest_group_rates",
    "suggest_recipe",
    "suggest_softargmax_tcn",
    "suggest_sparse_attention",
]

SubSpace = Callable[[optuna.Trial], None]

BATCH_SIZES = (32, 64, 128)
# Every width is a multiple of every head count, so the two are drawn independently and
# d_model % n_heads == 0 always holds: no conditional choice lists, which TPE handles badly.
D_MODELS = (16, 32, 48, 64, 96)
N_HEADS = (2, 4)
ATTENTION_MODELS = ("sparse_attention", "dense_attention")


def model_key(hparam: str) -> str:
    """``"head_ratio"`` -> ``"model.head_ratio"``, the flat key ``TrainConfig`` reads."""
    return f"{MODEL_PREFIX}{hparam}"


def lr_mult_key(group: str) -> str:
    """``"head"`` -> ``"lr_mult.head"``: the rate multiplier of one of a model's groups."""
    return f"{LR_MULT_PREFIX}{group}"


def suggest_recipe(trial: optuna.Trial) -> None:
    """Optimiser and batch: searched for every architecture, on one common scale."""
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True)
    trial.suggest_categorical("batch_size", BATCH_SIZES)


def _suggest_dropout(trial: optuna.Trial) -> None:
    # Shared by the attention backbone and the TCN, which both name it "dropout".
    trial.suggest_float(model_key("dropout"), 0.0, 0.4)


def suggest_group_rates(trial: optuna.Trial) -> None:
    """The attention and head groups' rates, as multiples of the front end's (``lr``), and
    a warm-up before the cosine decay.

    Multipliers rather than three free rates: the base rate keeps one scale across every
    space, and 1.0 on both is the single-rate search's own point. Up to two epochs of
    warm-up, since a rate up to 10× the base is least stable in the first steps.
    """
    for group in ("attention", "head"):
        trial.suggest_float(lr_mult_key(group), 0.1, 10.0, log=True)
    trial.suggest_float("warmup_epochs", 0.0, 2.0)


def suggest_attention_backbone(trial: optuna.Trial) -> None:
    """Widths and depth of the CNN + transformer backbone both attention models share.

    ``pool`` stays at its default (50 tokens per 2 s window) because ``head_ratio`` is a
    fraction of the token count: searching both would make head_ratio's meaning drift.
    """
    trial.suggest_categorical(model_key("d_model"), D_MODELS)
    trial.suggest_categorical(model_key("n_heads"), N_HEADS)
    trial.suggest_int(model_key("n_layers"), 1, 3)
    _suggest_dropout(trial)


def suggest_sparse_attention(trial: optuna.Trial, group_rates: bool = True) -> None:
    """Backbone plus the grouping: n_groups = max(1, round(head_ratio * 50)), and the
    group learning rates unless ``group_rates`` is off (one rate: the benchmark's control).

    0.02..0.5 spans 1 group (the dense control, ~13% of the log range) up to 25 groups of two
    tokens, so the search can find out whether sparsity helps at all.
    """
    suggest_attention_backbone(trial)
    trial.suggest_float(model_key("head_ratio"), 0.02, 0.5, log=True)
    trial.suggest_categorical(model_key("pattern"), ("blocked", "strided"))
    if group_rates:
        suggest_group_rates(trial)


def suggest_dense_attention(trial: optuna.Trial) -> None:
    """The control: the same backbone with full attention, hence no grouping parameters."""
    suggest_attention_backbone(trial)
    suggest_group_rates(trial)


def suggest_softargmax_tcn(trial: optuna.Trial) -> None:
    """TCN widths and the soft-argmax loss; the KL knobs only exist when the loss is KL.

    ``kl_sigma`` and ``mse_weight`` are read only by the KL loss, so suggesting them under
    ``loss="mse"`` would let TPE fit noise to parameters that change nothing.
    """
    trial.suggest_categorical(model_key("n_filters"), (16, 24, 32, 48))
    # Odd kernels keep "same" padding symmetric around each sample.
    trial.suggest_int(model_key("kernel_size"), 3, 9, step=2)
    # Dilations 1..2**(n-1): at k=5, 2 blocks see 25 samples (250 ms), 5 the whole window.
    trial.suggest_int(model_key("n_blocks"), 2, 5)
    _suggest_dropout(trial)
    loss = trial.suggest_categorical(model_key("loss"), ("kl", "mse"))
    if loss == "kl":
        # In samples at 100 Hz: 20..100 ms of slack around the press.
        trial.suggest_float(model_key("kl_sigma"), 2.0, 10.0)
        trial.suggest_float(model_key("mse_weight"), 0.01, 1.0, log=True)


def suggest_eegnex(trial: optuna.Trial) -> None:
    """The starter-kit EEGNeX: architecture at braindecode defaults, regularisation searched."""
    trial.suggest_float(model_key("drop_prob"), 0.1, 0.6)
    trial.suggest_float(model_key("max_norm_conv"), 0.5, 2.0, log=True)
    trial.suggest_float(model_key("max_norm_linear"), 0.1, 1.0, log=True)


# Model name -> the sub-space of its hyperparameters (the recipe is added by the spaces),
# in the order the zoo offers them. A new tuned architecture is one entry here.
ARCHITECTURES: dict[str, SubSpace] = {
    "sparse_attention": suggest_sparse_attention,
    "dense_attention": suggest_dense_attention,
    "softargmax_tcn": suggest_softargmax_tcn,
    "eegnex": suggest_eegnex,
}
