"""Atomic file writes: a reader never sees a half-written output.

A write that fails because the disk is full raises :class:`DiskFullError` naming the file, instead of
whatever the writing library makes of ``ENOSPC`` (safetensors and ``torch.save`` bury it in a
generic message).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rrsis_bench.errors import UserError

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# safetensors (Rust) reports the OS error only as text, e.g. "I/O error: No space left on device (os
# error 28)"; torch.save to a path loses the errno entirely (it is kept when given a file object).
_DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded", f"os error {errno.ENOSPC})",
                    f"os error {errno.EDQUOT})")


class DiskFullError(UserError, OSError):
    """Writing ``target`` failed because its file system is full (or the user's quota is used up)."""

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target)
        super().__init__(
            errno.ENOSPC,
            f"The disk is full: cannot write {self.target} (no space left on device); free space on that "
            "disk or write to another one.",
        )

    def __str__(self) -> str:  # the sentence alone, without OSError's "[Errno 28]" prefix
        return self.strerror


def is_disk_full(exc: BaseException) -> bool:
    """True if ``exc`` or an exception it was raised from says the disk (or the quota) is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if any(text in str(current).lower() for text in _DISK_FULL_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


@contextlib.contextmanager
def reporting_disk_full(target: str | os.PathLike) -> Iterator[None]:
    """Turn a disk-full failure inside the block into :class:`DiskFullError` naming ``target``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise DiskFullError(target) from exc
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file lives in the destination folder so the rename is atomic on POSIX.
    On any error the temporary file is removed and ``path`` is left untouched; a full disk raises
    :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    with reporting_disk_full(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, _write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
