"""Empatica E4 export CSVs (E4 connect "download session" layout), parsed in plain numpy.

Signal files (EDA, BVP, HR, TEMP, ACC): row 1 = session start (unix s, UTC) per column, row 2 =
sample rate (Hz) per column, then one sample a row (ACC: three columns x, y, z in 1/64 g).
IBI.csv: row 1 = start time and the word ``IBI``, then rows ``offset_s, ibi_s`` (time of the
beat since the start, interval since the previous detected beat; beats the device rejected are
simply absent). ``tags_*.csv``: one unix time a row (button presses).

Used by the ``replay:e4:DIR`` source and the Stress-Predict dataset loader. Errors raise
``DatasetError`` by default (pass ``error=SourceError`` from a source) and name the file and row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DatasetError

E4_SIGNAL_FILES = ("EDA", "BVP", "HR", "TEMP", "ACC")


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


def _body(lines: list[str], first_row: int, n_cols: int, name: str, error: type[Exception]) -> np.ndarray:
    body = [ln for ln in lines[first_row:] if ln.strip()]
    if not body:
        return np.zeros((0, n_cols), dtype=np.float64)
    flat = ",".join(body)
    values = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a non-numeric cell: numpy warns (1.x) or raises (2.x)
        try:
            values = np.fromstring(flat, sep=",", dtype=np.float64)
        except (ValueError, DeprecationWarning):
            values = None
    if values is None or values.size != len(body) * n_cols:
        # slow path only to find and name the bad row
        for k, ln in enumerate(body):
            cells = [c for c in ln.split(",")]
            if len(cells) != n_cols:
                raise error(f"E4 file {name}: row {k + first_row + 1} has {len(cells)} columns, expected {n_cols}")
            try:
                [float(c) for c in cells]
            except ValueError as exc:
                raise error(f"E4 file {name}: row {k + first_row + 1} {ln.strip()!r} is not numeric") from exc
        values = np.array([[float(c) for c in ln.split(",")] for ln in body], dtype=np.float64)
    return values.reshape(len(body), n_cols)


def parse_e4_signal(text: str, name: str = "signal", error: type[Exception] = DatasetError) -> E4Signal:
    """Parse a signal CSV's text (EDA/BVP/HR/TEMP/ACC layout)."""
    lines = text.splitlines()
    if len(lines) < 2:
        raise error(f"E4 file {name}: needs a start-time row and a sample-rate row, has {len(lines)} rows")
    starts = _numbers(lines[0], "start-time", name, error)
    rates = _numbers(lines[1], "sample-rate", name, error)
    if starts.size == 0 or rates.size != starts.size:
        raise error(f"E4 file {name}: start-time row has {starts.size} values, sample-rate row {rates.size}")
    if np.any(rates <= 0) or np.any(rates != rates[0]):
        raise error(f"E4 file {name}: sample rate {lines[1].strip()!r} must be one positive number per column")
    if starts[0] < 1e8:
        raise error(f"E4 file {name}: start time {starts[0]} is not a unix time")
    data = _body(lines, 2, starts.size, name, error)
    stem = Path(name).stem
    return E4Signal(stem, float(starts[0]), float(rates[0]), data)


def parse_e4_ibi(text: str, name: str = "IBI.csv", error: type[Exception] = DatasetError) -> E4Ibi:
    """Parse IBI.csv's text: start time row, then (offset s, ibi s) rows."""
    lines = text.splitlines()
    if not lines:
        raise error(f"E4 file {name}: empty (expected a start-time row)")
    head = lines[0].split(",")[0].strip()
    try:
        start = float(head)
    except ValueError as exc:
        raise error(f"E4 file {name}: start-time row {lines[0].strip()!r} is not numeric") from exc
    if start < 1e8:
        raise error(f"E4 file {name}: start time {start} is not a unix time")
    rows = _body(lines, 1, 2, name, error)
    offsets, ibi = rows[:, 0], rows[:, 1]
    if len(ibi) and (np.any(ibi <= 0) or np.any(np.diff(offsets) < 0)):
        raise error(f"E4 file {name}: intervals must be positive and beat times increasing")
    return E4Ibi(start, offsets, ibi)


def read_e4_signal(path: str | Path, error: type[Exception] = DatasetError) -> E4Signal:
    path = Path(path)
    if not path.exists():
        raise error(f"E4 file {path}: not found")
    return parse_e4_signal(path.read_text(errors="replace"), str(path), error)


def read_e4_ibi(path: str | Path, error: type[Exception] = DatasetError) -> E4Ibi:
    path = Path(path)
    if not path.exists():
        raise error(f"E4 file {path}: not found")
    return parse_e4_ibi(path.read_text(errors="replace"), str(path), error)


def read_e4_tags(path: str | Path, error: type[Exception] = DatasetError) -> np.ndarray:
    """Button presses (unix s); an empty file means none."""
    path = Path(path)
    if not path.exists():
        raise error(f"E4 file {path}: not found")
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return np.array([_numbers(ln, "tag", str(path), error)[0] for ln in lines], dtype=np.float64)


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
