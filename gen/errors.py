"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""


class GenError(Exception):
    """Bad input or an unavailable resource; the message says what and what is allowed."""


class ModelNotAvailable(GenError):
    """A model cannot be loaded (not cached while offline, not found, unsupported)."""


class BackendUnavailable(GenError):
    """The requested attention kernel cannot run here."""
