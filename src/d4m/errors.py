"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class D4MError(Exception):
    """A problem with the user's input (a flag, a file, a dataset), not a bug in d4m."""


class ConfigError(D4MError):
    """A configuration key or flag has an invalid value."""


class DataError(D4MError):
    """A dataset path, layout or file is unusable."""


class ModelError(D4MError):
    """A model directory, checkpoint or codec is unusable or incompatible."""
