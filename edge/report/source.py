"""Where a report's states come from: a recording folder, a JSON-lines file, or a broker.

A recording folder holds ``states-NNNN.jsonl`` chunks (one published state a line) and
``events-NNNN.jsonl`` chunks (``{"ts", "kind", "modality", "text"}`` a line), read in name order.
A crash can cut a chunk's last line short: that line is skipped with one warning. Repeats of a
``(device_id, seq)`` (a subscriber can see a state twice after a crash) are dropped.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ReportSourceError

log = logging.getLogger(__name__)

# Bad lines told one by one before the rest are only counted (one line each, never a flood).
MAX_BAD_LINES_TOLD = 5
# States kept from a broker: at one state per 5 s this is 11 days, about 140 MB of JSON.
MAX_BROKER_STATES = 200_000


@dataclass
class Session:
    """What a report is drawn from: states sorted by ``ts``, events, and what was odd on the way."""

    source: str
    states: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # recording.json, where there is one

    @property
    def device_id(self) -> str:
        return str(self.states[0].get("device_id", "?")) if self.states else "?"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _LineReader:
    """Parses JSON-object lines from several files, keeping a bounded list of readable warnings."""

    def __init__(self, required: tuple[str, ...]):
        self.required = required
        self.objects: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self.bad_lines = 0

    def _bad(self, where: str, why: str) -> None:
        self.bad_lines += 1
        if self.bad_lines <= MAX_BAD_LINES_TOLD:
            self.warnings.append(f"{where}: {why}; line skipped")

    def feed(self, name: str, text: str) -> None:
        lines = text.split("\n")
        cut_short = not text.endswith("\n")  # a complete line ends with a newline
        last_index = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
        for index, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                if index == last_index and cut_short:
                    # not counted as a bad line: a crash mid-write loses at most this one
                    self.warnings.append(f"{name}: last line is cut short (a crash mid-write?); skipped")
                else:
                    self._bad(f"{name}:{index + 1}", f"not JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                self._bad(f"{name}:{index + 1}", "not a JSON object")
                continue
            absent = [key for key in self.required if key not in obj]
            if absent or not _is_number(obj.get("ts")):
                self._bad(f"{name}:{index + 1}", f"no numeric {'/'.join(absent) or 'ts'}")
                continue
            self.objects.append(obj)

    def finish(self) -> list[str]:
        if self.bad_lines > MAX_BAD_LINES_TOLD:
            self.warnings.append(f"… and {self.bad_lines - MAX_BAD_LINES_TOLD} more bad lines skipped")
        return self.warnings


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReportSourceError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _clean_states(states: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Drop repeats of (device_id, seq); sort by ts (stable). Returns (states, repeats dropped)."""
    seen: set[tuple[str, int]] = set()
    kept = []
    for state in states:
        seq = state.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            key = (str(state.get("device_id")), seq)
            if key in seen:
                continue
            seen.add(key)
        kept.append(state)
    kept.sort(key=lambda s: float(s["ts"]))
    return kept, len(states) - len(kept)


def _finish(source: str, states_reader: _LineReader, events: list[dict[str, Any]],
            warnings: list[str], info: dict[str, Any]) -> Session:
    states, repeats = _clean_states(states_reader.objects)
    if repeats:
        warnings.append(f"{repeats} repeated state(s) (same device_id and seq) dropped")
    events.sort(key=lambda e: float(e["ts"]))
    return Session(source, states, events, warnings, info)


def read_states_text(name: str, texts: Iterable[tuple[str, str]]) -> Session:
    """States from JSON-lines texts given as (file name, text) pairs, e.g. ``listen --json`` output."""
    reader = _LineReader(("ts",))
    for file_name, text in texts:
        reader.feed(file_name, text)
    return _finish(name, reader, [], reader.finish(), {})


def read_states_file(path: Path) -> Session:
    """One JSON-lines file of states (``-`` reads standard input)."""
    if str(path) == "-":
        return read_states_text("standard input", [("stdin", sys.stdin.read())])
    if not path.is_file():
        raise ReportSourceError(f"{path}: no such file or folder")
    return read_states_text(str(path), [(path.name, _read_text(path))])


def read_recording(folder: Path) -> Session:
    """A recording folder: every ``states-*.jsonl`` and ``events-*.jsonl``, in name order."""
    state_files = sorted(folder.glob("states-*.jsonl"))
    if not state_files:
        raise ReportSourceError(f"{folder}: no states-*.jsonl files (not a recording folder?)")
    states = _LineReader(("ts",))
    for path in state_files:
        states.feed(path.name, _read_text(path))
    events = _LineReader(("ts", "kind"))
    for path in sorted(folder.glob("events-*.jsonl")):
        events.feed(path.name, _read_text(path))
    info: dict[str, Any] = {}
    info_path = folder / "recording.json"
    if info_path.is_file():
        try:
            loaded = json.loads(_read_text(info_path))
            info = loaded if isinstance(loaded, dict) else {}
        except ValueError as exc:
            events.warnings.append(f"recording.json: not JSON ({exc.msg}); ignored")
    warnings = states.finish() + events.finish()
    return _finish(str(folder), states, events.objects, warnings, info)


def read_source(path: Path) -> Session:
    """A recording folder or a states JSON-lines file, whichever ``path`` is."""
    return read_recording(path) if path.is_dir() else read_states_file(path)


class _BoundedLines:
    """A text sink for ``listen``'s JSON output keeping at most ``limit`` lines (counting the rest)."""

    def __init__(self, limit: int):
        self.limit, self.lines, self.dropped = limit, [], 0

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if len(self.lines) < self.limit:
                self.lines.append(line)
            else:
                self.dropped += 1
        return len(text)

    def flush(self) -> None:
        pass


def collect_from_broker(broker_url: str, *, device_id: str, duration_s: float, topic_prefix: str,
                        session: str | None = None, **connection: Any) -> Session:
    """States arriving on the broker during ``duration_s``: MQTT keeps no history (states are not
    retained), so this is what is published while we listen, plus what a persistent ``session``
    queued since it last disconnected. ``connection`` is passed to ``edge.listen.listen``
    (ca_file, cert_file, key_file, username, password)."""
    from edge.listen import listen  # noqa: PLC0415  (paho only where a broker is used)

    sink = _BoundedLines(MAX_BROKER_STATES)
    listen(broker_url, device_id=device_id, topic_prefix=topic_prefix, as_json=True,
           duration_s=duration_s, out=sink, session=session, **connection)  # type: ignore[arg-type]
    result = read_states_text(f"{broker_url} ({duration_s:g} s)", [("broker", "\n".join(sink.lines) + "\n")])
    if sink.dropped:
        result.warnings.append(f"{sink.dropped} states beyond the first {MAX_BROKER_STATES} dropped")
    return result


_ISO_Z = re.compile(r"Z$")


def parse_time(text: str, flag: str) -> float:
    """Unix seconds from ``1644227874``, or ISO 8601 like ``2022-02-07T10:00:00Z`` (no zone = UTC)."""
    from datetime import datetime, timezone  # noqa: PLC0415

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(_ISO_Z.sub("+00:00", text.strip()))
    except ValueError:
        raise ReportSourceError(f"{flag} {text!r}: not unix seconds or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def select_states(session: Session, *, device_id: str | None, since_unix: float | None,
                  until_unix: float | None) -> Session:
    """Keep one device's states inside [since, until]; a readable error when that leaves none."""
    states = session.states
    devices = sorted({str(s.get("device_id", "?")) for s in states})
    if device_id not in (None, "+"):
        states = [s for s in states if str(s.get("device_id")) == device_id]
        if not states and session.states:
            raise ReportSourceError(f"{session.source}: no states from device {device_id!r} "
                                    f"(found: {', '.join(devices)})")
    elif len(devices) > 1:
        raise ReportSourceError(f"{session.source}: states from several devices ({', '.join(devices)}); "
                                "choose one with --device-id")
    if since_unix is not None:
        states = [s for s in states if float(s["ts"]) >= since_unix]
    if until_unix is not None:
        states = [s for s in states if float(s["ts"]) <= until_unix]
    if not states:
        window = "" if since_unix is None and until_unix is None else " in the --since/--until window"
        raise ReportSourceError(f"{session.source}: no states{window}")
    events = [e for e in session.events
              if (since_unix is None or float(e["ts"]) >= since_unix)
              and (until_unix is None or float(e["ts"]) <= until_unix)]
    return Session(session.source, states, events, session.warnings, session.info)
