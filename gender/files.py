"""Files written whole: a reader never sees half of one, and a failure leaves nothing behind."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write` into a hidden temporary file beside `path`, renamed to `path` when complete.

    The file gets a new file's mode (0666 less the umask), as `open` gives: mkstemp's 0600 kept a
    service running under another account from reading the models that `train` wrote."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
