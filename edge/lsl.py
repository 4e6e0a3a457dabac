"""Lab Streaming Layer outlets (``run --lsl``, ``[lsl] enabled``; the ``[lsl]`` extra, pylsl).

One outlet per raw stream of each source, created on its first block, with the channel metadata
LSL's XDF conventions name (``desc/channels/channel`` with ``label``, ``unit``, ``type``), and two
outlets for the states:

- ``<device> states``: type ``EmotionState``, 4 float channels valence, arousal, stress, confidence
  (NaN where the state has none), irregular rate;
- ``<device> state-json``: type ``Markers``, one string channel carrying each state's JSON as published.

Samples are stamped by LSL at push time (its ``local_clock``, the host's clock): a replay's own
(recording) time is not carried per sample; the recording folder keeps it.

pylsl loads the native liblsl when imported. Its wheels carry liblsl for x86_64 only; where it is
missing (aarch64: Raspberry Pi, Jetson) ``open_lsl_outlet`` says so in one line and returns None,
and the daemon goes on without LSL.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np

from edge.edf_format import STREAM_UNITS
from edge.stream import FrameBlock, SampleBlock

log = logging.getLogger(__name__)

LSL_TYPES = {"eeg": "EEG", "ecg": "ECG", "eda": "EDA", "bvp": "PPG", "ibi": "IBI"}
STATE_CHANNELS = ("valence", "arousal", "stress", "confidence")


def load_pylsl() -> tuple[Any, str | None]:
    """(pylsl module, None), or (None, the one-line reason it cannot be used)."""
    try:
        import pylsl  # noqa: PLC0415 - optional: the [lsl] extra
    except ImportError:
        return None, "lsl: pylsl is not installed (pip install 'emotion-edge[lsl]'); no LSL outlets"
    except (RuntimeError, OSError) as exc:  # pylsl raises RuntimeError when liblsl is not found
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (f"lsl: liblsl not found ({first[:120]}); pylsl's wheels carry it for x86_64 only: "
                      "install liblsl for this machine; no LSL outlets")
    return pylsl, None


def _describe_channels(info: Any, labels: tuple[str, ...], unit: str, kind: str) -> None:
    channels = info.desc().append_child("channels")
    for label in labels:
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", kind)


class LslOutlet:
    """The daemon's LSL tap (see the module doc); ``edge.record.Taps`` calls it."""

    def __init__(self, pylsl: Any, device_id: str):
        self.pylsl = pylsl
        self.device_id = device_id
        self.outlets: dict[tuple[str, str], Any] = {}
        info = pylsl.StreamInfo(f"{device_id} states", "EmotionState", len(STATE_CHANNELS), pylsl.IRREGULAR_RATE,
                                pylsl.cf_float32, f"emotion-edge-{device_id}-states")
        _describe_channels(info, STATE_CHANNELS, "", "EmotionState")
        self.states = pylsl.StreamOutlet(info)
        info = pylsl.StreamInfo(f"{device_id} state-json", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                f"emotion-edge-{device_id}-state-json")
        self.state_json = pylsl.StreamOutlet(info)

    def _outlet(self, source: str, block: SampleBlock) -> Any:
        key = (source, block.stream)
        outlet = self.outlets.get(key)
        if outlet is None:
            pylsl = self.pylsl
            n = 1 + sum(1 for s, k in self.outlets if k == block.stream)
            name = f"{self.device_id} {block.stream}" + (f" {n}" if n > 1 else "")
            kind = LSL_TYPES.get(block.stream, block.stream.upper())
            info = pylsl.StreamInfo(name, kind, len(block.channels), block.rate_hz or pylsl.IRREGULAR_RATE,
                                    pylsl.cf_float32, f"emotion-edge-{self.device_id}-{block.stream}-{n}")
            _describe_channels(info, tuple(block.channels), STREAM_UNITS.get(block.stream, ""), kind)
            info.desc().append_child_value("source", source)
            outlet = pylsl.StreamOutlet(info)
            self.outlets[key] = outlet
            log.info("lsl: outlet %r (%s, %d channel(s))", name, kind, len(block.channels))
        return outlet

    def on_block(self, source: str, block: SampleBlock | FrameBlock) -> None:
        if isinstance(block, FrameBlock) or block.n == 0:
            return
        data = np.asarray(block.data, dtype=np.float32).reshape(block.n, -1)
        self._outlet(source, block).push_chunk(data.tolist())

    def on_state(self, state: dict[str, Any], modality_payloads: list[dict[str, Any]]) -> None:
        values = [state.get(k) for k in STATE_CHANNELS]
        self.states.push_sample([float(v) if v is not None else math.nan for v in values])
        self.state_json.push_sample([json.dumps(state, separators=(",", ":"))])

    def event(self, kind: str, modality: str | None, text: str, ts: float | None, short: str | None = None) -> None:
        """Source and label events are in the recording; LSL carries the states' label in state-json."""

    def close(self) -> None:
        self.outlets.clear()  # outlets close when collected
        self.states = self.state_json = None


def open_lsl_outlet(device_id: str) -> LslOutlet | None:
    pylsl, why = load_pylsl()
    if pylsl is None:
        log.warning("%s", why)
        return None
    return LslOutlet(pylsl, device_id)
