"""Device time -> host (unix) time, and sequence-number gaps. Pure, apart from ``ArrivalClock``.

Why: a sensor's crystal drifts (tens of ppm: ~0.1 s an hour) and every packet reaches the host
after a variable transport delay (USB latency, BLE connection intervals, OS scheduling). Stamping
samples with the receive time would put that jitter into the signal; trusting the device clock
alone would let it drift away from the other modalities. So ``DeviceClock`` fits

    host_receive_time = device_time + offset + skew * (device_time - ref) + delay,   delay >= 0

over a sliding window, using the *lower envelope* of ``host - device`` (the packets that had the
least delay), the approach of one-way delay clock-skew estimation (Moon, Skelly & Towsley,
"Estimation and removal of clock skew from network delay measurements", INFOCOM 1999). The
minimum per time bin is kept; a least-squares line through the minima gives the skew and is then
lowered until it touches the lowest minimum, so mapped times are never later than any receipt.

``ArrivalClock`` is what transports stamp received bytes with: the monotonic clock, mapped to wall
time once. The wall clock itself can step (NTP setting a Raspberry Pi's clock after boot, often by
hours): receive times taken from it would jump too, and a decoder would read a +1 h step as an hour
of lost packets (900,000 at the Cyton's 250 Hz). Monotonic time only moves forward at one rate.

``SequenceCounter`` unwraps modular packet counters (Cyton u8, Muse u16, framed u16) and reports
how many packets a jump skipped; with the host time elapsed it can also tell whole wraps apart.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

MAX_SKEW = 1e-3  # 1000 ppm: far beyond any crystal; a larger fitted skew means a bad fit


class ArrivalClock:
    """Host receive times (unix s) that never step: ``monotonic() + (wall - monotonic at creation)``.

    Call the instance for "now". The mapping to wall time is taken once, when the clock is made;
    later steps of the wall clock do not move receive times (nor the published states' times).
    """

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self._monotonic = monotonic
        self.wall_minus_monotonic_s = wall() - monotonic()

    def __call__(self) -> float:
        return self._monotonic() + self.wall_minus_monotonic_s


_ARRIVAL_CLOCK: ArrivalClock | None = None


def arrival_time() -> float:
    """Now on the process's one ``ArrivalClock`` (made at the first call), for every transport."""
    global _ARRIVAL_CLOCK  # noqa: PLW0603 - one mapping per process, so all sources share a time line
    if _ARRIVAL_CLOCK is None:
        _ARRIVAL_CLOCK = ArrivalClock()
    return _ARRIVAL_CLOCK()


class DeviceClock:
    """Maps device seconds to host unix seconds with offset and drift correction.

    ``observe(device_s, host_s)`` after each packet: ``device_s`` is the device time of the last
    sample it carried, ``host_s`` when the host received it. ``to_host(device_s)`` maps any device
    time. A device clock that jumps backwards (device reboot) or jumps far ahead of the host
    restarts the fit.
    """

    def __init__(self, window_s: float = 30.0, bin_s: float = 1.0, max_jump_s: float = 5.0) -> None:
        self.window_s = float(window_s)
        self.bin_s = float(bin_s)
        self.max_jump_s = float(max_jump_s)
        self.resets = 0
        self.reset()

    def reset(self) -> None:
        self._bins: OrderedDict[int, tuple[float, float]] = (
            OrderedDict()
        )  # bin -> (device_s, host-device)
        self._last_device_s: float | None = None
        self._ref: float = 0.0
        self._fit: tuple[float, float] | None = None  # (offset at ref, skew)

    @property
    def ready(self) -> bool:
        return bool(self._bins)

    def observe(self, device_s: float, host_s: float) -> None:
        device_s = float(device_s)
        host_s = float(host_s)
        if self._last_device_s is not None:
            went_back = device_s < self._last_device_s - 1e-6
            jumped = self._fit is not None and abs(host_s - self._map(device_s)) > self.max_jump_s
            if went_back or jumped:
                self.reset()
                self.resets += 1
        if not self._bins:
            self._ref = device_s
        self._last_device_s = device_s
        key = math.floor((device_s - self._ref) / self.bin_s)
        offset = host_s - device_s
        current = self._bins.get(key)
        if current is None or offset < current[1]:
            self._bins[key] = (device_s, offset)
            self._fit = None
        oldest = key - int(math.ceil(self.window_s / self.bin_s))
        while self._bins and next(iter(self._bins)) < oldest:
            self._bins.popitem(last=False)
            self._fit = None

    def to_host(self, device_s: float | np.ndarray) -> float | np.ndarray:
        """Host unix time of a device time (scalar or array). Needs one ``observe`` first."""
        if not self._bins:
            raise RuntimeError("DeviceClock.to_host before any observation")
        return self._map(device_s)

    @property
    def skew(self) -> float:
        """Fitted rate error of the device clock (host s per device s - 1); 50e-6 = 50 ppm fast host."""
        return self._solve()[1] if self._bins else 0.0

    def _map(self, device_s: float | np.ndarray) -> float | np.ndarray:
        offset, skew = self._solve()
        return device_s + offset + skew * (device_s - self._ref)

    def _solve(self) -> tuple[float, float]:
        if self._fit is not None:
            return self._fit
        pts = np.array(list(self._bins.values()), dtype=np.float64)
        d = pts[:, 0] - self._ref
        o = pts[:, 1]
        skew = 0.0
        # A slope needs minima spread over time: at least 3 bins across >= 3 bin widths.
        if len(pts) >= 3 and d.max() - d.min() >= 3 * self.bin_s:
            skew = float(np.polyfit(d, o, 1)[0])
            skew = min(max(skew, -MAX_SKEW), MAX_SKEW)
        offset = float(np.min(o - skew * d))  # lower the line onto the envelope
        self._fit = (offset, skew)
        return self._fit


SLEW = 0.01  # a block may start at most 1 % of its length earlier than contiguity allows


def ordered_start(
    mapped_s: float, previous_end_s: float | None, n: int, rate_hz: float, lost: int = 0
) -> float:
    """Start time for a block of ``n`` samples: the clock's mapping, kept in time order.

    A refit of ``DeviceClock`` may move the mapping back by a few ms; samples must not then
    overlap the previous block. The start may slew back by at most 1 % of the block (and under
    half a sample period), so an early over-estimate is corrected gradually and sample times stay
    strictly increasing. ``lost`` samples before the block keep their room on the time line.
    """
    mapped_s = float(mapped_s)
    if previous_end_s is None or rate_hz <= 0:
        return mapped_s
    floor = previous_end_s + (lost - min(SLEW * n, 0.5)) / rate_hz
    return max(mapped_s, floor)


class SequenceCounter:
    """Unwraps a modular packet counter and counts the packets a jump skipped.

    ``step(seq, elapsed_packets)`` returns ``(lost, index)``: packets lost just before this one and
    its unwrapped index; ``lost`` is -1 for a repeat of the previous counter (drop it).
    ``elapsed_packets`` (host seconds since the previous packet x packets per second) resolves
    gaps longer than one wrap: the whole number of extra wraps closest to it is added.
    """

    def __init__(self, modulus: int) -> None:
        self.modulus = int(modulus)
        self.reset()

    def reset(self) -> None:
        self._last: int | None = None
        self.index = -1

    def step(self, seq: int, elapsed_packets: float | None = None) -> tuple[int, int]:
        seq = int(seq) % self.modulus
        if self._last is None:
            self._last = seq
            self.index = 0
            return 0, 0
        diff = (seq - self._last) % self.modulus
        if diff == 0:
            return -1, self.index
        lost = diff - 1
        if elapsed_packets is not None and elapsed_packets > self.modulus / 2:
            wraps = round((elapsed_packets - diff) / self.modulus)
            lost += self.modulus * max(0, wraps)
        self._last = seq
        self.index += lost + 1
        return lost, self.index

    def steps(
        self, seqs: np.ndarray, elapsed_packets: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised ``step`` over consecutive counters of one chunk.

        Returns ``(keep, lost, index)``: a mask of packets to keep (repeats dropped), and for the
        kept ones the packets lost just before each and their unwrapped indices. ``elapsed_packets``
        applies to the first packet of the chunk only.
        """
        seqs = np.asarray(seqs, dtype=np.int64) % self.modulus
        keep = np.ones(len(seqs), dtype=bool)
        if not len(seqs):
            return keep, np.zeros(0, np.int64), np.zeros(0, np.int64)
        lost0, _ = self.step(int(seqs[0]), elapsed_packets)
        prev = np.concatenate(([seqs[0]], seqs[:-1]))
        diff = (seqs - prev) % self.modulus
        diff[0] = lost0 + 1  # -1 (repeat) -> 0
        keep = diff != 0
        # A repeat followed by its successor: the successor's diff is already relative to the repeat.
        lost = diff[keep] - 1
        base = self.index - (lost0 + 1 if lost0 >= 0 else 0)
        index = base + np.cumsum(diff[keep])
        if len(index):
            self.index = int(index[-1])
            self._last = int(seqs[keep][-1])
        return keep, lost, index
