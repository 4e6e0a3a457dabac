"""Replays of recorded sessions as sources: Empatica E4 export folders and WFDB ECG records.

A replay keeps the recording's own clock (blocks carry the recording's unix times, so the
published states line up with a study's labels), interleaves its streams in time order,
is paced by ``speed`` (1.0 = real time, None = as fast as possible) and ends at the end of
the recording. Parsing is done by the pure readers in ``firmware_bridge.protocols``
(``e4_csv``, ``wfdb``), in a worker thread so the event loop stays responsive.

Specs:

- ``replay:e4:DIR`` — an E4 session folder. Yields ``eda`` (µS, 4 Hz), ``bvp`` (64 Hz) and
  ``ibi`` (ms, irregular, ``times_unix`` = the beat times from IBI.csv). EDA.csv is required;
  BVP.csv and IBI.csv are used when present (an empty IBI.csv is normal for some sessions: the
  daemon then finds beats in the BVP). Option ``streams=eda+ibi`` limits what is replayed.
- ``replay:wfdb:RECORD`` — a WFDB record path without extension (``/data/mitbih/100``).
  Yields ``ecg`` in µV (the header's mV x 1000, the same unit as a Polar H10 and the
  simulator). Options: ``channel=1`` or ``channel=V5`` (default: the first signal);
  ``start=UNIX`` sets the time of the first sample. Without ``start=``, the header's base
  date and time are used when it has them; otherwise the record starts at the wall-clock
  time the replay starts (so states look current to subscribers; MIT-BIH headers carry no date).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DatasetError, SourceError
from edge.stream import SampleBlock
from firmware_bridge.simulate import Pacer, parse_options, split_query
from firmware_bridge.source import Source

log = logging.getLogger(__name__)

BLOCK_S = 0.5  # every replayed stream is cut into blocks this long (IBI: beats grouped per slot)


@dataclass(frozen=True)
class RecordedStream:
    """One stream of a recording: regular (``rate_hz`` > 0, ``data`` (n, ch)) or events (``times_unix``)."""

    stream: str
    channels: tuple[str, ...]
    data: np.ndarray
    start_unix: float
    rate_hz: float = 0.0
    times_unix: np.ndarray | None = None

    @property
    def first_unix(self) -> float:
        if self.times_unix is not None:
            return float(self.times_unix[0]) if len(self.times_unix) else float("inf")
        return self.start_unix


def _regular_blocks(rec: RecordedStream, order: int, source: str) -> Iterator[tuple[float, int, SampleBlock]]:
    per_block = max(1, round(BLOCK_S * rec.rate_hz))
    for i0 in range(0, len(rec.data), per_block):
        part = rec.data[i0:i0 + per_block]
        ts = rec.start_unix + i0 / rec.rate_hz
        yield (rec.start_unix + (i0 + len(part)) / rec.rate_hz, order,
               SampleBlock(rec.stream, ts, rec.rate_hz, part, rec.channels, source))


def _event_blocks(rec: RecordedStream, order: int, source: str) -> Iterator[tuple[float, int, SampleBlock]]:
    times = rec.times_unix
    assert times is not None
    if not len(times):
        return
    slots = np.floor((times - rec.start_unix) / BLOCK_S).astype(np.int64)
    cuts = np.flatnonzero(np.diff(slots)) + 1
    for idx in np.split(np.arange(len(times)), cuts):
        t = times[idx]
        yield (float(t[-1]), order,
               SampleBlock(rec.stream, float(t[0]), 0.0, rec.data[idx], rec.channels, source, times_unix=t))


async def replay_blocks(source: Source, recorded: list[RecordedStream], speed: float | None) -> AsyncIterator[SampleBlock]:
    """Merge the streams' blocks by end time and pace them against the recording's first sample."""
    recorded = [r for r in recorded if len(r.data)]
    if not recorded:
        return
    t_ref = min(r.first_unix for r in recorded)
    gens = [(_event_blocks if r.times_unix is not None else _regular_blocks)(r, k, source.spec)
            for k, r in enumerate(recorded)]
    pacer = Pacer(speed)
    source.stats.connected = True
    for end_unix, _, block in heapq.merge(*gens, key=lambda item: (item[0], item[1])):
        await pacer.until(end_unix - t_ref)
        source.stats.samples[block.stream] = source.stats.samples.get(block.stream, 0) + block.n
        yield block
    source.stats.connected = False
    log.info("%s: end of recording", source.spec)


def _check_speed(spec: str, speed: float | None) -> None:
    if speed is not None and speed <= 0:
        raise SourceError(f"source {spec!r}: speed must be > 0 (or None for as fast as possible), got {speed}")


# --- Empatica E4 ---------------------------------------------------------------------------------

E4_STREAMS = ("eda", "bvp", "ibi")
_E4_FILES = {"eda": "EDA.csv", "bvp": "BVP.csv", "ibi": "IBI.csv"}


def _has_rows(path: Path) -> bool:
    with open(path, errors="replace") as fh:
        return any(line.strip() for line in fh)


class E4Replay(Source):
    """An Empatica E4 export folder replayed on its own clock (see module doc)."""

    def __init__(self, folder: str | Path, speed: float | None = 1.0, streams: tuple[str, ...] = E4_STREAMS):
        super().__init__()
        self.folder = Path(folder)
        self.spec = f"replay:e4:{folder}"
        _check_speed(self.spec, speed)
        bad = [s for s in streams if s not in E4_STREAMS]
        if bad or not streams:
            raise SourceError(f"source {self.spec!r}: unknown stream(s) {'+'.join(bad) or '(none)'} "
                              f"(known: {'+'.join(E4_STREAMS)})")
        if not self.folder.is_dir():
            raise SourceError(f"source {self.spec!r}: folder {self.folder} not found")
        if "eda" in streams and not (self.folder / "EDA.csv").is_file():
            raise SourceError(f"source {self.spec!r}: no EDA.csv in {self.folder} (not an E4 export folder?)")
        self.speed = speed
        self.stream_errors: dict[str, str] = {}  # stream -> why its file was skipped (see load)
        present = [s for s in streams if (self.folder / _E4_FILES[s]).is_file()]
        self.streams = tuple(present)
        if not self.streams:
            raise SourceError(f"source {self.spec!r}: none of {', '.join(_E4_FILES[s] for s in streams)} "
                              f"in {self.folder}")

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> E4Replay:
        path, query = split_query(target)
        opts = parse_options(query, {"streams": lambda v: tuple(s for s in v.split("+") if s)},
                             f"replay:e4:{target}")
        return cls(path, speed, opts.get("streams", E4_STREAMS))

    def load(self) -> list[RecordedStream]:
        """Parse the folder's files (blocking: call from a worker thread)."""
        from firmware_bridge.protocols import e4_csv

        out: list[RecordedStream] = []
        bad: list[str] = []
        for stream in self.streams:
            try:
                out.extend(self._load_one(e4_csv, stream))
            except (SourceError, ValueError) as exc:  # a bad file: say so, replay the good ones
                log.error("%s", exc)
                bad.append(str(exc))
                self.stream_errors[stream] = str(exc)
        if not out:
            why = "; ".join(bad) or "all empty"
            raise SourceError(f"source {self.spec!r}: no usable file in {self.folder} ({why})")
        return out

    def _load_one(self, e4_csv: Any, stream: str) -> list[RecordedStream]:
        out: list[RecordedStream] = []
        path = self.folder / _E4_FILES[stream]
        if stream == "ibi":
            if not _has_rows(path):
                log.info("%s: IBI.csv is empty; beats will come from the BVP", self.spec)
                return out
            ibi = e4_csv.read_e4_ibi(path, error=SourceError)
            out.append(RecordedStream("ibi", ("IBI",), (ibi.ibi_s * 1000.0).astype(np.float32)[:, None],
                                      ibi.start_unix, 0.0, ibi.times_unix))
        else:
            sig = e4_csv.read_e4_signal(path, error=SourceError)
            out.append(RecordedStream(stream, (stream.upper(),), sig.data.astype(np.float32),
                                      sig.start_unix, sig.rate_hz))
        return out

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        recorded = await asyncio.to_thread(self.load)
        spans = ", ".join(f"{r.stream} {len(r.data)}" for r in recorded)
        log.info("%s: replaying %s from %.0f", self.spec, spans, min(r.first_unix for r in recorded))
        async for block in replay_blocks(self, recorded, self.speed):
            yield block


# --- WFDB ------------------------------------------------------------------------------------------


class WfdbReplay(Source):
    """One ECG lead of a WFDB record (format 212 or 16), in µV (see module doc)."""

    streams = ("ecg",)

    def __init__(self, record: str | Path, speed: float | None = 1.0, channel: str | int = 0,
                 start_unix: float | None = None):
        super().__init__()
        from firmware_bridge.protocols import wfdb

        self.record = wfdb.record_base(record)
        self.spec = f"replay:wfdb:{record}"
        _check_speed(self.spec, speed)
        try:
            header = wfdb.read_wfdb_header(self.record)
        except DatasetError as exc:
            raise SourceError(f"source {self.spec!r}: {exc}") from exc
        names = [s.description for s in header.signals]
        self.channel_index = self._channel_index(channel, names)
        self.channel_name = names[self.channel_index]
        self.speed = speed
        self.start_unix = start_unix if start_unix is not None else header.base_unix

    def _channel_index(self, channel: str | int, names: list[str]) -> int:
        if isinstance(channel, str) and not channel.lstrip("-").isdigit():
            if channel not in names:
                raise SourceError(f"source {self.spec!r}: no channel {channel!r} (record has {', '.join(names)})")
            return names.index(channel)
        index = int(channel)
        if not 0 <= index < len(names):
            raise SourceError(f"source {self.spec!r}: channel {index} out of range (record has {len(names)}: "
                              f"{', '.join(names)})")
        return index

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> WfdbReplay:
        path, query = split_query(target)
        opts: dict[str, Any] = parse_options(query, {"channel": str, "start": float}, f"replay:wfdb:{target}")
        return cls(path, speed, opts.get("channel", 0), opts.get("start"))

    def load(self) -> tuple[np.ndarray, float]:
        """(ecg (n, 1) µV float32, rate_hz); blocking."""
        from firmware_bridge.protocols import wfdb

        try:
            signals, rate_hz, _, _ = wfdb.read_wfdb_record(self.record)
        except DatasetError as exc:
            raise SourceError(f"source {self.spec!r}: {exc}") from exc
        return (signals[:, self.channel_index:self.channel_index + 1] * 1000.0).astype(np.float32), rate_hz

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        ecg_uv, rate_hz = await asyncio.to_thread(self.load)
        if self.start_unix is None:
            self.start_unix = time.time()
        log.info("%s: replaying %s, %.0f s at %g Hz from %.3f", self.spec, self.channel_name,
                 len(ecg_uv) / rate_hz, rate_hz, self.start_unix)
        rec = RecordedStream("ecg", (self.channel_name,), ecg_uv, self.start_unix, rate_hz)
        async for block in replay_blocks(self, [rec], self.speed):
            yield block
