"""Empatica E4 export CSVs (E4 connect "download session" layout), parsed in plain numpy.

Signal files (EDA, BVP, HR, TEMP, ACC): row 1 = session start (unix s, UTC) per column, row 2 =
sample rate (Hz) per column, then one sample a row (ACC: three columns x, y, z in 1/64 g).
IBI.csv: row 1 = start time and the word ``IBI``, then rows ``offset_s, ibi_s`` (time of the
beat since the start, interval since the previous detected beat; beats the device rejected are
simply absent). ``tags_*.csv``: one unix time a row (button presses).

Used by the ``replay:e4:DIR`` source (streamed in ~1 MB chunks: ``iter_e4_signal``,
``iter_e4_ibi``) and the Stress-Predict dataset loader (whole files). Start times must be unix
times (1973..2100), rates in ``edge.limits``' range, samples finite. Errors raise
``DatasetError`` by default (pass ``error=SourceError`` from a source) and name the file and row.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge import limits
from edge.errors import DatasetError
from edge.limits import MAX_LINE_BYTES
from edge.small_files import open_regular

E4_SIGNAL_FILES = ("EDA", "BVP", "HR", "TEMP", "ACC")
E4_MIN_START_UNIX = 1e8  # 1973: anything earlier is not an E4 session start
CHUNK_BYTES = 1 << 20  # read and parse this much of a file at a time (~1 MB, ~100k EDA rows)


@dataclass(frozen=True)
class E4Signal:
    """One regularly sampled E4 signal; sample i is at ``start_unix + i / rate_hz``."""

    name: str
    start_unix: float
    rate_hz: float
    data: np.ndarray  # (n, channels) float64

    @property
    def duration_s(self) -> float:
        return len(self.data) / self.rate_hz


@dataclass(frozen=True)
class E4Ibi:
    """Inter-beat intervals: beat i at ``start_unix + offsets_s[i]``, ``ibi_s[i]`` since the previous beat."""

    start_unix: float
    offsets_s: np.ndarray
    ibi_s: np.ndarray

    @property
    def times_unix(self) -> np.ndarray:
        return self.start_unix + self.offsets_s


def _numbers(row: str, what: str, name: str, error: type[Exception]) -> np.ndarray:
    cells = [c.strip() for c in row.split(",") if c.strip()]
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError as exc:
        raise error(f"E4 file {name}: {what} row {row.strip()!r} is not numeric") from exc


class CsvLines:
    """A CSV file's lines, read in bounded chunks: memory does not grow with the file.

    ``head(n)`` gives the first rows as text; ``batches()`` then yields ``(row number of the
    first line, lines)`` for the rest, about ``chunk_bytes`` at a time. A "row" longer than
    ``MAX_LINE_BYTES`` (a file without line breaks, a binary file) is refused in one line
    naming the file and row, before it is held in memory. Line ends: LF, CRLF or CR.
    """

    def __init__(self, fh: BinaryIO, name: str, error: type[Exception], chunk_bytes: int = CHUNK_BYTES):
        self._fh = fh
        self.name = name
        self._error = error
        self._chunk_bytes = chunk_bytes
        self._lines: list[bytes] = []
        self._tail = b""
        self._eof = False
        self.row = 0  # rows handed out so far

    @classmethod
    def open(cls, path: str | Path, error: type[Exception], chunk_bytes: int = CHUNK_BYTES) -> CsvLines:
        """Open regular file ``path`` (``error`` naming it if it is missing or not a regular file)."""
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            raise error(f"E4 file {path}: not found") from None
        except ValueError as exc:  # a FIFO or a device would block or never end
            raise error(f"E4 file {path}: {exc}") from None
        except OSError as exc:
            raise error(f"E4 file {path}: cannot read ({exc.strerror or exc})") from None
        return cls(os.fdopen(fd, "rb"), str(path), error, chunk_bytes)

    @classmethod
    def from_text(cls, text: str, name: str, error: type[Exception]) -> CsvLines:
        return cls(io.BytesIO(text.encode("utf-8", errors="replace")), name, error)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> bool:
        """Read one chunk into the line list; False once the file is exhausted."""
        if self._eof:
            return False
        data = self._fh.read(self._chunk_bytes)
        if not data:
            self._eof = True
            if self._tail:
                self._lines.append(self._tail)
                self._tail = b""
                return True
            return False
        data = (self._tail + data).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > MAX_LINE_BYTES:
            self._too_long(self.row + len(self._lines) + len(lines) + 1)
        if lines and max(map(len, lines)) > MAX_LINE_BYTES:
            k = next(i for i, ln in enumerate(lines) if len(ln) > MAX_LINE_BYTES)
            self._too_long(self.row + len(self._lines) + k + 1)
        self._lines.extend(lines)
        return True

    def _too_long(self, row: int) -> None:
        raise self._error(f"E4 file {self.name}: row {row} is longer than {MAX_LINE_BYTES} bytes "
                          "(not a CSV row: line breaks missing or not a text file)")

    def head(self, n: int) -> list[str]:
        """The next ``n`` rows as text (fewer at the end of the file)."""
        while len(self._lines) < n and self._fill():
            pass
        out, self._lines = self._lines[:n], self._lines[n:]
        self.row += len(out)
        return [ln.decode("utf-8", errors="replace") for ln in out]

    def batches(self) -> Iterator[tuple[int, list[bytes]]]:
        while self._lines or self._fill():
            out, self._lines = self._lines, []
            first = self.row + 1
            self.row += len(out)
            if out:
                yield first, out


def _body(lines: list[bytes], first_row: int, n_cols: int, name: str, error: type[Exception]) -> np.ndarray:
    """Rows ``lines`` (numbered from ``first_row``) as an (n, n_cols) float64 array; blank rows skipped."""
    rows = [i for i, ln in enumerate(lines) if ln.strip()]
    if not rows:
        return np.zeros((0, n_cols), dtype=np.float64)
    body = [lines[i] for i in rows]
    flat = b",".join(body).decode("latin-1")
    values = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a non-numeric cell: numpy warns (1.x) or raises (2.x)
        try:
            values = np.fromstring(flat, sep=",", dtype=np.float64)
        except (ValueError, DeprecationWarning):
            values = None
    if values is None or values.size != len(body) * n_cols:
        # slow path only to find and name the bad row
        for k, ln in zip(rows, body):
            text = ln.decode("utf-8", errors="replace")
            cells = text.split(",")
            if len(cells) != n_cols:
                raise error(f"E4 file {name}: row {first_row + k} has {len(cells)} columns, expected {n_cols}")
            try:
                [float(c) for c in cells]
            except ValueError as exc:
                raise error(f"E4 file {name}: row {first_row + k} {text.strip()!r} is not numeric") from exc
        raise error(f"E4 file {name}: rows {first_row}..{first_row + len(lines) - 1} are not "
                    f"{n_cols}-column numbers")  # pragma: no cover - the loop names the row
    return values.reshape(len(body), n_cols)


@dataclass(frozen=True)
class E4SignalHeader:
    """The two header rows of a signal file: sample i is at ``start_unix + i / rate_hz``."""

    name: str
    start_unix: float
    rate_hz: float
    n_cols: int


def _signal_header(lines: CsvLines, error: type[Exception]) -> E4SignalHeader:
    name = lines.name
    head = lines.head(2)
    if len(head) < 2:
        raise error(f"E4 file {name}: needs a start-time row and a sample-rate row, has {len(head)} rows")
    starts = _numbers(head[0], "start-time", name, error)
    rates = _numbers(head[1], "sample-rate", name, error)
    if starts.size == 0 or rates.size != starts.size:
        raise error(f"E4 file {name}: start-time row has {starts.size} values, sample-rate row {rates.size}")
    if not np.all(np.isfinite(rates)) or np.any(rates <= 0) or np.any(rates != rates[0]):
        raise error(f"E4 file {name}: sample rate {head[1].strip()!r} must be one positive number per column")
    if not limits.is_rate_hz(float(rates[0])):
        raise error(f"E4 file {name}: sample rate {rates[0]:g} Hz is outside "
                    f"{limits.MIN_RATE_HZ:g}..{limits.MAX_RATE_HZ:g} Hz")
    _check_start(float(starts[0]), name, error)
    return E4SignalHeader(Path(name).stem, float(starts[0]), float(rates[0]), int(starts.size))


def _check_start(start: float, name: str, error: type[Exception]) -> None:
    # E4 devices date from 2014; anything before 1973 (1e8) is not a session start
    if not (math.isfinite(start) and E4_MIN_START_UNIX <= start <= limits.MAX_UNIX_S):
        raise error(f"E4 file {name}: start time {start} is not a unix time "
                    f"(expected {E4_MIN_START_UNIX:g}..{limits.MAX_UNIX_S:g} s)")


def _check_values(values: np.ndarray, first_row: int, name: str, error: type[Exception]) -> None:
    if values.size and not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(values), axis=1))[0])
        raise error(f"E4 file {name}: row {first_row + bad} holds a value that is not a finite number")


def read_e4_signal_header(path: str | Path, error: type[Exception] = DatasetError) -> E4SignalHeader:
    """Only the two header rows of a signal file (checked), without reading the samples."""
    with CsvLines.open(path, error) as lines:
        return _signal_header(lines, error)


def read_e4_ibi_start(path: str | Path, error: type[Exception] = DatasetError) -> float | None:
    """IBI.csv's start time (checked), or None for an empty file (some sessions have no beats)."""
    with CsvLines.open(path, error) as lines:
        head = lines.head(1)
        if not head or not head[0].strip():
            return None
        lines.row = 0
        lines._lines.insert(0, head[0].encode("utf-8"))  # noqa: SLF001 - put the row back for _ibi_start
        return _ibi_start(lines, error)


def iter_e4_signal(path: str | Path, error: type[Exception] = DatasetError,
                   chunk_bytes: int = CHUNK_BYTES) -> tuple[E4SignalHeader, Iterator[np.ndarray]]:
    """(header, chunks of (n, cols) float64 samples): a signal file streamed, memory bounded by the chunk."""
    lines = CsvLines.open(path, error, chunk_bytes)
    try:
        header = _signal_header(lines, error)
    except BaseException:
        lines.close()
        raise

    def chunks() -> Iterator[np.ndarray]:
        with lines:
            for first, batch in lines.batches():
                values = _body(batch, first, header.n_cols, lines.name, error)
                _check_values(values, first, lines.name, error)
                if len(values):
                    yield values

    return header, chunks()


def _ibi_start(lines: CsvLines, error: type[Exception]) -> float:
    name = lines.name
    head = lines.head(1)
    if not head:
        raise error(f"E4 file {name}: empty (expected a start-time row)")
    first = head[0].split(",")[0].strip()
    try:
        start = float(first)
    except ValueError as exc:
        raise error(f"E4 file {name}: start-time row {head[0].strip()!r} is not numeric") from exc
    _check_start(start, name, error)
    return start


def iter_e4_ibi(path: str | Path, error: type[Exception] = DatasetError,
                chunk_bytes: int = CHUNK_BYTES) -> tuple[float, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(start unix s, chunks of (offsets_s, ibi_s)): IBI.csv streamed; beat times checked across chunks."""
    lines = CsvLines.open(path, error, chunk_bytes)
    try:
        start = _ibi_start(lines, error)
    except BaseException:
        lines.close()
        raise

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = -math.inf
        with lines:
            for first, batch in lines.batches():
                rows = _body(batch, first, 2, lines.name, error)
                if not len(rows):
                    continue
                last = _check_ibi(rows, last, start, lines.name, error)
                yield rows[:, 0], rows[:, 1]

    return start, chunks()


def _check_ibi(rows: np.ndarray, last_offset: float, start: float, name: str, error: type[Exception]) -> float:
    offsets, ibi = rows[:, 0], rows[:, 1]
    if not (np.all(np.isfinite(rows)) and np.all(ibi > 0) and np.all(ibi * 1000.0 <= limits.MAX_IBI_MS)
            and np.all(np.diff(offsets) >= 0) and offsets[0] >= last_offset and offsets[0] >= 0
            and start + offsets[-1] <= limits.MAX_UNIX_S):
        raise error(f"E4 file {name}: intervals must be positive (at most {limits.MAX_IBI_MS / 1000:g} s), "
                    "beat times increasing from the start and finite")
    return float(offsets[-1])


def _signal_from(lines: CsvLines, error: type[Exception]) -> E4Signal:
    header = _signal_header(lines, error)
    parts = []
    for first, batch in lines.batches():
        values = _body(batch, first, header.n_cols, lines.name, error)
        _check_values(values, first, lines.name, error)
        parts.append(values)
    data = np.concatenate(parts) if parts else np.zeros((0, header.n_cols), dtype=np.float64)
    return E4Signal(header.name, header.start_unix, header.rate_hz, data)


def _ibi_from(lines: CsvLines, error: type[Exception]) -> E4Ibi:
    start = _ibi_start(lines, error)
    parts, last = [], -math.inf
    for first, batch in lines.batches():
        rows = _body(batch, first, 2, lines.name, error)
        if len(rows):
            last = _check_ibi(rows, last, start, lines.name, error)
            parts.append(rows)
    rows = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.float64)
    return E4Ibi(start, rows[:, 0], rows[:, 1])


def parse_e4_signal(text: str, name: str = "signal", error: type[Exception] = DatasetError) -> E4Signal:
    """Parse a signal CSV's text (EDA/BVP/HR/TEMP/ACC layout)."""
    return _signal_from(CsvLines.from_text(text, name, error), error)


def parse_e4_ibi(text: str, name: str = "IBI.csv", error: type[Exception] = DatasetError) -> E4Ibi:
    """Parse IBI.csv's text: start time row, then (offset s, ibi s) rows."""
    return _ibi_from(CsvLines.from_text(text, name, error), error)


def read_e4_signal(path: str | Path, error: type[Exception] = DatasetError) -> E4Signal:
    """A whole signal file in memory (datasets, training); the replay streams with ``iter_e4_signal``."""
    with CsvLines.open(path, error) as lines:
        return _signal_from(lines, error)


def read_e4_ibi(path: str | Path, error: type[Exception] = DatasetError) -> E4Ibi:
    with CsvLines.open(path, error) as lines:
        return _ibi_from(lines, error)


def read_e4_tags(path: str | Path, error: type[Exception] = DatasetError) -> np.ndarray:
    """Button presses (unix s); an empty file means none."""
    times = []
    with CsvLines.open(path, error) as lines:
        for _, batch in lines.batches():
            for ln in batch:
                text = ln.decode("utf-8", errors="replace")
                if text.strip():
                    times.append(_numbers(text, "tag", str(path), error)[0])
    return np.array(times, dtype=np.float64)


def read_e4_folder(folder: str | Path, names: tuple[str, ...] = E4_SIGNAL_FILES + ("IBI",),
                   error: type[Exception] = DatasetError) -> dict[str, E4Signal | E4Ibi]:
    """Every requested file present in an E4 session folder (missing files are left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise error(f"E4 folder {folder}: not a folder")
    found: dict[str, E4Signal | E4Ibi] = {}
    for name in names:
        path = folder / f"{name}.csv"
        if path.exists():
            found[name] = read_e4_ibi(path, error) if name == "IBI" else read_e4_signal(path, error)
    if not found:
        raise error(f"E4 folder {folder}: none of {', '.join(n + '.csv' for n in names)} found")
    return found
