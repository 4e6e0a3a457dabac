"""Ring buffers per stream and sliding windows per modality, on the source's clock.

A ``StreamBuffer`` keeps the newest samples of one stream (values and each sample's time) in
preallocated numpy arrays; it never grows. A ``WindowClock`` says which windows
``[end - length_s, end)`` have completed once a stream's data has passed their end. Window ends
sit on a grid ``first_end + k * hop_s`` so they are reproducible for a given recording.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from edge.limits import MAX_DUE_PER_STEP
from edge.stream import SampleBlock


class StreamBuffer:
    """The newest ``capacity`` samples of one stream: ``(capacity, channels)`` values + times.

    Storage is ``2 * capacity`` rows; when the write position reaches the end, the newest
    ``capacity`` rows are moved to the front (one memmove, amortised O(1) per sample), so every
    read is a contiguous slice and memory stays bounded.
    """

    def __init__(self, capacity: int, n_channels: int, dtype: type = np.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.n_channels = int(n_channels)
        self._values = np.zeros((2 * self.capacity, self.n_channels), dtype=dtype)
        self._times = np.zeros(2 * self.capacity, dtype=np.float64)
        self._start = 0
        self._stop = 0
        self.total_samples = 0  # ever appended
        self._last_time: float | None = None  # a plain float: read on every block by the fusion watermark
        self.lost_samples = 0  # ever reported lost by the source

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def nbytes(self) -> int:
        return self._values.nbytes + self._times.nbytes

    @property
    def last_time(self) -> float | None:
        return self._last_time

    def append(self, times: np.ndarray, values: np.ndarray) -> None:
        """Append samples (times in unix s, increasing); keeps only the newest ``capacity``."""
        values = np.asarray(values)
        if values.ndim == 1:
            values = values[:, None]
        n = values.shape[0]
        if n == 0:
            return
        if values.shape[1] != self.n_channels:
            raise ValueError(f"expected {self.n_channels} channels, got {values.shape[1]}")
        self.total_samples += n
        self._last_time = float(times[-1])
        if n >= self.capacity:
            times, values = times[-self.capacity:], values[-self.capacity:]
            self._times[: self.capacity] = times
            self._values[: self.capacity] = values
            self._start, self._stop = 0, self.capacity
            return
        if self._stop + n > 2 * self.capacity:
            keep = min(len(self), self.capacity - n)
            src = slice(self._stop - keep, self._stop)
            self._values[:keep] = self._values[src]
            self._times[:keep] = self._times[src]
            self._start, self._stop = 0, keep
        self._values[self._stop:self._stop + n] = values
        self._times[self._stop:self._stop + n] = times
        self._stop += n
        if len(self) > self.capacity:
            self._start = self._stop - self.capacity

    def append_block(self, block: SampleBlock) -> None:
        """Append a ``SampleBlock``: sample times from ``times_unix`` or from ``ts_unix`` + i / rate_hz."""
        self.lost_samples += int(block.lost_samples)
        self.append(block_times(block), block.data)

    def window(self, start_unix: float, end_unix: float) -> tuple[np.ndarray, np.ndarray]:
        """(times, values) of the samples with start <= t < end (views: copy before keeping them)."""
        times = self._times[self._start:self._stop]
        lo = int(np.searchsorted(times, start_unix, side="left"))
        hi = int(np.searchsorted(times, end_unix, side="left"))
        return times[lo:hi], self._values[self._start + lo:self._start + hi]


def block_times(block: SampleBlock) -> np.ndarray:
    """Each sample's time (unix s) of a block."""
    if block.times_unix is not None:
        return np.asarray(block.times_unix, dtype=np.float64)
    if block.rate_hz > 0:
        return block.ts_unix + np.arange(block.n, dtype=np.float64) / block.rate_hz
    return np.full(block.n, block.ts_unix, dtype=np.float64)


@dataclass(frozen=True)
class WindowSpec:
    """A modality's sliding window: ``length_s`` long, one every ``hop_s`` (seconds, source clock)."""

    length_s: float
    hop_s: float

    def __post_init__(self) -> None:
        if not (self.length_s > 0 and self.hop_s > 0 and math.isfinite(self.length_s) and math.isfinite(self.hop_s)):
            raise ValueError(f"window length and hop must be finite and > 0, got {self.length_s}, {self.hop_s}")


class HopGrid:
    """Times ``anchor + k * hop_s`` for whole k: progress is counted in steps, never summed in floats.

    A loop that adds a hop to a time stops making progress once ``t + hop == t`` (a time of 1e20,
    a hop of 1e-9); counting k as an integer and computing how many times are due in one division
    keeps every step bounded whatever the numbers.
    """

    def __init__(self, anchor: float, hop_s: float, k: int = 0):
        self.anchor = float(anchor)
        self.hop_s = float(hop_s)
        self.k = int(k)

    @property
    def next(self) -> float:
        return self.anchor + self.k * self.hop_s

    def due(self, upto: float, tol: float = 1e-9) -> int:
        """How many grid times from ``next`` on are <= ``upto`` (+ ``tol``); 0 for a non-finite ``upto``."""
        if not math.isfinite(upto) or not math.isfinite(self.next):
            return 0
        span = upto + tol - self.next
        if span < 0:
            return 0
        n = int(math.floor(span / self.hop_s)) + 1
        # one correction each way for rounding in the division (bounded: no loop)
        if n > 0 and self.anchor + (self.k + n - 1) * self.hop_s > upto + tol:
            n -= 1
        if self.anchor + (self.k + n) * self.hop_s <= upto + tol:
            n += 1
        return max(n, 0)

    def skip(self, n: int) -> None:
        self.k += max(int(n), 0)

    def take(self, n: int) -> list[float]:
        """The next ``n`` grid times (n is bounded by the caller)."""
        times = [self.anchor + (self.k + i) * self.hop_s for i in range(n)]
        self.k += n
        return times


class WindowClock:
    """Decides when windows of one modality are complete.

    The first window ends ``length_s`` after the first sample; later ends follow every
    ``hop_s``. ``advance(data_end)`` returns the ends of all windows the data has now passed
    (a window ``[end - length, end)`` is complete once data reaches ``end``). After a long gap
    (``skip_gap``) the clock jumps forward instead of emitting a burst of empty windows; more than
    ``MAX_DUE_PER_STEP`` windows due at once (a jump in the data's clock) are skipped the same way.
    """

    def __init__(self, spec: WindowSpec):
        self.spec = spec
        self._grid: HopGrid | None = None
        self.last_end: float | None = None
        self.skipped = 0  # windows skipped because too many were due at once

    @property
    def next_end(self) -> float | None:
        return None if self._grid is None else self._grid.next

    def start(self, first_sample_unix: float) -> None:
        if self._grid is None and math.isfinite(first_sample_unix):
            self._grid = HopGrid(first_sample_unix + self.spec.length_s, self.spec.hop_s)

    def advance(self, data_end_unix: float) -> list[float]:
        if self._grid is None:
            return []
        due = self._grid.due(data_end_unix)
        if due > MAX_DUE_PER_STEP:
            self._grid.skip(due - MAX_DUE_PER_STEP)
            self.skipped += due - MAX_DUE_PER_STEP
            due = MAX_DUE_PER_STEP
        ends = self._grid.take(due)
        if ends:
            self.last_end = ends[-1]
        return ends

    def skip_gap(self, new_data_start_unix: float) -> None:
        """New data starts after a gap: skip the windows that would hold no data at all.

        Windows still overlapping the new data are kept (their quality reflects the gap);
        called with the first sample time of each block.
        """
        if self._grid is None or not math.isfinite(new_data_start_unix):
            return
        gap = new_data_start_unix - self._grid.next  # windows ending before this + nothing after the old data
        if gap > self.spec.length_s:
            self._grid.skip(math.floor(gap / self.spec.hop_s))

    def final(self, data_end_unix: float, min_fraction: float = 0.5) -> float | None:
        """The end of a last, partial window at the end of a recording, or None.

        Emitted when the data runs at least ``min_fraction`` of a hop past the last window end,
        so the tail of a recording is not thrown away.
        """
        if self._grid is None or not math.isfinite(data_end_unix):
            return None
        next_end = self._grid.next
        last = self.last_end if self.last_end is not None else next_end - self.spec.length_s
        if data_end_unix - last >= min_fraction * self.spec.hop_s and data_end_unix - (next_end - self.spec.length_s) >= min_fraction * self.spec.length_s:
            self.last_end = data_end_unix
            self._grid = HopGrid(data_end_unix, self.spec.hop_s, k=1)
            return data_end_unix
        return None


BUFFER_MARGIN_S = 2.0  # a stream buffer holds one window plus this much
# Blocks are buffered at most this long at a time: a window that ends inside a longer block needs
# that block's early samples, which a buffer of one window + margin would already have dropped.
MAX_PIECE_S = BUFFER_MARGIN_S / 2


def buffer_capacity(rate_hz: float, length_s: float, margin_s: float = BUFFER_MARGIN_S, minimum: int = 16) -> int:
    """Samples a stream buffer needs to hold one window plus a margin for late hops."""
    return max(minimum, int(math.ceil(rate_hz * (length_s + margin_s))) + 1)


def split_block(block: SampleBlock, max_span_s: float = MAX_PIECE_S) -> list[SampleBlock]:
    """``block`` as consecutive pieces each spanning less than ``max_span_s`` (just ``[block]`` if it does).

    A block whose times are not finite or not ascending is left whole, for the caller to refuse.
    """
    if block.n < 2 or (block.times_unix is None and block.rate_hz > 0 and (block.n - 1) / block.rate_hz < max_span_s):
        return [block]  # the common case, decided without computing the times
    times = block_times(block)
    if not (np.all(np.isfinite(times)) and times[-1] - times[0] >= max_span_s):
        return [block]
    slot = np.floor((times - times[0]) / max_span_s)
    if np.any(np.diff(slot) < 0):
        return [block]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(slot)) + 1])
    ends = np.append(starts[1:], block.n)
    return [dataclasses.replace(block, ts_unix=float(times[i0]), data=block.data[i0:i1],
                                times_unix=None if block.times_unix is None else times[i0:i1],
                                lost_samples=block.lost_samples if i0 == 0 else 0)
            for i0, i1 in zip(starts.tolist(), ends.tolist())]
