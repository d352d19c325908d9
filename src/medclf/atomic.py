"""Atomic file and folder writes: a crashed or killed process never leaves a file that looks
complete, and the temporaries it could not remove are swept by the next command.

Everything medclf writes into a run directory goes through here: write to a temporary file
in the same directory, flush and fsync, then ``os.replace`` over the final name. Folders
(an evaluation, the image cache) are built in a temporary sibling folder and renamed.

Temporaries are named ``.<final name>.<pid>-<random>.tmp``: the process id tells a later
command whether the writer is still alive (its temporary must stay) or was killed (the
temporary is debris and ``sweep_stale`` removes it). Only the kill -9 case needs this; any
Python-level failure removes the temporary on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# The process umask, read once (os.umask can only be read by setting it).
UMASK = os.umask(0)
os.umask(UMASK)
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-z_]+\.tmp$")


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(final), suffix=".tmp", dir=final.parent)
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp creates 0600; outputs get normal permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with tmp_path.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp_path.replace(final)
    finally:
        tmp_path.unlink(missing_ok=True)


def staging_dir(final: str | os.PathLike[str]) -> Path:
    """A new empty temporary folder beside ``final`` (same file system, so it can be renamed
    into place); named so that ``sweep_stale`` recognizes it once its writer is gone."""
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~UMASK)
    return tmp


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging folder that replaces the folder ``path`` only if the block succeeds.

    Readers see either the previous complete folder or the new complete one, never a
    half-written one (between the two renames there is briefly none)."""
    final = Path(path)
    tmp = staging_dir(final)
    try:
        yield tmp
        old = None
        if final.exists():
            old = final.with_name(f"{_temp_prefix(final)}{secrets.token_hex(4)}.tmp")
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def sweep_stale(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Remove medclf temporaries under ``folder`` whose writing process no longer exists
    (a kill -9 mid-write); returns what was removed. A live writer's temporaries stay."""
    root = Path(folder)
    if not root.is_dir():
        return []
    removed: list[Path] = []
    candidates = root.rglob(".*.tmp") if recursive else root.glob(".*.tmp")
    for path in sorted(candidates):
        match = _TEMP_NAME.match(path.name)
        if not match or _pid_alive(int(match["pid"])):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:  # a read-only shared run folder: leave it, it is only clutter
            continue
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds."""
    with atomic_path(path) as tmp, tmp.open(mode, encoding=None if "b" in mode else "utf-8") as fh:
        yield fh


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinity (Python or numpy float) replaced by None, numpy
    scalars and arrays as plain Python values: what strict JSON parsers (``JSON.parse``,
    ``jq``) accept. An undefined metric (AUC of a class absent from a split) is "no value"."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return finite(obj.tolist())
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (no NaN/Infinity tokens) of ``obj``; see ``finite``."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, dumps_json(obj) + "\n")
