"""Replays of recorded sessions as sources: Empatica E4 export folders, WFDB ECG records, our own
recordings (``replay:record:DIR``, made by ``run --record``) and EDF/BDF files (``replay:edf:FILE``).

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
import json
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
        for stream in self.streams:
            path = self.folder / _E4_FILES[stream]
            if stream == "ibi":
                if not _has_rows(path):
                    log.info("%s: IBI.csv is empty; beats will come from the BVP", self.spec)
                    continue
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


# --- recordings made by emotion-edge (run --record) and EDF/BDF files -------------------------------

def _file_blocks(stream: str, channels: tuple[str, ...], rate_hz: float, origin_unix: float, first_index: int,
                 data: np.ndarray, order: int, source: str) -> Iterator[tuple[float, int, SampleBlock]]:
    """Blocks of BLOCK_S; sample i at origin + (first_index + i) / rate, as the recorded source had it."""
    per_block = max(1, round(BLOCK_S * rate_hz))
    for i0 in range(0, len(data), per_block):
        part = data[i0:i0 + per_block]
        k = first_index + i0
        yield (origin_unix + (k + len(part)) / rate_hz, order,
               SampleBlock(stream, origin_unix + k / rate_hz, rate_hz, part, channels, source))


async def paced_blocks(source: Source, gens: list[Iterator[tuple[float, int, SampleBlock]]], t_ref: float,
                       speed: float | None) -> AsyncIterator[SampleBlock]:
    """Merge per-stream block generators by end time and pace them from ``t_ref``."""
    pacer = Pacer(speed)
    source.stats.connected = True
    for end_unix, _, block in heapq.merge(*gens, key=lambda item: (item[0], item[1])):
        await pacer.until(end_unix - t_ref)
        source.stats.samples[block.stream] = source.stats.samples.get(block.stream, 0) + block.n
        yield block
    source.stats.connected = False
    log.info("%s: end of recording", source.spec)


class RecordingReplay(Source):
    """``replay:record:DIR``: a folder written by ``run --record`` (its ``recording.json``), on its own clock.

    Each stream's files are read in chunk order, one file at a time (memory: one chunk per stream);
    regular streams keep their recorded sample times (``origin_unix``/``first_index`` in
    recording.json), event streams (``ibi``) their exact times from the JSON lines. Samples come
    from the lossless ``.npy`` copies where the recording kept them (the default), else from the
    EDF/BDF files, digitised (see docs/recording.md for what that changes). Only
    complete chunks are replayed (an open chunk left by a crash has no raw samples).
    Option ``streams=eda+ecg`` limits what is replayed.
    """

    def __init__(self, folder: str | Path, speed: float | None = 1.0, streams: tuple[str, ...] | None = None):
        super().__init__()
        self.folder = Path(folder)
        self.spec = f"replay:record:{folder}"
        _check_speed(self.spec, speed)
        self.speed = speed
        manifest = self.folder / "recording.json"
        try:
            self.manifest = json.loads(manifest.read_text())
            chunks = self.manifest["chunks"]
        except FileNotFoundError:
            raise SourceError(f"source {self.spec!r}: no recording.json in {self.folder} (not a recording folder?)") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"source {self.spec!r}: {manifest}: unreadable ({exc})") from None
        files: dict[str, list[dict]] = {}
        for chunk in chunks:
            if not chunk.get("complete"):
                continue  # the open chunk of a run that died: its raw samples were never written
            for entry in chunk.get("files", []):
                files.setdefault(entry["key"], []).append({"kind": "edf", **entry})
            for entry in chunk.get("event_streams", []):
                files.setdefault(entry["key"], []).append({"kind": "jsonl", **entry})
        if streams is not None:
            files = {k: v for k, v in files.items() if v[0]["stream"] in streams}
        self.files = files
        self.streams = tuple(sorted({v[0]["stream"] for v in files.values()}))
        if not self.streams:
            raise SourceError(f"source {self.spec!r}: the recording in {self.folder} holds no "
                              f"{'such ' if streams else ''}stream data (yet)")

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> RecordingReplay:
        path, query = split_query(target)
        opts = parse_options(query, {"streams": lambda v: tuple(s for s in v.split("+") if s)},
                             f"replay:record:{target}")
        return cls(path, speed, opts.get("streams"))

    def _stream_blocks(self, entries: list[dict], order: int) -> Iterator[tuple[float, int, SampleBlock]]:
        from edge.edf_format import RecordingError, read_stream_file  # noqa: PLC0415

        for entry in entries:
            path = self.folder / entry["file"]
            if entry["kind"] == "jsonl":
                yield from self._event_blocks(path, entry, order)
                continue
            data = self._exact_samples(entry)
            if data is None:
                try:
                    found, _ = read_stream_file(path, n_samples=int(entry["n_samples"]))
                except RecordingError as exc:
                    raise SourceError(f"source {self.spec!r}: {exc}") from None
                if not found:
                    raise SourceError(f"source {self.spec!r}: {path.name}: no {entry['stream']} signal in the file")
                data = found[0].data.astype(entry.get("dtype", "float32"))
            yield from _file_blocks(entry["stream"], tuple(entry["channels"]), float(entry["rate_hz"]),
                                    float(entry["origin_unix"]), int(entry["first_index"]), data, order, self.spec)

    def _exact_samples(self, entry: dict) -> np.ndarray | None:
        """The lossless copy of an EDF file's samples (``.npy``), when the recording kept one."""
        name = entry.get("samples_file")
        if not name or not (self.folder / name).exists():
            return None
        try:
            data = np.load(self.folder / name, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("%s: %s unreadable (%s); using the EDF file", self.spec, name, exc)
            return None
        if data.ndim != 2 or len(data) != int(entry["n_samples"]):
            log.warning("%s: %s does not match %s; using the EDF file", self.spec, name, entry["file"])
            return None
        return data

    def _event_blocks(self, path: Path, entry: dict, order: int) -> Iterator[tuple[float, int, SampleBlock]]:
        if not path.exists():
            return
        channels = tuple(entry.get("channels") or (entry["stream"].upper(),))
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                try:
                    row = json.loads(line)
                    times = np.asarray(row["times_unix"], dtype=np.float64)
                    data = np.asarray(row["data"], dtype=entry.get("dtype", "float32")).reshape(len(times), -1)
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: %s line %d unreadable (a crash mid-line?); skipped", self.spec, path.name, n)
                    continue
                if len(times):
                    yield (float(times[-1]), order, SampleBlock(entry["stream"], float(times[0]), 0.0, data, channels,
                                                                self.spec, times_unix=times))

    def _first_unix(self, entries: list[dict]) -> float:
        e = entries[0]
        if e["kind"] == "edf":
            return float(e["origin_unix"]) + int(e["first_index"]) / float(e["rate_hz"])
        for _, _, block in self._event_blocks(self.folder / e["file"], e, 0):
            return block.ts_unix
        return float("inf")

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        t_ref = min(self._first_unix(v) for v in self.files.values())
        log.info("%s: replaying %s from %.3f", self.spec, ", ".join(sorted(self.files)), t_ref)
        gens = [self._stream_blocks(entries, k) for k, entries in enumerate(self.files.values())]
        async for block in paced_blocks(self, gens, t_ref, self.speed):
            yield block


class EdfReplay(Source):
    """``replay:edf:FILE``: one EDF/EDF+/BDF/BDF+ file, its signals mapped to streams by their labels.

    ``EEG <channel>`` -> eeg, ``ECG``/``EKG`` -> ecg, ``EDA``/``GSR`` -> eda, ``BVP``/``PPG`` -> bvp (the
    EDF+ "type channel" convention); other signals are skipped. Times start at the header's start
    (UTC, sub-second included).
    """

    def __init__(self, path: str | Path, speed: float | None = 1.0):
        super().__init__()
        from edge.edf_format import RecordingError, read_stream_file  # noqa: PLC0415

        self.path = Path(path)
        self.spec = f"replay:edf:{path}"
        _check_speed(self.spec, speed)
        self.speed = speed
        if not self.path.is_file():
            raise SourceError(f"source {self.spec!r}: file {self.path} not found")
        try:
            self.recorded, _ = read_stream_file(self.path)
        except RecordingError as exc:
            raise SourceError(f"source {self.spec!r}: {exc}") from None
        if not self.recorded:
            raise SourceError(f"source {self.spec!r}: no signal labelled EEG, ECG, EDA or BVP in {self.path.name}")
        self.streams = tuple(sorted({r.stream for r in self.recorded}))

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> EdfReplay:
        return cls(target, speed)

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        recorded = [RecordedStream(r.stream, r.channels, r.data, r.start_unix, r.rate_hz) for r in self.recorded]
        async for block in replay_blocks(self, recorded, self.speed):
            yield block
