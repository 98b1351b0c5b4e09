"""JSON in and out, strictly: what gen writes is standard JSON (no NaN or Infinity), and what it
reads from files a user may hand it (PNG chunks, sidecars, job lines, manifests) fails with one
line — also when it is nested too deeply for the parser."""

from __future__ import annotations

import json
from typing import Any

from gen.errors import GenError


def dumps(value: Any, **kwargs: Any) -> str:
    """Standard JSON; a NaN or infinity raises ValueError instead of writing `NaN`/`Infinity`."""
    return json.dumps(value, allow_nan=False, **kwargs)


def loads(text: str | bytes, what: str) -> Any:
    """Parse JSON read from `what` (a file name, "line 3", …); GenError with one line if it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenError(f"{what} is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise GenError(f"{what} is not usable JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise GenError(f"{what} is not UTF-8 text") from None
