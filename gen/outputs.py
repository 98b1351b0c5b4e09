"""Output files: planning names, refusing to clobber, and writing atomically.

A result is written to a temporary file in the target folder and then linked
(or, with overwrite, renamed) into place, so a crash or Ctrl-C never leaves a
half-written file under the final name and an existing file is never replaced
unless asked.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from gen.errors import GenError


def batch_output_paths(out: str | Path, seeds: Sequence[int]) -> list[Path]:
    """`out` itself for one image; `stem-SEED.ext` for several, so each name says its seed."""
    out = Path(out)
    if len(seeds) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{seed}{out.suffix}") for seed in seeds]


def named_output_paths(out: str | Path, names: Sequence[str]) -> list[Path]:
    """`out` itself for one input; `stem-NAME.ext` for several (names sanitised, repeats numbered)."""
    from gen.paths import safe_name

    out = Path(out)
    if len(names) == 1:
        return [out]
    paths, seen = [], set()
    for name in names:
        base = safe_name(Path(name).stem, max_length=60)
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}-{n}"
        seen.add(candidate)
        paths.append(out.with_name(f"{out.stem}-{candidate}{out.suffix}"))
    return paths


def check_output_paths(paths: Sequence[Path], overwrite: bool, suffixes: Sequence[str] = (".png",)) -> None:
    """Fail before any work if an output exists (without overwrite) or cannot be written."""
    for path in paths:
        if path.suffix.lower() not in suffixes:
            raise GenError(f"output {str(path)!r} must end in {' or '.join(suffixes)}")
        if path.is_dir():
            raise GenError(f"output {str(path)!r} is a folder; give a file name")
        if path.exists() and not overwrite:
            raise GenError(f"output {str(path)!r} already exists; pass --overwrite to replace it")
        _check_writable_folder(path.parent if str(path.parent) else Path("."))


def _check_writable_folder(folder: Path) -> None:
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise GenError(f"cannot write into {str(folder)!r}: {str(existing)!r} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GenError(f"cannot write into {str(folder)!r}: permission denied")


def atomic_write(path: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call `write(tmp_path)`, then move the finished file to `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if `path` appeared meanwhile: never clobber
            except FileExistsError:
                raise GenError(f"output {str(path)!r} already exists; pass --overwrite to replace it") from None
            except OSError:  # no hard links on this file system: check, then rename
                if path.exists():
                    raise GenError(f"output {str(path)!r} already exists; pass --overwrite to replace it") from None
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
