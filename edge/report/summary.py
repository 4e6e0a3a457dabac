"""The numbers a report shows, from a session's states (pure: no plotting, no I/O).

Time is shared by every section: a state stands from its ``ts`` until the next state's ``ts``
(what a subscriber sees as "the current state"), except across a gap longer than
``GAP_STEPS`` state steps, where it stands for one step and the rest is a period with no states.
The step is the median interval between states (the fusion period).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.report.tags import Tag

# A gap longer than this many steps between states is a period with no states.
GAP_STEPS = 2.0
DIMENSIONS = ("valence", "arousal", "stress")
# Each dimension's range: a confidence band's half-width is (1 - confidence) x half of it.
DIMENSION_RANGE = {"valence": (-1.0, 1.0), "arousal": (-1.0, 1.0), "stress": (0.0, 1.0)}
NO_STATES = "(no states)"


def number(value: Any) -> float:
    """``value`` as a float, NaN where it is null, absent or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return math.nan


@dataclass(frozen=True)
class Timeline:
    """Each state's start (its ts) and end, in unix s; ``step_s`` is the median state interval."""

    start_unix: np.ndarray
    end_unix: np.ndarray
    step_s: float

    @property
    def duration_s(self) -> np.ndarray:
        return self.end_unix - self.start_unix


def timeline(states: list[dict[str, Any]]) -> Timeline:
    ts = np.array([float(s["ts"]) for s in states], dtype=float)
    steps = np.diff(ts)
    positive = steps[steps > 0]
    step_s = float(np.median(positive)) if positive.size else 0.0
    end = ts + step_s
    if ts.size > 1:
        follows = steps <= GAP_STEPS * step_s
        end[:-1] = np.where(follows, ts[1:], ts[:-1] + step_s)
    return Timeline(ts, end, step_s)


# Events this far outside the states (e.g. "recording started" before the models warmed up) widen
# the session's frame; farther ones are taken to be on another clock and do not.
EVENT_MARGIN_S = 3600.0


def session_frame(line: Timeline, events: list[dict[str, Any]] | None = None) -> tuple[float, float]:
    """(start, end) unix s of the session: its states, widened to a recording's events nearby."""
    start, end = float(line.start_unix[0]), float(line.end_unix[-1])
    near = [float(e["ts"]) for e in events or () if start - EVENT_MARGIN_S <= float(e["ts"]) <= end + EVENT_MARGIN_S]
    return min([start, *near]), max([end, *near])


def dimension_series(states: list[dict[str, Any]], dimension: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, confidences) of one dimension; NaN where null. The dimension's own confidence
    (``<dimension>_confidence``, schema 2) where present, else the state's ``confidence``."""
    values = np.array([number(s.get(dimension)) for s in states])
    own_key = f"{dimension}_confidence"
    confidences = np.array([
        number(s[own_key]) if own_key in s else number(s.get("confidence")) for s in states])
    return values, confidences


def confidence_band(values: np.ndarray, confidences: np.ndarray, dimension: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a band that widens as confidence falls: half-width = (1 - confidence) x half
    the dimension's range, clipped to the range. A picture of confidence, not a statistical interval."""
    low_limit, high_limit = DIMENSION_RANGE[dimension]
    half = (1.0 - np.clip(confidences, 0.0, 1.0)) * (high_limit - low_limit) / 2.0
    return np.clip(values - half, low_limit, high_limit), np.clip(values + half, low_limit, high_limit)


def labels(states: list[dict[str, Any]]) -> list[str]:
    return [str(s.get("label")) if s.get("label") is not None else "(none)" for s in states]


def label_runs(states: list[dict[str, Any]], line: Timeline) -> list[tuple[str, float, float]]:
    """(label, start unix, end unix) for each run of one label, split where states are absent."""
    runs: list[tuple[str, float, float]] = []
    for label, start, end in zip(labels(states), line.start_unix, line.end_unix):
        if runs and runs[-1][0] == label and math.isclose(runs[-1][2], start):
            runs[-1] = (label, runs[-1][1], float(end))
        else:
            runs.append((label, float(start), float(end)))
    return runs


def time_per_label(states: list[dict[str, Any]], line: Timeline) -> "OrderedDict[str, float]":
    """Seconds under each label, longest first."""
    totals: dict[str, float] = {}
    for label, seconds in zip(labels(states), line.duration_s):
        totals[label] = totals.get(label, 0.0) + float(seconds)
    return OrderedDict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class TagSegment:
    """The stretch between two consecutive marks (or the session's start/end)."""

    name: str
    start_unix: float  # -inf before the first mark
    end_unix: float    # +inf after the last mark
    states: int
    stress_values: int
    mean_stress: float  # NaN where no state in the segment has a stress


def stress_per_tag_segment(states: list[dict[str, Any]], tags: list[Tag]) -> list[TagSegment]:
    """Mean stress of the states whose ts lies in [mark k, mark k+1) (nulls skipped), for the
    segments before the first mark, between consecutive marks, and after the last."""
    ts = np.array([float(s["ts"]) for s in states])
    stress = np.array([number(s.get("stress")) for s in states])
    edges = [-math.inf, *[t.ts_unix for t in tags], math.inf]
    names = ["start", *[t.text for t in tags], "end"]
    segments = []
    for k in range(len(edges) - 1):
        inside = (ts >= edges[k]) & (ts < edges[k + 1])
        values = stress[inside & ~np.isnan(stress)]
        segments.append(TagSegment(f"{names[k]} → {names[k + 1]}", edges[k], edges[k + 1],
                                   int(inside.sum()), int(values.size),
                                   float(values.mean()) if values.size else math.nan))
    return segments


def modality_names(states: list[dict[str, Any]]) -> list[str]:
    """Every modality any state uses or names as missing, sorted."""
    names: set[str] = set()
    for state in states:
        modalities = state.get("modalities")
        if isinstance(modalities, dict):
            names.update(str(name) for name in modalities)
        missing = state.get("missing")
        if isinstance(missing, list):
            names.update(str(name) for name in missing)
    return sorted(names)


def modality_series(states: list[dict[str, Any]], modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(quality, weight) of one modality per state; NaN where the state does not use it."""
    quality, weight = [], []
    for state in states:
        modalities = state.get("modalities")
        entry = modalities.get(modality) if isinstance(modalities, dict) else None
        entry = entry if isinstance(entry, dict) else {}
        quality.append(number(entry.get("quality")))
        weight.append(number(entry.get("weight")))
    return np.array(quality), np.array(weight)


@dataclass(frozen=True)
class MissingPeriod:
    """A stretch where a modality (or every one: ``NO_STATES``) was missing, and why."""

    modality: str
    start_unix: float
    end_unix: float
    reason: str
    origin: str  # "states" (their missing/missing_reasons), "events", or "gap"


_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def _reason_kind(reason: str) -> str:
    """A reason with its numbers replaced by N, so "stale: 31 s old" and "stale: 36 s old" are one run."""
    return _NUMBERS.sub("N", reason)


def missing_periods(states: list[dict[str, Any]], line: Timeline,
                    events: list[dict[str, Any]] | None = None) -> list[MissingPeriod]:
    """Runs of states naming a modality in ``missing`` (one run per reason), gaps without
    states, and lost/missing events paired with the next reconnected/present event."""
    periods: list[MissingPeriod] = []
    open_runs: dict[str, list[Any]] = {}  # modality -> [start, end, reason, kind]
    for state, start, end in zip(states, line.start_unix, line.end_unix):
        missing = state.get("missing") if isinstance(state.get("missing"), list) else []
        reasons = state.get("missing_reasons") if isinstance(state.get("missing_reasons"), dict) else {}
        now_missing = {str(m): str(reasons.get(m) or "no reason given") for m in missing}
        for modality in list(open_runs):
            run = open_runs[modality]
            reason = now_missing.get(modality)
            if reason is None or _reason_kind(reason) != run[3] or not math.isclose(run[1], start):
                periods.append(MissingPeriod(modality, run[0], run[1], run[2], "states"))
                del open_runs[modality]
            else:
                run[1] = float(end)
        for modality, reason in now_missing.items():
            if modality not in open_runs:
                open_runs[modality] = [float(start), float(end), reason, _reason_kind(reason)]
    for modality, run in open_runs.items():
        periods.append(MissingPeriod(modality, run[0], run[1], run[2], "states"))
    frame_start, frame_end = session_frame(line, events)
    edges = [(frame_start, float(line.start_unix[0])),
             *zip(line.end_unix[:-1].tolist(), line.start_unix[1:].tolist()),
             (float(line.end_unix[-1]), frame_end)]
    for end, next_start in edges:
        if next_start > end:
            periods.append(MissingPeriod(NO_STATES, float(end), float(next_start),
                                         "no states published (warming up, daemon stopped, or no data)", "gap"))
    periods += _event_periods(events or [], frame_end)
    periods.sort(key=lambda p: (p.start_unix, p.modality))
    return periods


# A source's connection: "lost" opens a period its "reconnected" closes; "failed" is never closed.
# (missing/present events repeat what the states' own `missing` already says: they stay ticks.)
_OPENS = {"lost": "reconnected", "failed": None}
EVENT_KINDS_SHOWN = ("lost", "reconnected", "failed", "ended", "gap", "missing", "present")


def event_subject(event: dict[str, Any]) -> str:
    """What an event is about: its modality, else the source spec its text starts with
    (the recorder writes "SPEC: what happened"), else "(source)"."""
    if event.get("modality") is not None:
        return str(event["modality"])
    text = str(event.get("text") or "")
    return text.split(": ", 1)[0] if ": " in text else "(source)"


def _event_periods(events: list[dict[str, Any]], session_end_unix: float) -> list[MissingPeriod]:
    """Periods from a recording's source events: lost -> reconnected of the same source, and
    failed -> the end; one never closed runs to the end of the session."""
    periods = []
    open_events: dict[str, dict[str, Any]] = {}
    for event in events:
        kind, who = str(event.get("kind")), event_subject(event)
        if kind in _OPENS:
            open_events.setdefault(who, event)
        elif who in open_events and _OPENS[str(open_events[who].get("kind"))] == kind:
            opened = open_events.pop(who)
            periods.append(MissingPeriod(who, float(opened["ts"]), float(event["ts"]),
                                         _event_reason(opened, who), "events"))
    for who, opened in open_events.items():
        periods.append(MissingPeriod(who, float(opened["ts"]), max(session_end_unix, float(opened["ts"])),
                                     _event_reason(opened, who), "events"))
    return periods


def _event_reason(event: dict[str, Any], who: str) -> str:
    text = str(event.get("text") or "")
    text = text[len(who) + 2:] if text.startswith(f"{who}: ") else text
    kind = str(event.get("kind"))
    return text if text.startswith(kind) else f"{kind}: {text}" if text else kind
