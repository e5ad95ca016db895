"""Exception types. Every error a user can cause derives from :class:`AecnnError`.

The command line prints such errors as one line (``aecnn: error: ...``) instead of a traceback.
"""


class AecnnError(Exception):
    """Base class of all errors that come from bad input rather than from a bug."""


class DatasetNotFoundError(AecnnError):
    """The dataset folder is missing or does not have the expected layout."""


class ImageReadError(AecnnError):
    """An image file could not be decoded."""


class UnknownModelError(AecnnError):
    """No model of that name is registered."""


class UnknownSplitPointError(AecnnError):
    """The backbone has no split point of that name."""


class WeightsError(AecnnError):
    """Weights could not be found, loaded or matched to the model."""


class CheckpointError(AecnnError):
    """A checkpoint is missing, corrupt, or belongs to another configuration."""


class ConfigError(AecnnError):
    """A configuration file or override is malformed."""


class RecordError(AecnnError):
    """A results record (a JSON file under ``results/``) is missing or malformed."""
