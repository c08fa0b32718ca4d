"""Errors that the command-line tools report as one clear line instead of a traceback."""


class ElureproError(Exception):
    """Base class: a problem the user can fix (bad config, missing data)."""


class ConfigError(ElureproError):
    """A configuration value is invalid."""


class DataError(ElureproError):
    """A data set is missing, incomplete or corrupt."""
