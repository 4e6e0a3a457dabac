"""Reconnection delays: exponential, capped, jittered (so a room of sensors does not retry in step)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``next_delay_s()`` gives initial_s, x factor each time, up to max_s, each minus up to ``jitter``
    (a fraction) at random. The jitter is taken *below* the delay so that it survives at the cap:
    clipping a +/- jitter at max_s would put half of all capped retries back in step.

    ``reset()`` after a connection has delivered data, so the next outage starts short again.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay_s(self) -> float:
        base = min(self.max_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        return max(0.0, base * (1.0 - self.rng.uniform(0.0, self.jitter)))

    def reset(self) -> None:
        self.attempts = 0
