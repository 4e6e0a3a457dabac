"""The report's figures, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

Every time axis is minutes since the session's start (its first state, or a recording's first
event where that is earlier, e.g. "recording started" before the models warmed up); marks from --tags are dashed
vertical lines numbered at the top.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a wearable or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, Patch  # noqa: E402

from edge.report import summary  # noqa: E402
from edge.report.tags import Tag  # noqa: E402

WIDTH_IN = 11.0
DPI = 100
# Every time plot has the same left and right margins, so their time axes line up on the page;
# legends sit in the right margin.
LEFT_IN, RIGHT_IN, TOP_IN, BOTTOM_IN = 1.6, 1.6, 0.3, 0.6
LABEL_COLOURS = {
    "stressed": "#d62728", "tense": "#ff7f0e", "excited": "#e6b800", "happy": "#2ca02c",
    "calm": "#17becf", "sad": "#5b5ea6", "neutral": "#9a9a9a", "uncertain": "#d9d9d9",
}
OTHER_COLOURS = ["#8c564b", "#e377c2", "#bcbd22", "#1f77b4", "#7f7f7f"]
DIMENSION_COLOURS = {"valence": "#2ca02c", "arousal": "#ff7f0e", "stress": "#d62728"}
QUADRANTS = ((0.55, 0.6, "excited / happy"), (-0.55, 0.6, "tense / angry"),
             (-0.55, -0.6, "sad / tired"), (0.55, -0.6, "calm / relaxed"))


def label_colour(label: str, order: list[str]) -> str:
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    return OTHER_COLOURS[order.index(label) % len(OTHER_COLOURS)] if label in order else "#000000"


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _minutes(ts_unix: Any, t0_unix: float) -> Any:
    return (np.asarray(ts_unix, dtype=float) - t0_unix) / 60.0


def _mark_tags(axes: list[Any], tags: list[Tag], t0_unix: float, span_min: tuple[float, float],
               numbered: bool = True) -> None:
    for number, tag in enumerate(tags, start=1):
        x = (tag.ts_unix - t0_unix) / 60.0
        if not span_min[0] <= x <= span_min[1]:
            continue
        for ax in axes:
            ax.axvline(x, color="#444444", linestyle="--", linewidth=0.9, alpha=0.7)
        if numbered:
            axes[0].annotate(str(number), (x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                             textcoords="offset points", ha="center", va="bottom", fontsize=8, color="#444444")


def _steps(line: summary.Timeline, values: Any, t0_unix: float) -> tuple[Any, Any]:
    """(x minutes, y) drawing each state's value flat from its start to its end, joined to the next
    state where they touch and broken (NaN) across gaps without states."""
    start, end = _minutes(line.start_unix, t0_unix), _minutes(line.end_unix, t0_unix)
    values = np.asarray(values, dtype=float)
    breaks = np.append(~np.isclose(end[:-1], start[1:]), False)
    x = np.column_stack([start, end, np.where(breaks, end, np.nan)]).ravel()
    y = np.column_stack([values, values, np.full(values.shape, np.nan)]).ravel()
    keep = ~(np.isnan(x))
    return x[keep], y[keep]


def _align(figure: Any, bottom_in: float = BOTTOM_IN, hspace: float = 0.12) -> None:
    height_in = figure.get_figheight()
    figure.subplots_adjust(left=LEFT_IN / WIDTH_IN, right=1 - RIGHT_IN / WIDTH_IN, bottom=bottom_in / height_in,
                           top=1 - TOP_IN / height_in, hspace=hspace)


def _span(frame: tuple[float, float]) -> tuple[float, float]:
    """The x range, in minutes, of a session that runs from frame[0] to frame[1] (unix s)."""
    return 0.0, max((frame[1] - frame[0]) / 60.0, 1e-3)


def _shade_gaps(axes: list[Any], periods: list[summary.MissingPeriod], t0_unix: float) -> None:
    for period in periods:
        if period.origin == "gap":
            for ax in axes:
                ax.axvspan(_minutes(period.start_unix, t0_unix), _minutes(period.end_unix, t0_unix),
                           color="#bbbbbb", alpha=0.35, linewidth=0)


def timeline_png(states: list[dict[str, Any]], line: summary.Timeline, tags: list[Tag],
                 periods: list[summary.MissingPeriod], frame: tuple[float, float]) -> bytes:
    """Valence, arousal and stress over time, each with its confidence band."""
    t0_unix = frame[0]
    figure, axes = plt.subplots(3, 1, figsize=(WIDTH_IN, 6.6), sharex=True)
    for ax, dimension in zip(axes, summary.DIMENSIONS):
        values, confidences = summary.dimension_series(states, dimension)
        low, high = summary.confidence_band(values, confidences, dimension)
        colour = DIMENSION_COLOURS[dimension]
        x, low_steps = _steps(line, low, t0_unix)
        _, high_steps = _steps(line, high, t0_unix)
        ax.fill_between(x, low_steps, high_steps, where=~np.isnan(low_steps) & ~np.isnan(high_steps), color=colour,
                        alpha=0.2, linewidth=0, label="confidence band")
        ax.plot(*_steps(line, values, t0_unix), color=colour, linewidth=1.4, label=dimension)
        ax.set_ylim(*summary.DIMENSION_RANGE[dimension])
        ax.set_ylabel(dimension)
        ax.grid(alpha=0.3)
        if summary.DIMENSION_RANGE[dimension][0] < 0:
            ax.axhline(0, color="#888888", linewidth=0.6)
        nulls = int(np.isnan(values).sum())
        if nulls:
            ax.text(1.02, 0.04, f"{nulls} states null", transform=ax.transAxes, ha="left", va="bottom", fontsize=8,
                    color="#666666")
    _shade_gaps(list(axes), periods, t0_unix)
    _mark_tags(list(axes), tags, t0_unix, _span(frame))
    for ax in axes:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    axes[-1].set_xlim(*_span(frame))
    axes[-1].set_xlabel("minutes since the start")
    _align(figure)
    return _png(figure)


def label_ribbon_png(states: list[dict[str, Any]], line: summary.Timeline, tags: list[Tag],
                     periods: list[summary.MissingPeriod], frame: tuple[float, float]) -> bytes:
    """One coloured bar per run of a label."""
    t0_unix = frame[0]
    runs = summary.label_runs(states, line)
    order = list(summary.time_per_label(states, line))
    figure, ax = plt.subplots(figsize=(WIDTH_IN, 0.9 + 0.17 * max(len(order), 3)))
    for label, start, end in runs:
        ax.broken_barh([(_minutes(start, t0_unix), max((end - start) / 60.0, 1e-4))], (0, 1),
                       facecolors=label_colour(label, order), edgecolor="none",
                       hatch="//" if label == "uncertain" else None)
    _shade_gaps([ax], periods, t0_unix)
    _mark_tags([ax], tags, t0_unix, _span(frame))
    ax.set_xlim(*_span(frame))
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("minutes since the start")
    ax.legend(handles=[Patch(facecolor=label_colour(lb, order), label=lb) for lb in order],
              loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    _align(figure)
    return _png(figure)


def modalities_png(states: list[dict[str, Any]], line: summary.Timeline, tags: list[Tag],
                   periods: list[summary.MissingPeriod], frame: tuple[float, float]) -> bytes:
    """Per modality: quality (line) and fusion weight (filled), shaded red where missing."""
    t0_unix = frame[0]
    names = summary.modality_names(states) or ["(none)"]
    figure, axes = plt.subplots(len(names), 1, figsize=(WIDTH_IN, 0.8 + 1.5 * len(names)), sharex=True,
                                squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        quality, weight = summary.modality_series(states, name)
        x, weight_steps = _steps(line, weight, t0_unix)
        ax.fill_between(x, 0, weight_steps, where=~np.isnan(weight_steps), color="#1f77b4", alpha=0.35,
                        linewidth=0, label="weight")
        ax.plot(*_steps(line, quality, t0_unix), color="#000000", linewidth=1.1, label="quality")
        for period in periods:
            if period.modality == name:
                ax.axvspan(_minutes(period.start_unix, t0_unix), _minutes(period.end_unix, t0_unix),
                           color="#d62728", alpha=0.18, linewidth=0)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    _shade_gaps(list(axes[:, 0]), periods, t0_unix)
    _mark_tags(list(axes[:, 0]), tags, t0_unix, _span(frame))
    handles = [Patch(facecolor="#1f77b4", alpha=0.35, label="weight"),
               plt.Line2D([], [], color="#000000", label="quality"),
               Patch(facecolor="#d62728", alpha=0.18, label="missing")]
    axes[0, 0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    axes[-1, 0].set_xlim(*_span(frame))
    axes[-1, 0].set_xlabel("minutes since the start")
    _align(figure, hspace=0.15)
    return _png(figure)


def missing_png(states: list[dict[str, Any]], line: summary.Timeline, tags: list[Tag],
                periods: list[summary.MissingPeriod], events: list[dict[str, Any]], frame: tuple[float, float]) -> bytes:
    """One row per modality: a bar per missing period, coloured by reason; events as ticks."""
    t0_unix = frame[0]
    rows = summary.modality_names(states)
    rows += sorted({p.modality for p in periods} - set(rows))
    rows += sorted({summary.event_subject(e) for e in events if str(e.get("kind")) in summary.EVENT_KINDS_SHOWN}
                   - set(rows))
    rows = rows or ["(none)"]
    reasons = sorted({summary._reason_kind(p.reason) for p in periods})
    palette = plt.get_cmap("tab10")
    legend_rows = (min(len(reasons), 8) + 1) // 2
    bottom_in = BOTTOM_IN + 0.1 + 0.2 * legend_rows
    figure, ax = plt.subplots(figsize=(WIDTH_IN, bottom_in + TOP_IN + 0.2 + 0.4 * len(rows)))
    for period in periods:
        row = rows.index(period.modality)
        colour = palette(reasons.index(summary._reason_kind(period.reason)) % 10)
        ax.broken_barh([(_minutes(period.start_unix, t0_unix), max((period.end_unix - period.start_unix) / 60, 1e-3))],
                       (row - 0.35, 0.7), facecolors=colour, alpha=0.85)
    for event in events:
        who = summary.event_subject(event)
        if who in rows and str(event.get("kind")) in summary.EVENT_KINDS_SHOWN:
            ax.plot(_minutes(float(event["ts"]), t0_unix), rows.index(who), marker="|", markersize=14,
                    color="#000000")
    _mark_tags([ax], tags, t0_unix, _span(frame))
    ax.set_yticks(range(len(rows)), [_subject_label(row) for row in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(*_span(frame))
    ax.set_xlabel("minutes since the start")
    ax.grid(axis="x", alpha=0.3)
    if periods:
        shown = reasons[:8]
        ax.legend(handles=[Patch(facecolor=palette(i % 10), label=_short(r)) for i, r in enumerate(shown)],
                  loc="upper center", bbox_to_anchor=(0.5, -(BOTTOM_IN - 0.05) / (0.2 + 0.4 * len(rows))),
                  ncol=2, fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "nothing missing: every modality was used in every state", transform=ax.transAxes,
                ha="center", va="center", fontsize=12, color="#2ca02c",
                bbox={"facecolor": "white", "edgecolor": "none"})
    _align(figure, bottom_in)
    return _png(figure)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _subject_label(name: str, limit: int = 22) -> str:
    """A row name that fits the margin: a long source spec keeps its kind and its file's name,
    ``replay:e4:/long/path/S02`` -> ``replay:e4:…/S02``."""
    if len(name) <= limit:
        return name
    parts = name.split(":", 2)
    if len(parts) == 3:
        tail = parts[2].rsplit("/", 1)[-1] if "/" in parts[2] else parts[2][-5:]
        return _short(f"{parts[0]}:{parts[1]}:…{'/' if '/' in parts[2] else ''}{tail}", limit)
    return _short(name, limit)


def circumplex_png(states: list[dict[str, Any]], line: summary.Timeline) -> bytes:
    """Each state's (valence, arousal) on the unit circle, coloured by its label."""
    valence, _ = summary.dimension_series(states, "valence")
    arousal, _ = summary.dimension_series(states, "arousal")
    names = summary.labels(states)
    order = list(summary.time_per_label(states, line))
    figure, ax = plt.subplots(figsize=(6.2, 6.2))
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="#444444", linewidth=1.2))
    ax.add_patch(Circle((0, 0), 0.25, fill=False, color="#999999", linewidth=0.8, linestyle="--"))
    ax.axhline(0, color="#888888", linewidth=0.7)
    ax.axvline(0, color="#888888", linewidth=0.7)
    for x, y, text in QUADRANTS:
        ax.text(x, y, text, ha="center", va="center", fontsize=10, color="#555555", style="italic")
    ax.text(0, 0.06, "neutral", ha="center", va="bottom", fontsize=8, color="#777777")
    shown = ~np.isnan(valence) & ~np.isnan(arousal)
    for label in order:
        pick = shown & np.array([n == label for n in names])
        if pick.any():
            ax.scatter(valence[pick], arousal[pick], s=14, alpha=0.55, color=label_colour(label, order),
                       label=f"{label} ({int(pick.sum())})", edgecolors="none")
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("valence (unpleasant → pleasant)")
    ax.set_ylabel("arousal (low → high)")
    if shown.any():
        legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=9, frameon=False,
                           markerscale=2.5)
        for handle in getattr(legend, "legend_handles", None) or getattr(legend, "legendHandles", []):
            handle.set_alpha(1.0)  # the dots are translucent; their legend keys should not be
    skipped = int((~shown).sum())
    if skipped:
        ax.text(1.08, -1.08, f"{skipped} states with null valence or arousal not shown", ha="right",
                fontsize=8, color="#666666")
    if not shown.any():
        ax.text(0, -0.5, "no state has both valence and arousal", ha="center", fontsize=10, color="#666666")
    figure.tight_layout()
    return _png(figure)


def label_time_png(states: list[dict[str, Any]], line: summary.Timeline) -> bytes:
    """Minutes under each label, as horizontal bars (longest on top)."""
    per_label = summary.time_per_label(states, line)
    order = list(per_label)
    figure, ax = plt.subplots(figsize=(WIDTH_IN, 0.7 + 0.32 * len(order)))
    minutes = [seconds / 60.0 for seconds in per_label.values()]
    ax.barh(range(len(order)), minutes, color=[label_colour(lb, order) for lb in order])
    for row, value in enumerate(minutes):
        ax.text(value, row, f" {value:.1f} min", va="center", fontsize=9)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.set_xlim(0, max(minutes, default=1.0) * 1.15 or 1.0)
    ax.set_xlabel("minutes under each label")
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def report_figures(states: list[dict[str, Any]], events: list[dict[str, Any]], tags: list[Tag]) -> dict[str, bytes]:
    """Every section's PNG, keyed as edge.report.page.SECTIONS."""
    line = summary.timeline(states)
    frame = summary.session_frame(line, events)
    periods = summary.missing_periods(states, line, events)
    return {
        "timeline": timeline_png(states, line, tags, periods, frame),
        "labels": label_ribbon_png(states, line, tags, periods, frame),
        "modalities": modalities_png(states, line, tags, periods, frame),
        "missing": missing_png(states, line, tags, periods, events, frame),
        "circumplex": circumplex_png(states, line),
        "summary": label_time_png(states, line),
    }
