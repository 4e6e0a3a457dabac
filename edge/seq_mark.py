"""The seq high-water mark: a tiny file beside the outbox that says the last seq handed out.

Why a second file: the outbox database can be damaged (a card that loses a write, a zero-length
file after a crash, a hand-edited ``meta`` row). A fresh database would start ``seq`` again at 0
and subscribers, which drop repeats by ``seq``, would then drop new states. The mark survives
what happens to the database, so the counter only ever goes forward.

Layout: two fixed 32-byte slots, ``"<seq> <crc32 hex>\n"`` padded with spaces. Each write goes to
the slot not holding the newest value, in place (``pwrite``): no new disk block is needed, so it
works on a full disk too, and a torn write spoils one slot only; the other still holds the value
before. Writes are fsynced every ``FSYNC_EVERY`` seqs; a reader that must trust the mark over
the database adds ``FSYNC_EVERY`` to what it reads, which covers the writes a power cut can lose.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

log = logging.getLogger(__name__)

SLOT_BYTES = 32
FSYNC_EVERY = 64


def _encode(seq: int) -> bytes:
    text = f"{seq} {zlib.crc32(str(seq).encode()):08x}"
    return text.encode().ljust(SLOT_BYTES - 1) + b"\n"


def _decode(slot: bytes) -> int | None:
    try:
        text, crc = slot.decode("ascii").split()
        seq = int(text)
        return seq if int(crc, 16) == zlib.crc32(text.encode()) and seq >= -1 else None
    except (UnicodeDecodeError, ValueError):
        return None


class SeqMark:
    """``read()`` the newest valid value (None if there is none); ``write(seq)`` a newer one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._slot = 0
        self._writes = 0

    def read(self) -> int | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        values = [_decode(data[i:i + SLOT_BYTES]) for i in (0, SLOT_BYTES)]
        valid = [v for v in values if v is not None]
        if not valid and data:
            log.warning("seq mark %s: unreadable; the outbox database's counter is used", self.path)
        return max(valid) if valid else None

    def write(self, seq: int) -> None:
        """Record ``seq`` in place, in the older slot; OSError if the file cannot be written."""
        if self._fd is None:
            self._open(seq)
        os.pwrite(self._fd, _encode(seq), self._slot * SLOT_BYTES)
        self._slot ^= 1
        self._writes += 1
        if self._writes % FSYNC_EVERY == 0:
            os.fsync(self._fd)

    def _open(self, seq: int) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if created or os.fstat(fd).st_size < 2 * SLOT_BYTES:
            os.pwrite(fd, _encode(seq) * 2, 0)  # both slots valid from the start
            os.fsync(fd)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        else:
            values = [_decode(os.pread(fd, SLOT_BYTES, i * SLOT_BYTES)) for i in (0, 1)]
            newest = max(range(2), key=lambda i: -2 if values[i] is None else values[i])
            self._slot = newest ^ 1
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
