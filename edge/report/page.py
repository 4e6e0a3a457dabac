"""The report as one self-contained HTML page: inline CSS, figures as base64 PNG ``data:`` URLs,
and a Content-Security-Policy that forbids any network fetch."""

from __future__ import annotations

import base64
import html
import math
import time
from typing import Any

from edge.report import summary
from edge.report.source import Session
from edge.report.tags import Tag

# Rows shown per table; the rest are counted.
MAX_TABLE_ROWS = 200
SECTIONS = ("timeline", "labels", "modalities", "missing", "circumplex", "summary")

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px auto; max-width: 1120px; color: #222; }
h1 { font-size: 26px; margin: 0 0 8px; }
h2 { font-size: 19px; border-bottom: 1px solid #ccc; padding-bottom: 3px; margin-top: 26px; }
p.note { color: #555; font-size: 13px; margin: 4px 0 8px; }
img { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.overview { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; font-size: 14px; }
dl.overview dt { color: #555; }
dl.overview dd { margin: 0; }
ul.warnings { color: #8a4b00; font-size: 13px; }
.tables { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def utc_clock(ts_unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts_unix))


def duration_text(seconds: float) -> str:
    """``1:02:03`` or ``02:03`` (h:mm:ss / mm:ss)."""
    if not math.isfinite(seconds):
        return "—"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def _image(section: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img data-section="{section}" alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _table(headers: list[str], rows: list[list[tuple[str, bool]]], total: int | None = None) -> str:
    """rows of (text, is_number) cells, already escaped; ``total`` rows existed if more than shown."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{t}</td>' if num else f"<td>{t}</td>" for t, num in row) + "</tr>"
        for row in rows[:MAX_TABLE_ROWS])
    more = ""
    if (total or len(rows)) > MAX_TABLE_ROWS:
        more = f'<p class="note">… and {(total or len(rows)) - MAX_TABLE_ROWS} more rows not shown.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def render(session: Session, tags: list[Tag], figures: dict[str, bytes], title: str) -> str:
    """The page; ``figures`` maps each of SECTIONS to its PNG."""
    states = session.states
    line = summary.timeline(states)
    t0, end = summary.session_frame(line, session.events)
    periods = summary.missing_periods(states, line, session.events)
    per_label = summary.time_per_label(states, line)
    covered_s = float(line.duration_s.sum())
    segments = summary.stress_per_tag_segment(states, tags)
    versions = sorted({str(s.get("schema_version", "?")) for s in states})
    models = sorted({f"{m} {v}" for s in states if isinstance(s.get("models"), dict)
                     for m, v in s["models"].items()})
    warnings = list(session.warnings)
    if tags and not any(t0 <= t.ts_unix <= end for t in tags):
        warnings.append(f"none of the {len(tags)} tags falls inside the session ({utc_clock(t0)} – {utc_clock(end)})")

    overview = [
        ("device", _esc(session.device_id)),
        ("source", _esc(session.source)),
        ("from", _esc(utc_clock(t0))),
        ("to", _esc(utc_clock(end))),
        ("length", f"{duration_text(end - t0)} (states cover {duration_text(covered_s)}; times below count from "
                   f"{'the first state' if t0 == float(line.start_unix[0]) else 'the first event'})"),
        ("states", f"{len(states)}, one every {line.step_s:g} s (median)"),
        ("schema version", _esc(", ".join(versions))),
        ("models", _esc(", ".join(models) or "—")),
        ("tags", f"{len(tags)}" if tags else "none (add marks with --tags CSV)"),
        ("events", f"{len(session.events)}" if session.events else "none"),
    ]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" "
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        '<section id="overview"><dl class="overview">'
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in overview) + "</dl>",
    ]
    if warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li>{_esc(w)}</li>" for w in warnings) + "</ul>")
    parts.append("</section>")

    parts += [
        '<section id="timeline"><h2>Valence, arousal and stress</h2>',
        '<p class="note">Each state stands until the next one. The band around each line widens as '
        "confidence falls (half-width = (1 − confidence) × half the axis range; the dimension's own "
        "confidence where the state carries one, else <code>confidence</code>). Grey: no states. "
        "Dashed lines: tags, numbered in time order.</p>",
        _image("timeline", figures["timeline"], "valence, arousal and stress over time"), "</section>",
        '<section id="labels"><h2>Labels</h2>',
        _image("labels", figures["labels"], "ribbon of the labels over time"), "</section>",
        '<section id="modalities"><h2>Modalities: weight and quality</h2>',
        '<p class="note">Quality (0–1, line) and fusion weight (filled; the weights of the used '
        "modalities sum to 1 in each state); red where the modality was missing.</p>",
        _image("modalities", figures["modalities"], "each modality's weight and quality over time"),
        "</section>",
        '<section id="missing"><h2>Missing periods</h2>',
        '<p class="note">From each state\'s <code>missing</code>/<code>missing_reasons</code>, gaps '
        "without states, and the recording's events (ticks).</p>",
        _image("missing", figures["missing"], "missing periods per modality, coloured by reason"),
    ]
    if periods:
        rows = [[(_esc(p.modality), False), (_esc(duration_text(p.start_unix - t0)), True),
                 (_esc(duration_text(p.end_unix - t0)), True),
                 (_esc(duration_text(p.end_unix - p.start_unix)), True), (_esc(p.reason), False),
                 (_esc(p.origin), False)] for p in periods]
        parts.append(_table(["modality or source", "from", "to", "length", "reason", "from what"], rows))
    else:
        parts.append('<p class="note">Nothing was missing.</p>')
    shown_events = [e for e in session.events if str(e.get("kind")) in summary.EVENT_KINDS_SHOWN]
    if shown_events:
        rows = [[(_esc(duration_text(float(e["ts"]) - t0)), True), (_esc(e.get("kind")), False),
                 (_esc(summary.event_subject(e)), False),
                 (_esc(e.get("text") or ""), False)] for e in shown_events]
        parts.append("<h3>Events</h3>" + _table(["at", "kind", "modality or source", "text"], rows))
    parts.append("</section>")

    parts += [
        '<section id="circumplex"><h2>Valence–arousal circumplex</h2>',
        '<p class="note">One dot per state, coloured by its label; dashed: the neutral radius.</p>',
        _image("circumplex", figures["circumplex"], "valence-arousal scatter on the unit circle"),
        "</section>",
        '<section id="summary"><h2>Summary</h2>',
        _image("summary", figures["summary"], "time per label"), '<div class="tables"><div>',
        "<h3>Time per label</h3>",
        _table(["label", "time", "share"], [
            [(_esc(label), False), (duration_text(seconds), True),
             (f"{100 * seconds / covered_s:.1f} %" if covered_s > 0 else "—", True)]
            for label, seconds in per_label.items()]),
        '</div><div><h3>Mean stress per tag segment</h3>',
        '<p class="note">Mean <code>stress</code> of the states whose ts lies in the segment '
        "(nulls skipped).</p>",
        _table(["segment", "from", "to", "states", "mean stress"], [
            [(_esc(s.name), False),
             (duration_text(s.start_unix - t0) if math.isfinite(s.start_unix) else "start", True),
             (duration_text(s.end_unix - t0) if math.isfinite(s.end_unix) else "end", True),
             (str(s.states), True), (f"{s.mean_stress:.3f}" if math.isfinite(s.mean_stress) else "—", True)]
            for s in segments]),
        "</div></div></section>",
        f'<p class="note">Made by emotion-edge report on {_esc(utc_clock(time.time()))}.</p>',
        "</body></html>",
    ]
    return "\n".join(parts)
