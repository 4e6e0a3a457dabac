"""The durable outbox: every state is stored here before it is sent, and deleted on PUBACK.

SQLite under the state folder, in WAL mode so the writer (the daemon's asyncio thread, which
appends) and the MQTT side (which reads pending rows and deletes acknowledged ones) do not block
each other. Each thread gets its own connection.

Durability: appends run with ``synchronous=FULL`` (the WAL is fsynced at each commit). Deletes
(on PUBACK) run with ``synchronous=NORMAL``: losing one to a power cut only re-sends a state,
which subscribers drop by seq. Both survive ``kill -9`` (the OS still holds the written pages).

The seq never goes back: besides the ``meta`` row, every seq handed out is recorded in a small
second file, ``<outbox>.seq`` (:mod:`edge.seq_mark`), and the counter resumes from the higher of
the two. A database that is damaged (not a database, truncated, pages that fail SQLite's
``quick_check`` or a read) is moved aside to ``<outbox>.damaged-<UTC time>`` with one WARNING line
naming where, and a fresh one is started with the rows still readable in it (in seq order up to
the first unreadable one, each a JSON state carrying its own seq; a truncated file is first
extended, sparsely, to the size its header states so that its surviving pages can be read); its
seq carries on from the mark.

A full disk: an append that cannot be stored raises :class:`OutboxFullError` carrying the seq it
was given (the publisher then sends the state live, unstored), and one WARNING line says
"disk full"; another says when storing works again.

Bounds: at most ``max_rows`` (default 100 000 rows, about 28 h of 1 Hz states), ``max_bytes`` of
payload (default 64 MiB) and ``max_age_s`` (default 7 days). Past any bound the oldest rows are
dropped: one WARNING line when dropping starts (again only after the outbox has drained), and a
counter (``dropped``). Age uses the wall clock; a clock set backwards keeps rows longer, never
shorter. The WAL is kept small (auto-checkpoint every 256 pages, ``journal_size_limit`` 1 MiB,
and :meth:`Outbox.checkpoint` truncates it), so it does not grow to megabytes on a small card.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.errors import ConfigError
from edge.seq_mark import FSYNC_EVERY, SeqMark

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
WAL_AUTOCHECKPOINT_PAGES = 256  # ~1 MiB with 4 KiB pages (SQLite's default is 1000)
JOURNAL_SIZE_LIMIT_BYTES = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_unix REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_seq', -1);
"""


class OutboxFullError(Exception):
    """A state could not be stored (disk full or another write failure); ``seq`` was handed out."""

    def __init__(self, path: Path, seq: int, why: str) -> None:
        super().__init__(f"outbox {path}: cannot store state {seq} ({why})")
        self.seq = seq


def _is_damage(exc: BaseException) -> bool:
    """A DatabaseError that means the file is broken (not busy, not full, not unwritable)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if not isinstance(exc, sqlite3.OperationalError):
        return True  # "file is not a database", "database disk image is malformed"
    return "malformed" in str(exc) or "not a database" in str(exc)


def _is_disk_full(exc: BaseException) -> bool:
    return "full" in str(exc) or getattr(exc, "errno", None) == 28


class Outbox:
    """Rows of (seq, topic, payload, created_unix); seq from a counter that never goes back."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_rows < 1 or max_age_s <= 0 or max_bytes < 1:
            raise ValueError("outbox: max_rows and max_bytes must be >= 1 and max_age_s > 0")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.dropped = 0
        self.unstored = 0
        self.moved_aside: list[Path] = []
        self._dropping = False
        self._full_logged = False
        self._lock = threading.RLock()  # serialises database use and guards the counters
        self._local = threading.local()
        self._generation = 0  # bumped when a damaged database is replaced: connections reopen
        self._connections: list[sqlite3.Connection] = []
        self._mark = SeqMark(self.path.with_name(self.path.name + ".seq"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"outbox {self.path}: cannot create its folder ({exc})") from None
        with self._lock:
            self._open_checked()
            self._last_seq = self._resume_seq()
        self.prune_expired()

    # -- opening, damage ------------------------------------------------------------------------

    def _open_checked(self) -> None:
        """Open (creating) the database; a damaged one is moved aside and replaced."""
        salvaged: list[tuple] = []
        for attempt in range(2):
            try:
                self._ensure_file_mode()
                conn = self._conn()
                check = conn.execute("PRAGMA quick_check").fetchall()
                if [tuple(r) for r in check] != [("ok",)]:
                    raise sqlite3.DatabaseError(f"quick_check: {check[0][0]}")
                conn.executescript(_SCHEMA)
                if salvaged:
                    conn.executemany("INSERT OR IGNORE INTO outbox (seq, topic, payload, created_unix) "
                                     "VALUES (?, ?, ?, ?)", salvaged)
                self._depth, self._bytes = conn.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
                ).fetchone()
                return
            except sqlite3.DatabaseError as exc:
                if attempt == 0 and (_is_damage(exc) or "quick_check" in str(exc)):
                    salvaged = self._move_aside(str(exc))
                    continue
                raise ConfigError(
                    f"outbox {self.path}: cannot open it as an SQLite database ({exc})"
                ) from None
            except OSError as exc:
                raise ConfigError(f"outbox {self.path}: cannot open it ({exc})") from None

    def _ensure_file_mode(self) -> None:
        """States are personal data: the database is created 0600 (SQLite would use the umask)."""
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))

    def _resume_seq(self) -> int:
        """The last seq handed out: the database's counter, unless the mark says it was higher."""
        conn = self._conn()
        db_last = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0]
        row_last = conn.execute("SELECT COALESCE(MAX(seq), -1) FROM outbox").fetchone()[0]
        db_last = max(db_last, row_last)
        marked = self._mark.read()
        last = db_last
        if marked is not None and marked > db_last:
            # the database lost its counter (damaged, replaced, edited): carry on past the mark,
            # plus the seqs a power cut may have kept from the mark, so no seq is handed out twice
            last = marked + FSYNC_EVERY
            log.warning(
                "outbox %s: its seq counter (%d) is behind the high-water mark in %s (%d); "
                "carrying on from %d so that no seq is reused",
                self.path, db_last, self._mark.path, marked, last + 1)
        try:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (last,))
        except sqlite3.OperationalError as exc:  # e.g. a full disk: the mark holds the counter
            log.debug("outbox %s: cannot update its seq counter (%s)", self.path, exc)
        try:
            self._mark.write(last)
        except OSError as exc:
            log.warning("seq mark %s: cannot write it (%s)", self._mark.path, exc)
        return last

    def _salvage(self, path: Path) -> list[tuple]:
        """The rows still readable in a damaged database, in seq order, up to the first bad one.

        A row is kept only if its payload is a JSON state carrying its own seq, so a damaged page
        can never put a different state under an old seq. Bounded by ``max_rows``/``max_bytes``.
        """
        import json  # noqa: PLC0415

        rows: list[tuple] = []
        size = 0
        try:
            original_size = os.path.getsize(path)
            _pad_to_header_size(path)
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        except (sqlite3.Error, OSError):
            return rows
        try:
            cursor = conn.execute(
                "SELECT seq, topic, payload, created_unix FROM outbox ORDER BY seq")
            for seq, topic, payload, created in cursor:  # row by row: an error keeps those before
                try:
                    ok = json.loads(bytes(payload)).get("seq") == seq and isinstance(topic, str)
                except (ValueError, TypeError, AttributeError):
                    ok = False
                if not ok:
                    break
                rows.append((seq, topic, bytes(payload), float(created)))
                size += len(payload)
                if len(rows) >= self.max_rows or size >= self.max_bytes:
                    break
        except (sqlite3.Error, ValueError, TypeError):
            pass  # the rest is unreadable: keep what came before
        finally:
            conn.close()
            try:
                os.truncate(path, original_size)  # the moved-aside file as it was found
            except OSError:
                pass
        return rows

    def _move_aside(self, why: str) -> list[tuple]:
        """Close every connection, rename the database (and its WAL) aside; the rows salvaged."""
        self._close_connections()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            pass
        for suffix in ("-wal", "-shm"):
            extra = self.path.with_name(self.path.name + suffix)
            try:
                if suffix == "-wal":
                    os.replace(extra, aside.with_name(aside.name + suffix))
                else:
                    extra.unlink()
            except FileNotFoundError:
                pass
        self.moved_aside.append(aside)
        self._depth = self._bytes = 0
        salvaged = self._salvage(aside) if aside.exists() else []
        log.warning(
            "outbox %s: damaged (%s); moved aside to %s, starting a fresh outbox with the %d "
            "readable states it held (the others are not delivered)",
            self.path, _first_line(why), aside, len(salvaged))
        return salvaged

    def _recover(self, exc: BaseException) -> None:
        """A read or write found the database damaged while running: replace it, keep the seq."""
        with self._lock:
            rows = self._move_aside(str(exc))
            self._open_checked()
            conn = self._conn()
            conn.executemany("INSERT OR IGNORE INTO outbox (seq, topic, payload, created_unix) "
                             "VALUES (?, ?, ?, ?)", rows)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (self._last_seq,))
            self._depth, self._bytes = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "generation", -1) != self._generation:
            conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
            self._local.conn = conn
            self._local.generation = self._generation
            with self._lock:
                self._connections.append(conn)
        return conn

    # -- the operations -------------------------------------------------------------------------

    def append(self, topic: str, payload_for_seq: Callable[[int], bytes]) -> int:
        """Assign the next seq, store ``payload_for_seq(seq)`` under it; returns the seq.

        The payload is built inside the transaction because it carries its own seq. Raises
        :class:`OutboxFullError` (with the seq) when the state cannot be stored.
        """
        with self._lock:
            seq = self._last_seq + 1
            payload = payload_for_seq(seq)  # may raise (a bad state): the seq is not consumed
            self._last_seq = seq
            try:
                self._mark.write(seq)
            except OSError as exc:
                log.debug("seq mark %s: %s", self._mark.path, exc)
            for attempt in range(2):
                try:
                    self._store(seq, topic, payload)
                    break
                except sqlite3.DatabaseError as exc:
                    if attempt == 0 and _is_damage(exc):
                        self._recover(exc)
                        continue
                    self.unstored += 1
                    self._note_cannot_store(exc)
                    raise OutboxFullError(self.path, seq, _first_line(str(exc))) from None
            if self._full_logged:
                self._full_logged = False
                log.warning("outbox %s: storing states again (%d not stored meanwhile)",
                            self.path, self.unstored)
        return seq

    def _store(self, seq: int, topic: str, payload: bytes) -> None:
        conn = self._conn()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (seq,))
            conn.execute(
                "INSERT INTO outbox (seq, topic, payload, created_unix) VALUES (?, ?, ?, ?)",
                (seq, topic, payload, time.time()),
            )
            dropped, freed, why = self._drop_over_bounds(conn, len(payload))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite has already rolled back after SQLITE_FULL
                conn.execute("ROLLBACK")
            raise
        self._depth += 1 - dropped
        self._bytes += len(payload) - freed
        if dropped:
            self._note_dropped(dropped, why)

    def _drop_over_bounds(self, conn: sqlite3.Connection, new_bytes: int) -> tuple[int, int, str]:
        """Delete the oldest rows past ``max_rows`` or ``max_bytes``: (rows, bytes, why)."""
        excess_rows = self._depth + 1 - self.max_rows
        excess_bytes = self._bytes + new_bytes - self.max_bytes
        if excess_rows <= 0 and excess_bytes <= 0:
            return 0, 0, ""
        rows = conn.execute(
            "SELECT seq, LENGTH(payload) FROM outbox ORDER BY seq LIMIT ?",
            (max(excess_rows, 0) + 1000,),
        ).fetchall()
        count, freed = 0, 0
        for _, size in rows:
            if count >= excess_rows and freed >= excess_bytes:
                break
            count += 1
            freed += size
        if count == 0:
            return 0, 0, ""
        conn.execute("DELETE FROM outbox WHERE seq <= ?", (rows[count - 1][0],))
        why = (f"more than {self.max_rows} rows" if excess_rows > 0
               else f"more than {self.max_bytes} bytes")
        return count, freed, why

    def pending(self, after_seq: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` stored rows with seq > ``after_seq``, in seq order."""
        query = "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"
        with self._lock:
            try:
                rows = self._conn().execute(query, (after_seq, limit)).fetchall()
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                self._recover(exc)
                rows = []
        return [(seq, topic, bytes(payload)) for seq, topic, payload in rows]

    def delete(self, seqs: list[int]) -> int:
        """Remove acknowledged rows (seqs already dropped are ignored); returns rows removed."""
        if not seqs:
            return 0
        with self._lock:
            conn = self._conn()
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                gone = conn.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox "
                    f"WHERE seq IN ({','.join('?' * len(seqs))})", seqs
                ).fetchone() if len(seqs) < 900 else None
                removed = conn.executemany(
                    "DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs]
                ).rowcount
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_damage(exc):
                    self._recover(exc)
                    return 0
                raise
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._depth -= removed
            if gone is not None:
                self._bytes -= gone[1]
            else:
                self._bytes = conn.execute(
                    "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
            if self._depth == 0:
                self._dropping = False
        return removed

    def prune_expired(self, now_unix: float | None = None) -> int:
        """Drop rows older than ``max_age_s``; returns how many."""
        cutoff = (time.time() if now_unix is None else now_unix) - self.max_age_s
        with self._lock:
            conn = self._conn()
            oldest = conn.execute("SELECT created_unix FROM outbox ORDER BY seq LIMIT 1").fetchone()
            if oldest is None or oldest[0] >= cutoff:
                return 0
            conn.execute("PRAGMA synchronous=NORMAL")
            removed = conn.execute("DELETE FROM outbox WHERE created_unix < ?", (cutoff,)).rowcount
            self._depth -= removed
            self._bytes = conn.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
            if removed:
                self._note_dropped(removed, f"older than {self.max_age_s / 86400:g} days")
        return removed

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (keeps the WAL file small)."""
        with self._lock:
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _note_dropped(self, count: int, why: str) -> None:
        self.dropped += count
        if not self._dropping:
            self._dropping = True
            log.warning(
                "outbox %s: dropping the oldest undelivered states (%s); %d dropped so far",
                self.path,
                why,
                self.dropped,
            )

    def _note_cannot_store(self, exc: BaseException) -> None:
        if self._full_logged:
            return
        self._full_logged = True
        what = "disk full" if _is_disk_full(exc) else "cannot write"
        log.warning(
            "outbox %s: %s (%s); states are sent live but not stored until it can write again "
            "(%d pending)", self.path, what, _first_line(str(exc)), self._depth)

    def depth(self) -> int:
        """Rows waiting for a PUBACK."""
        return self._depth

    def size_bytes(self) -> int:
        """Payload bytes waiting for a PUBACK."""
        return self._bytes

    def last_seq(self) -> int:
        """The last seq handed out (-1 before the first)."""
        return self._last_seq

    def _close_connections(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._connections.clear()
            self._generation += 1

    def close(self) -> None:
        self._close_connections()
        self._mark.close()
        self._local = threading.local()


def _pad_to_header_size(path: Path) -> None:
    """Extend a truncated database (sparsely: no disk blocks) to the size its header states, so
    that SQLite reads the pages that are left instead of refusing the whole file."""
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    expected = page_size * pages
    if 0 < expected <= 1 << 40 and os.path.getsize(path) < expected:
        os.truncate(path, expected)


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else "?"
