"""Replays of recorded sessions as sources: Empatica E4 export folders, WFDB ECG records, our own
recordings (``replay:record:DIR``, made by ``run --record``) and EDF/BDF files (``replay:edf:FILE``).

A replay keeps the recording's own clock (blocks carry the recording's unix times, so the
published states line up with a study's labels), interleaves its streams in time order,
is paced by ``speed`` (1.0 = real time, None = as fast as possible) and ends at the end of
the recording. Files are streamed: the pure readers in ``firmware_bridge.protocols``
(``e4_csv``, ``wfdb``) parse ~1 MB at a time in a worker thread, so memory does not grow with
the recording and the event loop (and SIGTERM) is never held for more than one chunk. Headers
are checked when the source is opened; a bad one is one line naming the file.

Specs:

- ``replay:e4:DIR`` — an E4 session folder. Yields ``eda`` (µS, 4 Hz), ``bvp`` (64 Hz),
  ``ibi`` (ms, irregular, ``times_unix`` = the beat times from IBI.csv), ``temp`` (skin
  temperature °C, 4 Hz) and ``acc`` (g, 32 Hz, channels X Y Z). EDA.csv is required;
  BVP.csv, IBI.csv, TEMP.csv and ACC.csv are used when present (an empty IBI.csv is normal for some sessions: the
  daemon then finds beats in the BVP). Option ``streams=eda+ibi`` limits what is replayed.
- ``replay:wfdb:RECORD`` — a WFDB record path without extension (``/data/mitbih/100``).
  Yields ``ecg`` in µV (the header's mV x 1000, the same unit as a Polar H10 and the
  simulator). Options: ``channel=1`` or ``channel=V5`` (default: the first signal);
  ``start=UNIX`` sets the time of the first sample. Without ``start=``, the header's base
  date and time are used when it has them; otherwise the record starts at the wall-clock
  time the replay starts (so states look current to subscribers; MIT-BIH headers carry no date).
- ``replay:record:DIR`` and ``replay:edf:FILE`` — see ``RecordingReplay`` and ``EdfReplay`` below
  and docs/recording.md.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge import limits
from edge.errors import DatasetError, SourceError
from edge.stream import SampleBlock
from firmware_bridge.clock import arrival_time
from firmware_bridge.simulate import Pacer, parse_options, split_query
from firmware_bridge.source import Source

log = logging.getLogger(__name__)

BLOCK_S = 0.5  # every replayed stream is cut into blocks this long (IBI: beats grouped per slot)


class StreamCursor:
    """One stream of a recording, cut into blocks as it is read: a few chunks in memory, never the file.

    ``chunks`` yields parsed pieces of the file (blocking reads: each is fetched in a worker thread,
    so the event loop and SIGTERM stay responsive); ``cut`` turns a piece into time-ordered blocks.
    """

    def __init__(self, chunks: Iterator[Any], cut: Callable[[Any], list[SampleBlock]],
                 on_error: Callable[[SourceError], None] | None = None):
        self._chunks = chunks
        self._cut = cut
        self._blocks: collections.deque[SampleBlock] = collections.deque()
        # a bad row found mid-file: with on_error this stream ends there (told once), the others go on
        self._on_error = on_error

    async def next_block(self) -> SampleBlock | None:
        while not self._blocks:
            try:
                chunk = await asyncio.to_thread(next, self._chunks, None)
            except SourceError as exc:
                if self._on_error is None:
                    raise
                self._on_error(exc)
                return None
            if chunk is None:
                return None
            self._blocks.extend(self._cut(chunk))
        return self._blocks.popleft()

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class RegularCutter:
    """Cuts (n, ch) chunks of a regular stream into BLOCK_S blocks; sample times from a whole index.

    A chunk's tail that does not fill a block waits for the next chunk; ``flush()`` hands it over
    at the end of the file.
    """

    def __init__(self, stream: str, channels: tuple[str, ...], start_unix: float, rate_hz: float, source: str):
        self.stream, self.channels, self.source = stream, channels, source
        self.start_unix, self.rate_hz = start_unix, rate_hz
        self.per_block = max(1, round(BLOCK_S * rate_hz))
        self.index = 0  # samples handed out so far: time = start + index / rate, never a float sum
        self._rest: np.ndarray | None = None

    def _block(self, data: np.ndarray) -> SampleBlock:
        block = SampleBlock(self.stream, self.start_unix + self.index / self.rate_hz, self.rate_hz, data,
                            self.channels, self.source)
        self.index += len(data)
        return block

    def __call__(self, chunk: Any) -> list[SampleBlock]:
        if chunk is _END:
            rest, self._rest = self._rest, None
            return [self._block(rest)] if rest is not None and len(rest) else []
        data = chunk if self._rest is None else np.concatenate((self._rest, chunk))
        whole = len(data) // self.per_block * self.per_block
        blocks = [self._block(data[i0:i0 + self.per_block]) for i0 in range(0, whole, self.per_block)]
        self._rest = data[whole:] if whole < len(data) else None
        return blocks


_END = object()  # after a regular stream's last chunk: its partial last block


def _then_end(chunks: Iterator[Any]) -> Iterator[Any]:
    yield from chunks
    yield _END


def regular_cursor(chunks: Iterator[np.ndarray], stream: str, channels: tuple[str, ...], start_unix: float,
                   rate_hz: float, source: str, on_error: Callable[[SourceError], None] | None = None) -> StreamCursor:
    return StreamCursor(_then_end(chunks), RegularCutter(stream, channels, start_unix, rate_hz, source), on_error)


def event_cutter(stream: str, channels: tuple[str, ...], start_unix: float,
                 source: str) -> Callable[[tuple[np.ndarray, np.ndarray]], list[SampleBlock]]:
    """Cuts (times_unix, values (n, ch)) chunks of an event stream into one block per BLOCK_S slot."""

    def cut(chunk: tuple[np.ndarray, np.ndarray]) -> list[SampleBlock]:
        times, values = chunk
        if not len(times):
            return []
        slots = np.floor((times - start_unix) / BLOCK_S).astype(np.int64)
        cuts = np.flatnonzero(np.diff(slots)) + 1
        return [SampleBlock(stream, float(times[idx[0]]), 0.0, values[idx], channels, source, times_unix=times[idx])
                for idx in np.split(np.arange(len(times)), cuts)]

    return cut


async def replay_blocks(source: Source, cursors: list[StreamCursor], speed: float | None) -> AsyncIterator[SampleBlock]:
    """Merge the streams' blocks by end time and pace them against the recording's first sample."""
    heads: list[tuple[float, int, SampleBlock]] = []
    try:
        for k, cursor in enumerate(cursors):
            block = await cursor.next_block()
            if block is not None:
                heapq.heappush(heads, (block.end_unix, k, block))
        if not heads:
            return
        t_ref = min(float(block_times_first(b)) for _, _, b in heads)
        pacer = Pacer(speed)
        source.stats.connected = True
        while heads:
            end_unix, k, block = heapq.heappop(heads)
            await pacer.until(end_unix - t_ref)
            source.stats.samples[block.stream] = source.stats.samples.get(block.stream, 0) + block.n
            yield block
            nxt = await cursors[k].next_block()
            if nxt is not None:
                heapq.heappush(heads, (nxt.end_unix, k, nxt))
        source.stats.connected = False
        log.info("%s: end of recording", source.spec)
    finally:
        for cursor in cursors:
            cursor.close()


def block_times_first(block: SampleBlock) -> float:
    if block.times_unix is not None and len(block.times_unix):
        return float(block.times_unix[0])
    return block.ts_unix


def _check_speed(spec: str, speed: float | None) -> None:
    if speed is not None and speed <= 0:
        raise SourceError(f"source {spec!r}: speed must be > 0 (or None for as fast as possible), got {speed}")


# --- Empatica E4 ---------------------------------------------------------------------------------

E4_STREAMS = ("eda", "bvp", "ibi", "temp", "acc")
_E4_FILES = {"eda": "EDA.csv", "bvp": "BVP.csv", "ibi": "IBI.csv", "temp": "TEMP.csv", "acc": "ACC.csv"}
# what each regular E4 stream's samples become: (channel names, factor to the stream's unit)
_E4_REGULAR = {"eda": (("EDA",), 1.0), "bvp": (("BVP",), 1.0), "temp": (("TEMP",), 1.0),
               "acc": (("X", "Y", "Z"), 1.0 / 64.0)}  # ACC.csv counts are 1/64 g; the acc stream is in g


def _scaled(chunks: Iterator[np.ndarray], n_channels: int, factor: float) -> Iterator[np.ndarray]:
    """A signal file's chunks as float32 in the stream's unit (a function, so each stream keeps its own factor)."""
    for c in chunks:
        yield (c[:, :n_channels] * factor).astype(np.float32)


class E4Replay(Source):
    """An Empatica E4 export folder replayed on its own clock (see module doc).

    Each file's header rows are checked when the source is opened; a bad file is left out in one
    line naming it and what is wrong, and the good files beside it are replayed. The samples are
    then streamed in chunks (memory does not grow with the file).
    """

    def __init__(self, folder: str | Path, speed: float | None = 1.0, streams: tuple[str, ...] = E4_STREAMS):
        super().__init__()
        from firmware_bridge.protocols import e4_csv

        self.folder = Path(folder)
        self.spec = f"replay:e4:{folder}"
        _check_speed(self.spec, speed)
        bad = [s for s in streams if s not in E4_STREAMS]
        if bad or not streams:
            raise SourceError(f"source {self.spec!r}: unknown stream(s) {'+'.join(bad) or '(none)'} "
                              f"(known: {'+'.join(E4_STREAMS)})")
        if not self.folder.is_dir():
            raise SourceError(f"source {self.spec!r}: folder {self.folder} not found")
        if "eda" in streams and not (self.folder / "EDA.csv").exists():
            raise SourceError(f"source {self.spec!r}: no EDA.csv in {self.folder} (not an E4 export folder?)")
        self.speed = speed
        self.stream_errors: dict[str, str] = {}  # stream -> why its file was left out (named in `missing`)
        present = [s for s in streams if (self.folder / _E4_FILES[s]).is_file()]
        if not present:
            raise SourceError(f"source {self.spec!r}: none of {', '.join(_E4_FILES[s] for s in streams)} "
                              f"in {self.folder}")
        kept, problems = [], []
        for stream in present:
            path = self.folder / _E4_FILES[stream]
            try:
                if stream == "ibi":
                    if e4_csv.read_e4_ibi_start(path, error=SourceError) is None:
                        log.info("%s: IBI.csv is empty; beats will come from the BVP", self.spec)
                        continue
                else:
                    e4_csv.read_e4_signal_header(path, error=SourceError)
            except SourceError as exc:
                problems.append(str(exc))
                self.stream_errors[stream] = str(exc)
                continue
            kept.append(stream)
        if not kept and problems:
            raise SourceError(f"source {self.spec!r}: {problems[0]}")
        for problem in problems:  # the good files beside a bad one are still replayed
            log.error("source %s: %s; left out", self.spec, problem)
        self.streams = tuple(kept)

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> E4Replay:
        path, query = split_query(target)
        opts = parse_options(query, {"streams": lambda v: tuple(s for s in v.split("+") if s)},
                             f"replay:e4:{target}")
        return cls(path, speed, opts.get("streams", E4_STREAMS))

    def cursors(self) -> list[StreamCursor]:
        """One streaming cursor per file (headers read now, samples as the replay goes)."""
        from firmware_bridge.protocols import e4_csv

        out: list[StreamCursor] = []
        for stream in self.streams:
            path = self.folder / _E4_FILES[stream]

            def failed(exc: SourceError, stream: str = stream) -> None:
                log.error("source %s: %s; the other files go on", self.spec, exc)
                self.stream_errors[stream] = str(exc)

            if stream == "ibi":
                start, beats = e4_csv.iter_e4_ibi(path, error=SourceError)
                chunks = ((start + offsets, (ibi_s * 1000.0).astype(np.float32)[:, None]) for offsets, ibi_s in beats)
                out.append(StreamCursor(chunks, event_cutter("ibi", ("IBI",), start, self.spec), failed))
            else:
                header, samples = e4_csv.iter_e4_signal(path, error=SourceError)
                channels, factor = _E4_REGULAR[stream]
                out.append(regular_cursor(_scaled(samples, len(channels), factor), stream, channels,
                                          header.start_unix, header.rate_hz, self.spec, failed))
        return out

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        cursors = await asyncio.to_thread(self.cursors)
        log.info("%s: replaying %s", self.spec, ", ".join(self.streams) or "nothing")
        async for block in replay_blocks(self, cursors, self.speed):
            yield block
        if self.streams and all(stream in self.stream_errors for stream in self.streams):
            raise SourceError(f"source {self.spec!r}: {self.stream_errors[self.streams[0]]}")


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
        self.rate_hz = header.rate_hz
        try:  # the signal file beside the header, regular, as long as the header says: before any read
            self.n_frames = wfdb.signal_file(self.record, header, header.signals[self.channel_index].file_name).n_frames
        except DatasetError as exc:
            raise SourceError(f"source {self.spec!r}: {exc}") from exc
        if start_unix is not None and not limits.is_unix_time(start_unix):
            raise SourceError(f"source {self.spec!r}: start={start_unix:g} is not a unix time in "
                              f"{limits.unix_range_text()}")
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

    def cursor(self, start_unix: float) -> StreamCursor:
        """The chosen lead streamed from the signal file, in µV (blocking open: call from a worker thread)."""
        from firmware_bridge.protocols import wfdb

        try:
            _, _, chunks = wfdb.iter_wfdb_signal(self.record, self.channel_index)
        except DatasetError as exc:
            raise SourceError(f"source {self.spec!r}: {exc}") from exc
        return regular_cursor(_as_source_errors((c * 1000.0).astype(np.float32)[:, None] for c in chunks), "ecg",
                              (self.channel_name,), start_unix, self.rate_hz, self.spec)

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        if self.start_unix is None:
            self.start_unix = arrival_time()
        cursor = await asyncio.to_thread(self.cursor, self.start_unix)
        log.info("%s: replaying %s, %.0f s at %g Hz from %.3f", self.spec, self.channel_name,
                 self.n_frames / self.rate_hz, self.rate_hz, self.start_unix)
        async for block in replay_blocks(self, [cursor], self.speed):
            yield block


def _as_source_errors(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    try:
        yield from chunks
    except DatasetError as exc:
        raise SourceError(str(exc)) from exc


# --- recordings made by emotion-edge (run --record) and EDF/BDF files -------------------------------

MAX_RECORDED_FILE_BYTES = 8 << 30  # record.max_chunk_mb <= 4096 MB of 16-bit EDF = 8 GB as float32


def recorded_file_blocks(stream: str, channels: tuple[str, ...], rate_hz: float, origin_unix: float,
                         first_index: int, data: np.ndarray, source: str) -> list[SampleBlock]:
    """A recorded file's samples as BLOCK_S blocks; sample i at origin + (first_index + i) / rate, the
    time line the recorded source had (a whole index, never a float sum)."""
    per_block = max(1, round(BLOCK_S * rate_hz))
    return [SampleBlock(stream, origin_unix + (first_index + i0) / rate_hz, rate_hz, data[i0:i0 + per_block],
                        channels, source) for i0 in range(0, len(data), per_block)]


class RecordingReplay(Source):
    """``replay:record:DIR``: a folder written by ``run --record`` (its ``recording.json``), on its own clock.

    Each stream's files are read in chunk order, one file at a time in a worker thread (memory: one
    chunk's file per stream). Regular streams keep their recorded sample times (``origin_unix`` and
    ``first_index`` in recording.json) and come from the lossless ``.npy`` copies where the
    recording kept them (the default), else from the EDF/BDF files, digitised (see
    docs/recording.md for what that changes); event streams (``ibi``) come back with their exact
    times from the JSON lines. Only complete chunks are replayed (an open chunk left by a crash has
    no raw samples). Option ``streams=eda+ecg`` limits what is replayed.
    """

    def __init__(self, folder: str | Path, speed: float | None = 1.0, streams: tuple[str, ...] | None = None):
        super().__init__()
        self.folder = Path(folder)
        self.spec = f"replay:record:{folder}"
        _check_speed(self.spec, speed)
        self.speed = speed
        manifest = self.folder / "recording.json"
        try:
            from edge.record import read_manifest  # noqa: PLC0415

            chunks = read_manifest(manifest)["chunks"]
            files: dict[str, list[dict]] = {}
            for chunk in chunks:
                if not chunk.get("complete"):
                    continue  # the open chunk of a run that died: its raw samples were never written
                for entry in chunk.get("files", []):
                    files.setdefault(str(entry["key"]), []).append({"kind": "edf", **entry})
                for entry in chunk.get("event_streams", []):
                    files.setdefault(str(entry["key"]), []).append({"kind": "jsonl", **entry})
            for entries in files.values():
                for entry in entries:
                    self._check_entry(entry)
        except FileNotFoundError:
            raise SourceError(f"source {self.spec!r}: no recording.json in {self.folder} (not a recording folder?)") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SourceError(f"source {self.spec!r}: {manifest}: unreadable ({type(exc).__name__}: {exc})") from None
        if streams is not None:
            files = {k: v for k, v in files.items() if v[0]["stream"] in streams}
        self.files = files
        self.streams = tuple(sorted({v[0]["stream"] for v in files.values()}))
        if not self.streams:
            raise SourceError(f"source {self.spec!r}: the recording in {self.folder} holds no "
                              f"{'such ' if streams else ''}stream data (yet)")

    def _check_entry(self, entry: dict) -> None:
        """A file entry names a file in this folder and carries sane numbers (else ValueError)."""
        name = str(entry["file"])
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"file {name!r} is not a plain name in the folder")
        if entry["kind"] == "edf":
            rate = float(entry["rate_hz"])
            if not (0 < rate <= 100_000) or int(entry["n_samples"]) < 0 or int(entry["first_index"]) < 0:
                raise ValueError(f"{name}: rate_hz/n_samples/first_index out of range")
            if not np.isfinite(float(entry["origin_unix"])):
                raise ValueError(f"{name}: origin_unix is not a number")
            sidecar = entry.get("samples_file")
            if sidecar is not None and (Path(str(sidecar)).name != sidecar or str(sidecar).startswith(".")):
                raise ValueError(f"samples file {sidecar!r} is not a plain name in the folder")

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> RecordingReplay:
        path, query = split_query(target)
        opts = parse_options(query, {"streams": lambda v: tuple(s for s in v.split("+") if s)},
                             f"replay:record:{target}")
        return cls(path, speed, opts.get("streams"))

    def _file_chunks(self, entries: list[dict]) -> Iterator[list[SampleBlock]]:
        """One list of blocks per file (blocking reads: the cursor fetches each in a worker thread)."""
        for entry in entries:
            if entry["kind"] == "jsonl":
                yield list(self._event_blocks(self.folder / entry["file"], entry))
                continue
            data = self._exact_samples(entry)
            if data is None:
                data = self._edf_samples(entry)
            yield recorded_file_blocks(entry["stream"], tuple(entry["channels"]), float(entry["rate_hz"]),
                                       float(entry["origin_unix"]), int(entry["first_index"]), data, self.spec)

    def _edf_samples(self, entry: dict) -> np.ndarray:
        from edge.edf_format import RecordingError, read_stream_header, iter_stream_samples  # noqa: PLC0415

        path = self.folder / entry["file"]
        try:
            groups, _ = read_stream_header(path)
            group = next((g for g in groups if g.stream == entry["stream"]), None)
            if group is None:
                raise SourceError(f"source {self.spec!r}: {path.name}: no {entry['stream']} signal in the file")
            parts = list(iter_stream_samples(path, group, int(entry["n_samples"])))
        except RecordingError as exc:
            raise SourceError(f"source {self.spec!r}: {exc}") from None
        data = np.concatenate(parts) if parts else np.zeros((0, len(group.channels)), np.float32)
        return data.astype(entry.get("dtype", "float32"))

    def _exact_samples(self, entry: dict) -> np.ndarray | None:
        """The lossless copy of an EDF file's samples (``.npy``), when the recording kept one."""
        name = entry.get("samples_file")
        if not name or not (self.folder / name).exists():
            return None
        try:
            data = np.load(self.folder / name, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as exc:
            log.warning("%s: %s unreadable (%s); using the EDF file", self.spec, name, exc)
            return None
        if data.nbytes > MAX_RECORDED_FILE_BYTES:  # a chunk is max_chunk_mb (<= 4 GB of EDF): refuse more
            raise SourceError(f"source {self.spec!r}: {name}: {data.nbytes / 1e6:.0f} MB, more than a chunk can hold")
        if data.ndim != 2 or len(data) != int(entry["n_samples"]) or data.shape[1] != len(entry["channels"]):
            log.warning("%s: %s does not match %s; using the EDF file", self.spec, name, entry["file"])
            return None
        return np.array(data)

    def _event_blocks(self, path: Path, entry: dict) -> Iterator[SampleBlock]:
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
                if len(times) and np.all(np.isfinite(times)):
                    yield SampleBlock(entry["stream"], float(times[0]), 0.0, data, channels, self.spec, times_unix=times)

    def cursors(self) -> list[StreamCursor]:
        return [StreamCursor(self._file_chunks(entries), lambda blocks: blocks) for entries in self.files.values()]

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        log.info("%s: replaying %s", self.spec, ", ".join(sorted(self.files)))
        async for block in replay_blocks(self, self.cursors(), self.speed):
            yield block


class EdfReplay(Source):
    """``replay:edf:FILE``: one EDF/EDF+/BDF/BDF+ file, its signals mapped to streams by their labels.

    ``EEG <channel>`` -> eeg, ``ECG``/``EKG`` -> ecg, ``EDA``/``GSR`` -> eda, ``BVP``/``PPG`` -> bvp (the
    EDF+ "type channel" convention); other signals are skipped. Times start at the header's start
    (UTC, sub-second included). Samples are streamed in chunks.
    """

    def __init__(self, path: str | Path, speed: float | None = 1.0):
        super().__init__()
        from edge.edf_format import RecordingError, read_stream_header  # noqa: PLC0415

        self.path = Path(path)
        self.spec = f"replay:edf:{path}"
        _check_speed(self.spec, speed)
        self.speed = speed
        if not self.path.is_file():
            raise SourceError(f"source {self.spec!r}: file {self.path} not found")
        try:
            self.groups, _ = read_stream_header(self.path)
        except RecordingError as exc:
            raise SourceError(f"source {self.spec!r}: {exc}") from None
        if not self.groups:
            raise SourceError(f"source {self.spec!r}: no signal labelled EEG, ECG, EDA or BVP in {self.path.name}")
        self.streams = tuple(sorted({g.stream for g in self.groups}))

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> EdfReplay:
        return cls(target, speed)

    def cursors(self) -> list[StreamCursor]:
        from edge.edf_format import iter_stream_samples  # noqa: PLC0415

        return [regular_cursor(iter_stream_samples(self.path, g), g.stream, g.channels, g.start_unix, g.rate_hz,
                               self.spec) for g in self.groups]

    async def blocks(self) -> AsyncIterator[SampleBlock]:
        async for block in replay_blocks(self, self.cursors(), self.speed):
            yield block
