"""Arguments that several ``eegtune`` commands share."""

from __future__ import annotations

import argparse

C1_TASK = "contrastChangeDetection"


class DefaultsFormatter(argparse.HelpFormatter):
    """``--help`` ends each option's line with its default, unless the help text already
    says it or there is none worth saying (required, off, unset)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            default in (None, False, argparse.SUPPRESS)
            or action.required
            or "default" in text
            or not action.option_strings
        ):
            return text
        return f"{text} (default: {default})".strip()


def show_defaults(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = DefaultsFormatter
    for action in parser._actions:
        # argparse prints nothing, default included, for an option without help text.
        worth = action.default not in (None, False, argparse.SUPPRESS) and not action.required
        if not action.help and worth and action.option_strings:
            action.help = f"(default: {action.default})"


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def task_list(values: list[str]) -> tuple[str, ...]:
    """Accept both ``--tasks a b`` and ``--tasks a,b``."""
    return tuple(t for v in values for t in csv_list(v))


def add_split_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--folds", type=int, default=5, help="subject-grouped K folds")
    group.add_argument("--by-release", action="store_true", help="leave one release out")
    p.add_argument("--seed", type=int, default=0, help="drives the splits, init and data order")


def add_data_mode_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-mode",
        choices=("auto", "memory", "stream"),
        default="auto",
        help="memory: windows held once in memory; stream: read from the store every "
        "epoch in bounded memory; auto: memory when it fits (default)",
    )


def add_device_args(p: argparse.ArgumentParser, gpus: bool) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (default): cuda where "
        + ("Ray assigned the fold a GPU (--gpus-per-fold)" if gpus else "one is visible")
        + ", else cpu; or cpu, cuda, cuda:N",
    )
    p.add_argument(
        "--precision",
        choices=("32", "bf16"),
        default="32",
        help="bf16: mixed precision (autocast) in training and inference",
    )
    if gpus:
        p.add_argument(
            "--gpus-per-fold",
            type=float,
            default=0.0,
            metavar="G",
            help="GPUs per fold, fractional allowed (0.25 puts four folds on one GPU)",
        )
