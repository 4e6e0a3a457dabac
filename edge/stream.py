"""The typed values that flow from sensors into the pipeline.

A source yields ``SampleBlock``s (regularly sampled signals, or irregular events such as
inter-beat intervals) and ``FrameBlock``s (camera images). Timestamps are unix seconds on
the *source's* clock: a replayed recording keeps its own time, so published states line up
with a study's labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Stream kinds a source may produce, and the modality (model) each one feeds.
STREAM_TO_MODALITY = {
    "eeg": "eeg",  # µV, (n, channels)
    "ecg": "cardiac",  # µV or mV, (n, 1) -> R-peaks -> IBI
    "bvp": "cardiac",  # PPG, arbitrary units, (n, 1) -> beats -> IBI
    "ibi": "cardiac",  # inter-beat intervals in ms, irregular (times given)
    "eda": "eda",  # skin conductance µS, (n, 1)
    "temp": "eda",  # wrist skin temperature °C, (n, 1): read beside EDA by the eda model (from 1.2.0)
    "acc": "eda",  # wrist acceleration in g, (n, 3) x y z: movement, the confound of EDA and heart rate
    "video": "face",  # FrameBlock
}
MODALITIES = ("face", "eda", "cardiac", "eeg")
# Streams read beside a modality's own (edge.estimators.AUX_STREAMS): buffered, but they neither drive its
# windows (a window waits for the modality's own data) nor put it in `missing` when they fail.
AUXILIARY_STREAMS = frozenset({"temp", "acc"})


@dataclass(frozen=True)
class SampleBlock:
    """A block of samples of one stream.

    ``data`` has shape (n_samples, n_channels). For regular streams ``rate_hz`` > 0 and the
    i-th sample is at ``ts_unix + i / rate_hz``. For irregular (event) streams such as
    ``ibi`` ``rate_hz`` is 0 and ``times_unix`` gives each sample's time.
    """

    stream: str
    ts_unix: float
    rate_hz: float
    data: np.ndarray
    channels: tuple[str, ...] = ("ch0",)
    source: str = ""
    times_unix: np.ndarray | None = None
    lost_samples: int = 0  # samples known lost just before this block (gap reported, not filled)

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def end_unix(self) -> float:
        """Time just after the last sample (regular) or of the last event (irregular)."""
        if self.times_unix is not None and len(self.times_unix):
            return float(self.times_unix[-1])
        if self.rate_hz > 0:
            return self.ts_unix + self.n / self.rate_hz
        return self.ts_unix


@dataclass(frozen=True)
class FrameBlock:
    """One camera frame (BGR or gray uint8) at ``ts_unix``."""

    ts_unix: float
    image: np.ndarray
    source: str = ""
    stream: str = field(default="video")
