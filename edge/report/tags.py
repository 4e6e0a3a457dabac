"""Event marks for a report: a CSV of unix times, one a line, such as an Empatica E4
``tags_SXX.csv`` (the times its button was pressed). An optional second column names the mark;
a first line that is not a time is taken as a header."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.errors import ReportSourceError

# A tags file is a handful of button presses; more than this is not a tags file.
MAX_TAGS = 10_000


@dataclass(frozen=True)
class Tag:
    ts_unix: float
    text: str


def read_tags(path: Path) -> list[Tag]:
    """The marks in ``path``, sorted by time."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ReportSourceError(f"--tags {path}: cannot read ({exc.strerror or exc})") from None
    tags: list[Tag] = []
    for number, line in enumerate(lines, start=1):
        fields = [f.strip() for f in line.split(",")]
        if not fields[0] or fields[0].startswith("#"):
            continue
        try:
            ts_unix = float(fields[0])
        except ValueError:
            if not tags and number == 1:
                continue  # a header line
            raise ReportSourceError(f"--tags {path}:{number}: {fields[0][:40]!r} is not a unix time") from None
        if not 0 < ts_unix < 1e11:
            raise ReportSourceError(f"--tags {path}:{number}: {fields[0]} is not a unix time in seconds")
        if len(tags) >= MAX_TAGS:
            raise ReportSourceError(f"--tags {path}: more than {MAX_TAGS} marks; not a tags file?")
        tags.append(Tag(ts_unix, fields[1] if len(fields) > 1 and fields[1] else ""))
    tags.sort(key=lambda t: t.ts_unix)
    return [Tag(t.ts_unix, t.text or f"tag {i}") for i, t in enumerate(tags, start=1)]
