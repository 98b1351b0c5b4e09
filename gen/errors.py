"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""

from __future__ import annotations

import re
from collections.abc import Callable

# C0/C1 controls except tab and newline, DEL, and the bidirectional overrides: what lets a file's
# text retitle a terminal, write its clipboard, rewrite a line or reorder what is shown.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


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


def printable(text: str) -> str:
    """`text` with control characters written as escapes (`\\x1b`), for printing untrusted text."""
    return _CONTROLS.sub(lambda match: repr(match.group())[1:-1], text)


def user_message(exc: BaseException, name_of: Callable[[str], str] = lambda name: name) -> str:
    """One printable line for the user: a GenError's own message (fields named by `name_of`), else the
    type and the first line of an unexpected error."""
    if isinstance(exc, FieldError):
        return printable(exc.named(name_of))
    text = str(exc).strip()
    if isinstance(exc, GenError):
        return printable(text)
    first = text.splitlines()[0][:300] if text else ""
    return printable(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
