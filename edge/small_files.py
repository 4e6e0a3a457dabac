"""Reading a small file that a user names (config, password, baselines, WFDB header) without surprises.

A FIFO named as ``--config`` would block ``open`` forever; ``/dev/zero`` would grow memory without
bound; a 2 GB "config" would be read whole. So the file is opened non-blocking, checked to be a
regular file on the open descriptor (no race with a swap of the name), and read only up to a
limit. Problems are a ``ValueError`` with a short reason; the caller names the file and the key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path) -> int:
    """A read-only descriptor on ``path`` if it is a regular file (OSError if missing, ValueError if not regular)."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"is {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(path: str | Path) -> int:
    """Size in bytes of regular file ``path`` (OSError if missing, ValueError if not a regular file)."""
    fd = open_regular(path)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_small_bytes(path: str | Path, max_bytes: int) -> bytes:
    """The whole of regular file ``path``, refused (ValueError) beyond ``max_bytes``."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    return data


def read_small_text(path: str | Path, max_bytes: int) -> str:
    """``read_small_bytes`` decoded as UTF-8 (ValueError, a UnicodeDecodeError, if it is not)."""
    return read_small_bytes(path, max_bytes).decode("utf-8")
