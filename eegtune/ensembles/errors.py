"""The one error the ensembles raise for a request they refuse (the CLI exits 2 on it)."""

from eegtune.errors import EegtuneError


class EnsembleError(EegtuneError, ValueError):
    """An ensemble that cannot be built as asked; the message says why and names the file."""
