"""The errors eegtune raises for what a person asked for and can fix.

Every one derives from :class:`EegtuneError`; the CLI catches that base once, prints the
message and exits 2. Anything else that escapes is a bug and keeps its traceback. The
messages name the file, setting or flag at fault and, where there is one, the fix.

Model modules raise plain ``ValueError`` for bad hyperparameters (they travel inside the
submission zip, which cannot import eegtune); :func:`eegtune.models.create_model`'s
callers turn those into :class:`ConfigError` where a user's setting built the model.
"""

from __future__ import annotations


class EegtuneError(Exception):
    """A request eegtune refuses; the message says why."""


class ConfigError(EegtuneError, ValueError):
    """A setting, flag or hyperparameter that cannot be used as given."""


class MissingFileError(EegtuneError, FileNotFoundError):
    """A file or folder that a command needs and cannot find."""


class ExperimentError(EegtuneError):
    """An experiment folder that cannot be read, resumed or continued as asked."""
