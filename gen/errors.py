"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""

from __future__ import annotations

from collections.abc import Callable


class GenError(Exception):
    """Bad input or an unavailable resource; the message says what and what is allowed."""


class FieldError(GenError):
    """A bad value of one setting. The message is written once, as a template with `{name}` where
    the setting is named; each face names it in its user's words (`--width` on the command line,
    `width` in a job file, `Width` in the UI). Plain `str()` uses the field name."""

    def __init__(self, field: str, template: str):
        self.field, self.template = field, template
        super().__init__(self.named(lambda name: name))

    def named(self, name_of: Callable[[str], str]) -> str:
        # replace, not str.format: the template also holds user text, which may contain braces
        return self.template.replace("{name}", name_of(self.field))


class ModelNotAvailable(GenError):
    """A model cannot be loaded (not cached while offline, not found, unsupported)."""


class BackendUnavailable(GenError):
    """The requested attention kernel cannot run here."""


def user_message(exc: BaseException, name_of: Callable[[str], str] = lambda name: name) -> str:
    """One line for the user: a GenError's own message (fields named by `name_of`), else the type and the
    first line of an unexpected error."""
    if isinstance(exc, FieldError):
        return exc.named(name_of)
    text = str(exc).strip()
    if isinstance(exc, GenError):
        return text
    first = text.splitlines()[0][:300] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
