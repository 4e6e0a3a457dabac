"""The contract between sensors and the daemon."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from edge.stream import FrameBlock, SampleBlock


@dataclass
class SourceStats:
    """What a source tells ``devices check`` and the health figures."""

    samples: dict[str, int] = field(default_factory=dict)  # per stream
    lost: int = 0  # packets (or samples) known lost: sequence gaps
    decode_errors: int = 0  # corrupt frames skipped
    reconnects: int = 0
    connected: bool = False


class Source(abc.ABC):
    """A stream of timestamped blocks from one device, file or simulator.

    ``blocks()`` yields until the source ends (a replay reaches its end) or is cancelled.
    Live devices never end on their own: they reconnect with backoff, and while they are
    away the daemon simply sees no data and reports the modality missing.

    ``speed`` paces replayed and simulated sources: 1.0 = real time, None = as fast as
    possible. Live sources ignore it.
    """

    spec: str = ""
    streams: tuple[str, ...] = ()  # stream kinds this source produces (keys of edge.stream.STREAM_TO_MODALITY)
    # Source time before which the blocks are the source's past, delivered at once (``simulate:prime=``):
    # the daemon runs them through windows, baselines and fusion but publishes no state from them.
    primed_until_unix: float | None = None

    def __init__(self) -> None:
        self.stats = SourceStats()

    @abc.abstractmethod
    def blocks(self) -> AsyncIterator[SampleBlock | FrameBlock]:
        """Yield blocks in time order per stream."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (stop streaming, close the port)."""
