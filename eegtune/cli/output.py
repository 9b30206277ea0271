"""What a person sees: log lines, and progress that fits where it runs.

Library modules log through ``logging.getLogger(__name__)`` and never print; the CLI
decides here what reaches the screen. ``--quiet`` keeps warnings and errors only, ``-v``
adds debug lines. Progress bars are drawn only on a terminal: piped to a file, a bar's
every redraw would land on one endless line, so a long command logs a short line per
step (a fold, a subject) instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

LOGGER = "eegtune"


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Send eegtune's log records to stderr at the level the flags ask for."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logger = logging.getLogger(LOGGER)
    logger.setLevel(level)
    for handler in list(logger.handlers):  # a second main() in one process: replace it
        if getattr(handler, "_eegtune", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._eegtune = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress_bar(quiet: bool = False, **kwargs: Any):
    """A tqdm bar on a terminal; a disabled one (updates cost nothing) elsewhere."""
    from tqdm.auto import tqdm

    return tqdm(disable=quiet or not on_terminal(), **kwargs)
