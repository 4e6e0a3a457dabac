"""What a pure decoder hands back for each chunk of bytes it is fed.

Decoders never raise on bad bytes: they skip what does not follow the wire format, count it in
``decode_errors`` (with a short reason in ``errors``), resynchronise, and report sequence gaps in
``lost_packets`` (and, per block, in ``SampleBlock.lost_samples``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.stream import SampleBlock

MAX_ERROR_MESSAGES = 8  # reasons kept per result; the count is always exact


@dataclass
class DecodeResult:
    """Blocks decoded from one chunk, plus what went wrong in it."""

    blocks: list[SampleBlock] = field(default_factory=list)
    lost_packets: int = 0  # packets/frames known lost (sequence gaps) before the blocks here
    decode_errors: int = 0  # corrupt or unparseable packets/bytes runs skipped
    errors: list[str] = field(default_factory=list)  # one-line reasons, at most MAX_ERROR_MESSAGES
    events: list[Any] = field(
        default_factory=list
    )  # non-sample messages (control replies, heart rate)

    def error(self, reason: str) -> None:
        """Count one decode error and keep its reason (bounded)."""
        self.decode_errors += 1
        if len(self.errors) < MAX_ERROR_MESSAGES:
            self.errors.append(reason)

    def merge(self, other: DecodeResult) -> DecodeResult:
        self.blocks.extend(other.blocks)
        self.lost_packets += other.lost_packets
        self.decode_errors += other.decode_errors
        self.errors.extend(other.errors[: max(0, MAX_ERROR_MESSAGES - len(self.errors))])
        self.events.extend(other.events)
        return self

    @property
    def samples(self) -> int:
        return sum(b.n for b in self.blocks)
