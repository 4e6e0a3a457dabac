"""How far a long run is, told every few seconds (``models evaluate`` over 28,709 images takes minutes).

The tools call a ``Progress`` with (done, total); it says one line at most every ``every_s``
seconds through ``say`` (the CLI prints to stderr, so ``--json`` on stdout stays clean), plus a
last line when a run that said anything is done. Short runs say nothing.
"""

from __future__ import annotations

import time
from typing import Callable

EVERY_S = 5.0


class Progress:
    def __init__(self, what: str, unit: str, say: Callable[[str], None], every_s: float = EVERY_S):
        self.what, self.unit, self.say, self.every_s = what, unit, say, float(every_s)
        self._t0 = time.monotonic()
        self._last = self._t0
        self._said = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if now - self._last < self.every_s and not (finished and self._said):
            return
        if finished and not self._said and now - self._t0 < self.every_s:
            return
        self._last, self._said = now, True
        share = f" ({done / total:.0%})" if total else ""
        self.say(f"{self.what}: {done}/{total} {self.unit}{share}, {now - self._t0:.0f} s")


def no_progress(done: int, total: int) -> None:
    """The default: say nothing."""
