"""Recording a session: raw streams to EDF+/BDF+, states and modality outputs and events to JSON lines.

``emotion-edge run --record DIR`` (or ``[record] dir``) makes ``DIR`` a recording folder:

- ``recording.json``: the session (device id, start, sources, streams, chunk list), rewritten
  atomically at every rollover; the last chunk is marked ``"complete": false`` while it is open;
- ``states-NNNN.jsonl``: one published state per line, exactly as published (with ``seq`` and
  ``device_id``);
- ``modalities-NNNN.jsonl``: each fresh modality estimate, as on ``<prefix>/<device>/modality/<name>``;
- ``events-NNNN.jsonl``: ``{"ts", "kind", "modality", "text"}`` per line; kinds: ``start``, ``stop``,
  ``label`` (the published label changed), ``missing``/``present`` (a modality left/joined the
  state, with the reason), ``lost``/``reconnected`` (a source's connection), ``gap`` (samples a
  source reported lost), ``ended``/``failed`` (a source stopped);
- ``<stream>-NNNN.edf`` / ``.bdf``: each regular stream's data of chunk NNNN (``edge.edf_format``),
  with the chunk's events (and, for a source with beats, each beat) as EDF+ annotations; a stream
  that had a gap in the chunk has more than one file (``<stream>-NNNN-1.edf``, ...);
- ``<stream>-NNNN.npy`` beside each EDF/BDF file (``lossless``, the default): the samples exactly
  as the source gave them, which ``replay:record`` prefers, so a replay reproduces the states;
- ``<stream>-NNNN.jsonl`` for event streams (``ibi``): one source block per line (exact times).

JSON lines are flushed line by line. Raw samples are held in memory for the open chunk (bounded
by ``max_chunk_s`` of source time and ``max_chunk_mb``) and written when it closes, so each EDF
file is complete (written under ``.part`` and renamed) and its physical range is the data's own:
a crash (even ``kill -9``) loses at most the open chunk's raw samples and nothing else.

A recorder that fails (disk full, pyedflib missing) says so in one line and stops recording; the
daemon goes on publishing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge.edf_format import BDF_STREAMS, EdfAnnotation, RecordingError, record_duration_s, write_stream_file
from edge.stream import FrameBlock, SampleBlock

log = logging.getLogger(__name__)

RECORDING_FORMAT = 1
MAX_SEGMENTS_PER_CHUNK = 32  # a source with gaps this often starts a new chunk (bounds files and memory)
MAX_EVENTS_PER_CHUNK = 20_000  # beats and events kept for the chunk's EDF annotations
CONTIGUOUS_TOLERANCE_S = 0.05  # block-time jitter (live clock mapping) still counted as continuous
POLL_S = 1.0
EDF_ANNOTATION_CHARS = 40  # edflib writes at most this many characters of an annotation


MAX_MANIFEST_BYTES = 64 << 20  # recording.json: ~1 KB a chunk


def read_manifest(path: Path) -> dict[str, Any]:
    """A recording.json, read bounded (size, nesting); OSError if missing, ValueError if not one."""
    from edge.limits import loads_json_bounded  # noqa: PLC0415
    from edge.small_files import read_small_text  # noqa: PLC0415

    data = loads_json_bounded(read_small_text(path, MAX_MANIFEST_BYTES))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


@dataclass
class _Segment:
    """A continuous stretch of a regular stream: sample i is at origin_unix + (first_index + i) / rate."""

    origin_unix: float
    first_index: int
    parts: list[np.ndarray] = field(default_factory=list)
    n: int = 0

    def data(self) -> np.ndarray:
        return np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]


@dataclass
class _StreamRec:
    key: str  # file stem: the stream kind, or kind + number for a second source of the same kind
    stream: str
    channels: tuple[str, ...]
    rate_hz: float
    source: str
    bdf: bool
    segments: list[_Segment] = field(default_factory=list)
    next_unix: float | None = None  # where the next contiguous block should start
    dtype: str = "float32"  # the source's sample type (replays give it back)
    events_fh: TextIO | None = None


class Recorder:
    """Writes one recording folder (see the module doc). Not thread-safe: call from the event loop."""

    def __init__(self, folder: Path | str, device_id: str, *, max_chunk_s: float = 600.0, max_chunk_mb: float = 64.0,
                 bdf_all: bool = False, lossless: bool = True, sources: list[str] | tuple[str, ...] = ()):
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"record dir {self.folder}: cannot create ({exc.strerror or exc})") from None
        from edge.edf_format import pyedflib_module  # noqa: PLC0415

        pyedflib_module()  # fail now, in one line, not at the first rollover
        self.device_id = device_id
        self.max_chunk_s = max_chunk_s
        self.max_chunk_bytes = max_chunk_mb * 1e6
        self.bdf_all = bdf_all
        self.lossless = lossless
        self.streams: dict[tuple[str, str], _StreamRec] = {}
        self.chunk = 0
        self.chunks: list[dict[str, Any]] = []
        self.started_unix = time.time()
        self.sessions = [self.started_unix]
        self.previous_streams: list[dict[str, Any]] = []
        self._resume()  # a restart (or a crash) carries on the same recording with the next chunk
        self.chunk_start: float | None = None
        self.chunk_end: float | None = None
        # each track's (stream key, "states") time span in the chunk: sources on different clocks
        # (a replay beside a live sensor) must not make every chunk look max_chunk_s long
        self.spans: dict[str, tuple[float, float]] = {}
        self.chunk_bytes = 0.0
        self.chunk_events: list[EdfAnnotation] = []
        self.chunk_beats: dict[str, list[EdfAnnotation]] = {}  # per source spec
        self.chunk_files: list[dict[str, Any]] = []
        self.sources = list(sources)
        self.last_label: str | None = None
        self.last_missing: dict[str, str] = {}
        self.last_present: set[str] = set()
        self.closed = False
        self.last_data_unix: float | None = None  # events are on the data's clock (a replay's own time)
        self._open_chunk_files()
        self._write_manifest()

    def _resume(self) -> None:
        path = self.folder / "recording.json"
        if not path.exists():
            return
        try:
            old = read_manifest(path)
            chunks = list(old["chunks"])
            device = old["device_id"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RecordingError(f"record dir {self.folder}: recording.json unreadable ({exc}); "
                                 "choose a new folder") from None
        if device != self.device_id:
            raise RecordingError(f"record dir {self.folder}: holds device {device!r}'s recording, not "
                                 f"{self.device_id!r}; choose a new folder")
        self.chunks = chunks  # an open chunk of a run that died stays listed with "complete": false
        self.chunk = max((int(c["index"]) for c in chunks), default=-1) + 1
        self.started_unix = float(old.get("start_unix", self.started_unix))
        self.sessions = [*old.get("sessions", []), self.sessions[-1]]
        self.previous_streams = list(old.get("streams", [])) + list(old.get("previous_streams", []))
        log.info("record: continuing the recording in %s at chunk %d", self.folder, self.chunk)

    # -- files ---------------------------------------------------------------------------------
    def _name(self, stem: str, ext: str, part: int = 0) -> str:
        return f"{stem}-{self.chunk:04d}{f'-{part}' if part else ''}.{ext}"

    def _open_chunk_files(self) -> None:
        self.states_fh = open(self.folder / self._name("states", "jsonl"), "a", buffering=1)
        self.events_fh = open(self.folder / self._name("events", "jsonl"), "a", buffering=1)
        self.modalities_fh = open(self.folder / self._name("modalities", "jsonl"), "a", buffering=1)
        for rec in self.streams.values():
            if rec.rate_hz <= 0:
                rec.events_fh = open(self.folder / self._name(rec.key, "jsonl"), "a", buffering=1)

    def _close_chunk_files(self) -> None:
        for fh in (self.states_fh, self.events_fh, self.modalities_fh):
            fh.close()
        for rec in self.streams.values():
            if rec.events_fh is not None:
                rec.events_fh.close()
                rec.events_fh = None

    @staticmethod
    def _line(fh: TextIO, obj: dict) -> None:
        fh.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")  # line-buffered: flushed

    def _manifest(self) -> dict[str, Any]:
        return {
            "format": RECORDING_FORMAT, "device_id": self.device_id, "start_unix": self.started_unix,
            "sessions": self.sessions, "sources": self.sources,
            "streams": [{"key": r.key, "stream": r.stream, "channels": list(r.channels), "rate_hz": r.rate_hz,
                         "source": r.source, "format": "jsonl" if r.rate_hz <= 0 else ("BDF+" if r.bdf else "EDF+")}
                        for r in self.streams.values()],
            "previous_streams": self.previous_streams,
            "max_chunk_s": self.max_chunk_s, "max_chunk_mb": self.max_chunk_bytes / 1e6,
            "chunks": self.chunks + [self._chunk_entry(complete=False)] if not self.closed else self.chunks,
        }

    def _chunk_entry(self, complete: bool) -> dict[str, Any]:
        return {"index": self.chunk, "complete": complete, "start_unix": self.chunk_start, "end_unix": self.chunk_end,
                "states": self._name("states", "jsonl"), "events": self._name("events", "jsonl"),
                "modalities": self._name("modalities", "jsonl"),
                "event_streams": [{"key": r.key, "stream": r.stream, "channels": list(r.channels), "source": r.source,
                                   "file": self._name(r.key, "jsonl"), "dtype": r.dtype}
                                  for r in self.streams.values() if r.rate_hz <= 0],
                "files": list(self.chunk_files) if complete else []}

    def _write_manifest(self) -> None:
        _atomic_write(self.folder / "recording.json", json.dumps(self._manifest(), indent=1) + "\n")

    # -- input -----------------------------------------------------------------------------------
    def _stream_rec(self, source: str, block: SampleBlock) -> _StreamRec:
        rec = self.streams.get((source, block.stream))
        if rec is None:
            taken = {r.key for r in self.streams.values()}
            key, k = block.stream, 2
            while key in taken:
                key, k = f"{block.stream}{k}", k + 1
            if block.rate_hz > 0:
                record_duration_s(block.rate_hz)  # refuse a rate EDF cannot hold, in one line
            rec = _StreamRec(key, block.stream, tuple(block.channels), float(block.rate_hz), source,
                             self.bdf_all or block.stream in BDF_STREAMS,
                             dtype=str(np.result_type(block.data.dtype, np.float32)))
            if rec.rate_hz <= 0:
                rec.events_fh = open(self.folder / self._name(rec.key, "jsonl"), "a", buffering=1)
            self.streams[(source, block.stream)] = rec
            self._write_manifest()
        return rec

    def on_block(self, source: str, block: SampleBlock | FrameBlock) -> None:
        """Buffer (regular) or write (events) one source block."""
        if isinstance(block, FrameBlock) or block.n == 0:
            return  # camera frames are not recorded (see docs/recording.md)
        rec = self._stream_rec(source, block)
        data = np.array(block.data, dtype=np.result_type(block.data.dtype, np.float32)).reshape(block.n, -1)
        if not self.last_data_unix:
            self._extend_span(block.ts_unix, block.ts_unix, None)
        if block.lost_samples:
            self.event("gap", None, f"{source}: {block.lost_samples} {block.stream} sample(s) lost", ts=block.ts_unix,
                       short=f"gap {block.stream} {block.lost_samples} lost")
        if rec.rate_hz <= 0:
            times = np.asarray(block.times_unix if block.times_unix is not None else [block.ts_unix], dtype=np.float64)
            self._line(rec.events_fh, {"times_unix": times.tolist(), "data": data.tolist()})  # repr: exact
            beats = self.chunk_beats.setdefault(source, [])
            for t, row in zip(times.tolist(), data.tolist()):
                if len(beats) < MAX_EVENTS_PER_CHUNK:
                    unit = "ms" if rec.stream == "ibi" else ""
                    beats.append(EdfAnnotation(t, -1.0, f"{rec.stream.upper()} {row[0]:g}{' ' + unit if unit else ''}"))
            self._extend_span(float(times[0]), float(times[-1]), rec.key)
        else:
            contiguous = (rec.segments and rec.next_unix is not None and not block.lost_samples
                          and abs(block.ts_unix - rec.next_unix) <= max(CONTIGUOUS_TOLERANCE_S, 1.0 / rec.rate_hz))
            if contiguous:
                seg = rec.segments[-1]
            else:
                if rec.segments and rec.next_unix is not None and not block.lost_samples:
                    jump = block.ts_unix - rec.next_unix
                    self.event("gap", None, f"{source}: {block.stream} jumps {jump:+.3f} s", ts=block.ts_unix,
                               short=f"gap {block.stream} {jump:+.3f} s")
                seg = _Segment(block.ts_unix, 0)
                rec.segments.append(seg)
            seg.parts.append(data)
            seg.n += block.n
            rec.next_unix = seg.origin_unix + (seg.first_index + seg.n) / rec.rate_hz
            self.chunk_bytes += data.size * (3 if rec.bdf else 2)
            self._extend_span(block.ts_unix, rec.next_unix, rec.key)
            if len(rec.segments) > MAX_SEGMENTS_PER_CHUNK:
                self.rollover()
                return
        self._maybe_rollover()

    def _extend_span(self, start: float, end: float, track: str | None) -> None:
        if self.last_data_unix is None:
            self.last_data_unix = start
            self.event("start", None, f"recording started (device {self.device_id})", ts=start)
        self.last_data_unix = max(self.last_data_unix, end)
        self.chunk_start = start if self.chunk_start is None else min(self.chunk_start, start)
        self.chunk_end = end if self.chunk_end is None else max(self.chunk_end, end)
        if track is not None:
            first, last = self.spans.get(track, (start, end))
            self.spans[track] = (min(first, start), max(last, end))

    def _maybe_rollover(self) -> None:
        longest = max((last - first for first, last in self.spans.values()), default=0.0)
        if longest >= self.max_chunk_s or self.chunk_bytes >= self.max_chunk_bytes:
            self.rollover()

    def on_state(self, state: dict[str, Any], modality_payloads: list[dict[str, Any]]) -> None:
        """One published state (as published) and its modalities' payloads; events for what changed."""
        self.states_fh.write(_encode(state) + "\n")
        for payload in modality_payloads:
            self.modalities_fh.write(_encode(payload) + "\n")
        ts = float(state.get("ts") or 0.0)
        label = state.get("label")
        if label != self.last_label:
            self.event("label", None, f"label {label}" if self.last_label is None else f"label {self.last_label} -> {label}",
                       ts=ts, short=f"label {label}")
            self.last_label = label
        reasons = dict(state.get("missing_reasons") or {})
        missing = {m: reasons.get(m, "") for m in state.get("missing") or ()}
        for m, why in missing.items():
            before = self.last_missing.get(m)
            if before is None or before.split(":")[0] != why.split(":")[0]:  # new, or a different kind of reason
                self.event("missing", m, f"{m} missing: {why}" if why else f"{m} missing", ts=ts)
        present = set(state.get("modalities") or {})
        for m in sorted(present - self.last_present):
            self.event("present", m, f"{m} contributes", ts=ts)
        self.last_missing, self.last_present = missing, present
        self._extend_span(ts, ts, "states")
        self._maybe_rollover()

    def event(self, kind: str, modality: str | None, text: str, ts: float | None = None,
              short: str | None = None) -> None:
        """An event line; ``short`` (<= 40 characters, edflib's limit) is its EDF+ annotation text."""
        ts = time.time() if ts is None else float(ts)
        self._line(self.events_fh, {"ts": ts, "kind": kind, "modality": modality, "text": text})
        if len(self.chunk_events) < MAX_EVENTS_PER_CHUNK:
            note = short or (f"{kind} {modality}" if modality else text)
            self.chunk_events.append(EdfAnnotation(ts, -1.0, note[:EDF_ANNOTATION_CHARS]))

    # -- chunks ----------------------------------------------------------------------------------
    def _write_stream(self, rec: _StreamRec, seg: _Segment, data: np.ndarray, n_real: int, part: int) -> None:
        name = self._name(rec.key, "bdf" if rec.bdf else "edf", part)
        start = seg.origin_unix + seg.first_index / rec.rate_hz
        notes = self.chunk_events + self.chunk_beats.get(rec.source, [])
        info = write_stream_file(self.folder / name, rec.stream, rec.channels, rec.rate_hz, start, data, notes,
                                 bdf=rec.bdf, equipment=f"{self.device_id} {rec.source}",
                                 recording_note="emotion-edge recording; start time is UTC")
        info.update({"file": name, "key": rec.key, "source": rec.source, "n_samples": n_real,
                     "origin_unix": seg.origin_unix, "first_index": seg.first_index, "dtype": str(data.dtype)})
        if self.lossless:  # the samples exactly as the source gave them: replays then reproduce states exactly
            samples = name.rsplit(".", 1)[0] + ".npy"
            part_path = self.folder / (samples + ".part")
            with open(part_path, "wb") as fh:
                np.save(fh, np.ascontiguousarray(data[:n_real]))
            part_path.replace(self.folder / samples)
            info["samples_file"] = samples
        self.chunk_files.append(info)

    def _flush_streams(self, final: bool) -> None:
        for rec in self.streams.values():
            if rec.rate_hz <= 0 or not rec.segments:
                continue
            per_record = round(rec.rate_hz * record_duration_s(rec.rate_hz))
            keep: list[_Segment] = []
            part = 0
            for i, seg in enumerate(rec.segments):
                data = seg.data()
                is_open = i == len(rec.segments) - 1 and not final
                n_whole = (seg.n // per_record) * per_record
                if is_open:
                    # whole data records now; the rest starts the next chunk (same stretch, no seam)
                    if n_whole:
                        self._write_stream(rec, seg, data[:n_whole], n_whole, part)
                        part += 1
                    if seg.n > n_whole:
                        keep.append(_Segment(seg.origin_unix, seg.first_index + n_whole, [data[n_whole:]], seg.n - n_whole))
                    continue
                pad = (-seg.n) % per_record  # a closed stretch: its last record padded with its last sample
                padded = np.concatenate([data, np.repeat(data[-1:], pad, axis=0)]) if pad else data
                self._write_stream(rec, seg, padded, seg.n, part)
                part += 1
            rec.segments = keep

    def rollover(self, final: bool = False) -> None:
        """Close the open chunk: write its EDF files, close its JSON lines, list it in recording.json."""
        try:
            self._flush_streams(final)
        finally:
            self.chunks.append(self._chunk_entry(complete=True))
            self._close_chunk_files()
        self.chunk_files = []
        self.chunk_events = []
        self.chunk_beats = {}
        if final:
            self.closed = True
            self._write_manifest()
            return
        self.chunk += 1
        self.chunk_bytes = sum(s.n * s.parts[0].shape[1] * (3 if r.bdf else 2)
                               for r in self.streams.values() for s in r.segments)
        self.chunk_start = min((s.origin_unix + s.first_index / r.rate_hz for r in self.streams.values()
                                for s in r.segments), default=None)
        self.chunk_end = None
        self.spans = {r.key: (s.origin_unix + s.first_index / r.rate_hz, s.origin_unix + (s.first_index + s.n) / r.rate_hz)
                      for r in self.streams.values() for s in r.segments}  # carried over: one open stretch each
        self._open_chunk_files()
        self._write_manifest()
        log.info("record: chunk %d closed, chunk %d open in %s", self.chunk - 1, self.chunk, self.folder)

    def close(self) -> None:
        if self.closed:
            return
        if self.last_data_unix is not None:
            self.event("stop", None, "recording stopped", ts=self.last_data_unix)
        self.rollover(final=True)
        log.info("record: %d chunk(s) in %s", len(self.chunks), self.folder)


def _encode(obj: dict) -> str:
    from edge.publish import encode_json  # noqa: PLC0415 - the very encoder the publisher uses

    return encode_json(obj).decode()


# -- taps: the daemon's view of the recorder and the LSL outlet ------------------------------------

class Taps:
    """Fans the daemon's blocks, states and source events out to the recorder and the LSL outlet.

    A tap that fails is reported in one line and dropped; the daemon never stops for it.
    """

    def __init__(self, taps: list[Any], device_id: str):
        self.taps = taps
        self.device_id = device_id
        self._last_block_end: dict[int, float] = {}
        self._reconnects: dict[int, int] = {}
        self._down: dict[int, int] = {}  # polls a source has been seen disconnected
        self._ended: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.taps)

    def _each(self, method: str, *args: Any) -> None:
        for tap in list(self.taps):
            try:
                getattr(tap, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a broken tap must not stop the daemon
                log.error("%s: %s failed, it stops here: %s: %s", type(tap).__name__.lower(), method,
                          type(exc).__name__, exc)
                self.taps.remove(tap)
                try:
                    tap.close()
                except Exception:  # noqa: BLE001 - already reported above
                    pass

    def _event(self, kind: str, source: Any, text: str, ts: float | None) -> None:
        spec = getattr(source, "spec", "?")
        kind_of_source = ":".join(spec.split(":")[:2])  # serial:cyton, not its port path
        self._each("event", kind, None, f"{spec}: {text}", ts, f"{kind} {kind_of_source}")

    def on_block(self, source: Any, block: SampleBlock | FrameBlock) -> None:
        key = id(source)
        reconnects = getattr(getattr(source, "stats", None), "reconnects", 0)
        if reconnects > self._reconnects.get(key, 0):
            self._event("reconnected", source, f"reconnected (reconnect {reconnects})", block.ts_unix)
        self._reconnects[key] = reconnects
        self._down[key] = 0
        end = block.ts_unix if isinstance(block, FrameBlock) else block.end_unix
        self._last_block_end[key] = end
        self._each("on_block", getattr(source, "spec", "?"), block)

    def on_state(self, seq: int, item: Any) -> None:
        state = {**item.payload, "seq": seq, "device_id": self.device_id}  # as StatePublisher sends it
        mods = [{"seq": seq, "ts": est.ts_unix, "modality": name, "quality": round(est.quality, 4),
                 "outputs": dict(est.outputs), "model_version": est.model_version} for name, est in item.fresh.items()]
        self._each("on_state", state, mods)

    def on_source_end(self, source: Any, failure: str | None) -> None:
        key = id(source)
        self._ended.add(key)
        ts = self._last_block_end.get(key)
        if failure:
            self._event("failed", source, f"failed: {failure}", ts)
        else:
            self._event("ended", source, "ended", ts)

    def poll(self, sources: list[Any]) -> None:
        """A live source whose connection dropped (seen on two polls): a ``lost`` event at its last data."""
        for source in sources:
            key = id(source)
            stats = getattr(source, "stats", None)
            if key in self._ended or stats is None or key not in self._last_block_end:
                continue
            if stats.connected:
                self._down[key] = 0
                continue
            self._down[key] = self._down.get(key, 0) + 1
            if self._down[key] == 2:
                self._event("lost", source, "connection lost", self._last_block_end[key])

    async def watch(self, sources: list[Any]) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            self.poll(sources)

    def close(self) -> None:
        for tap in self.taps:
            try:
                tap.close()
            except Exception as exc:  # noqa: BLE001 - the others still close
                log.error("%s: close failed: %s: %s", type(tap).__name__.lower(), type(exc).__name__, exc)
        self.taps = []


def open_taps(config: Any) -> Taps | None:
    """The recorder (``[record] dir``) and the LSL outlet (``[lsl] enabled``) in force; None if neither."""
    taps: list[Any] = []
    specs = list(config.daemon.sources)
    rc = config.record
    if rc.dir:
        taps.append(Recorder(rc.dir, config.daemon.device_id, max_chunk_s=rc.max_chunk_s,
                             max_chunk_mb=rc.max_chunk_mb, bdf_all=rc.format == "bdf", lossless=rc.lossless,
                             sources=specs))
        log.info("recording to %s (chunks of %g s / %g MB)", rc.dir, rc.max_chunk_s, rc.max_chunk_mb)
    if config.lsl.enabled:
        from edge.lsl import open_lsl_outlet  # noqa: PLC0415

        outlet = open_lsl_outlet(config.daemon.device_id)
        if outlet is not None:
            taps.append(outlet)
    return Taps(taps, config.daemon.device_id) if taps else None
