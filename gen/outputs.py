"""Output files: planning names, refusing to clobber, writing atomically, and one renderer per folder.

A result is written to a temporary file in the target folder and then linked (or, with
overwrite, renamed) into place, so a crash or Ctrl-C never leaves a half-written file under
the final name and an existing file is never replaced unless asked. Temporaries are named
`.NAME.HOST-PID.RANDOM.gen-tmp.EXT`: a later run of the same output removes those whose process
is gone (a kill -9), and nothing else — no file of the user's is ever taken for one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from gen.errors import GenError

TEMP_MARK = ".gen-tmp"
LOCK_NAME = ".gen-render.lock"


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
    try:  # access() says yes to root everywhere, and to /proc: only creating a file tells
        fd, probe = tempfile.mkstemp(prefix=".gen-write-probe-", dir=existing)
    except OSError as exc:
        raise GenError(f"cannot write into {str(existing)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


# ----------------------------------------------------------------------------- temporaries


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temporary_path(path: Path, pid: int | None = None) -> Path:
    """A temporary for writing `path` by process `pid` (this one by default), as `atomic_write` names it."""
    return path.parent / f".{path.name}.{_host_tag()}-{pid or os.getpid()}.{secrets.token_hex(4)}{TEMP_MARK}{path.suffix}"


def _temporary_pattern(path: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(path.name)}\.(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)\.[0-9a-z_]{{8}}"
                      rf"{re.escape(TEMP_MARK + path.suffix)}")


def _legacy_temporary_pattern(path: Path) -> re.Pattern:
    """What gen 0.1 named them (mkstemp's `.NAME.XXXXXXXX.tmp.EXT`)."""
    return re.compile(rf"\.{re.escape(path.name)}\.[0-9a-z_]{{8}}\.tmp{re.escape(path.suffix)}")


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def remove_stale_temporaries(outputs: Iterable[Path], exclusive: bool = False) -> list[Path]:
    """Remove the temporaries that interrupted writes of `outputs` left, and only those.

    A temporary is stale when the process that made it is gone. Whether a process of another
    host is gone cannot be told; with `exclusive` (the caller holds the folder's render lock, so
    no other render writes there) those are taken as stale too, and so are gen 0.1's.
    """
    by_folder: dict[Path, list[Path]] = {}
    for path in outputs:
        by_folder.setdefault(Path(path).parent, []).append(Path(path))
    removed = []
    for folder, paths in by_folder.items():
        try:
            names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
        except OSError:
            continue
        for name in names:
            if any(_is_stale(name, path, exclusive) for path in paths):
                (folder / name).unlink(missing_ok=True)
                removed.append(folder / name)
    return removed


def _is_stale(name: str, path: Path, exclusive: bool) -> bool:
    match = _temporary_pattern(path).fullmatch(name)
    if match:
        return _process_gone(int(match["pid"])) if match["host"] == _host_tag() else exclusive
    return exclusive and _legacy_temporary_pattern(path).fullmatch(name) is not None


def atomic_write(path: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call `write(tmp_path)`, then move the finished file to `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_host_tag()}-{os.getpid()}.",
                                    suffix=TEMP_MARK + path.suffix, dir=path.parent)
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


# ----------------------------------------------------------------------------- one renderer per folder


@contextlib.contextmanager
def render_lock(folder: str | Path, command: str = "", wait: bool = False,
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the folder's render lock (an exclusive `flock` on FOLDER/.gen-render.lock) inside the block.

    A second holder is refused with a GenError naming the first (pid, host, start, command), or
    waits with `wait`. The kernel drops the lock when its process ends, however it ends, so the
    lock of a killed run never blocks. The file is removed on release; a waiter that then holds the
    lock of a removed file notices (its inode is no longer the path's) and locks the new one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    while True:
        handle = open(lock_path, "a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(lock_path)
                if not wait:
                    raise GenError(f"another gen render ({holder}) is writing to {str(folder)!r}; wait for it to "
                                   "finish, or pass --wait to start when it has") from None
                if on_wait:
                    on_wait(f"waiting for the gen render writing to {str(folder)!r} ({holder}) …")
                fcntl.flock(handle, fcntl.LOCK_EX)
            if _same_file(handle, lock_path):
                break
        except BaseException:
            handle.close()
            raise
        handle.close()  # the holder before us removed this file: lock the one at the path now
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
                     + (f", {command}" if command else "") + "\n")
        handle.flush()
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # while still holding it
        handle.close()


def _same_file(handle, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _lock_holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0][:300] if text else "pid unknown"
