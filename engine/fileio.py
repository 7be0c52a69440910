"""Write a file so readers never see half of it (temporary sibling, then rename)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO, Callable


def replace_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object], *,
                       mode: int | None = None) -> None:
    """Write ``path`` through ``write(fh)`` into a temporary file beside it, then rename it over ``path``.

    Readers see the old file or the whole new one; the temporary file (``.NAME.PID.THREAD.tmp``)
    is removed when writing fails. ``mode`` (e.g. ``0o600`` for a secret) is set before the
    first byte is written; a symlink at the temporary name is refused, never followed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # the umask may have narrowed it
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
