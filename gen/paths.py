"""Where gen keeps its files, and how user-given names become safe file names."""

from __future__ import annotations

import os
import re
from pathlib import Path


def user_cache_dir() -> Path:
    """The cache root: $GEN_CACHE_DIR, else $XDG_CACHE_HOME/gen, else ~/.cache/gen."""
    explicit = os.environ.get("GEN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "gen"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, max_length: int = 100) -> str:
    """A file-name component made from `name`: no separators, no leading dots, bounded length."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "unnamed"
    return cleaned[:max_length]
