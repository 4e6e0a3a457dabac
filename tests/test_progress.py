"""Long tool runs say how far they are, every few seconds, on stderr (edge.tools.progress)."""

from __future__ import annotations

import time

from edge.tools.progress import Progress


def test_progress_speaks_at_most_every_interval_and_once_more_at_the_end():
    lines: list[str] = []
    progress = Progress("models evaluate face", "images", say=lines.append, every_s=0.05)
    for done in range(1, 101):
        progress(done, 100)
        time.sleep(0.002)
    assert 2 <= len(lines) <= 10, lines  # ~0.2 s of work at one line per 0.05 s, not one per call
    assert lines[-1].startswith("models evaluate face: 100/100 images (100%), ")
    assert all(line.startswith("models evaluate face: ") for line in lines)


def test_a_short_run_says_nothing():
    lines: list[str] = []
    progress = Progress("models evaluate eda", "subjects", say=lines.append, every_s=5.0)
    for done in range(1, 27):
        progress(done, 26)
    assert lines == []
