"""Errors that reach the user as one line and exit code 2.

Every error caused by bad input (a missing file, a malformed row, a config typo) is raised as a
subclass of :class:`PprError` with a message that names the file, line or key. The CLI prints the
message on one line and exits with code 2; no traceback, nothing half written.
"""


class PprError(Exception):
    """Base class for user-facing errors (bad input or bad configuration)."""


class ConfigError(PprError):
    """A configuration key is unknown, mistyped or out of range."""


class DataError(PprError):
    """An input data file is missing, unreadable or malformed."""
