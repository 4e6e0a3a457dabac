"""The daemon: sources -> ring buffers -> windows -> estimators -> fusion -> MQTT.

Two layers:

- ``Pipeline`` (synchronous, no I/O): takes blocks in, keeps per-stream ring buffers and per-
  modality window clocks on the *source's* clock, runs each modality's estimator when a window
  completes, and fuses on a common fusion hop. It returns the states to publish. Tests and the
  benchmark drive it directly.
- ``run_daemon`` (asyncio): loads and verifies the models, opens the sources, pumps their blocks
  into the pipeline, publishes through ``edge.publish.StatePublisher``, and stops gracefully on
  SIGINT/SIGTERM, at ``duration_s`` (wall clock) or when every source has ended.

Failures are contained and reported: a model that fails its sha256 or does not load, or a source
that cannot be opened or fails mid-stream, is one log line; the modality it fed is named in each
state's ``missing`` with the reason, and the daemon carries on with the rest. Only when nothing at
all can run does it stop with a non-zero exit.

Estimation runs on the event loop: a physiological window costs well under a millisecond to a few
milliseconds (see ``emotion-edge bench``); a face window (detector + model on up to
``face.max_frames_per_window`` frames) runs in a single worker thread so the sources keep flowing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from edge import sdnotify
from edge.baseline_store import SAVE_EVERY_S, load_baselines, save_baselines, store_path
from edge.calibration import Calibrator
from edge.config import Config, FusionConfig
from edge.errors import EmotionEdgeError, MissingExtraError, ModelIntegrityError
from edge.estimators import (AUX_STREAMS, DEFAULT_WINDOWS, MODALITY_STREAMS, EstimateUnavailable, Estimator, FrameWindow,
                             StreamWindow, make_estimator)
from edge.fusion import (FusedState, FusionParams, LabelHolder, ModalityEstimate, Smoother, fuse,
                         staleness_factor)
from edge.stream import AUXILIARY_STREAMS, MODALITIES, STREAM_TO_MODALITY, FrameBlock, SampleBlock
from edge.limits import (MAX_DUE_PER_STEP, MAX_HOP_S, MAX_STREAM_BUFFER_BYTES, MAX_WINDOW_S, MIN_HOP_S,
                         is_unix_time)
from edge.windows import HopGrid, StreamBuffer, WindowClock, WindowSpec, block_times, buffer_capacity, split_block

log = logging.getLogger(__name__)

IBI_NOMINAL_RATE_HZ = 4.0  # buffer sizing for event streams (heart beats: at most ~3.5 per second)

# Modalities a source spec will feed, for naming them missing when the source cannot be opened.
SPEC_MODALITIES: dict[str, tuple[str, ...]] = {
    "simulate": ("eeg", "cardiac", "eda"),
    "replay:e4": ("eda", "cardiac"),
    "replay:wfdb": ("cardiac",),
    "camera": ("face",),
    "serial:cyton": ("eeg",),
    "serial:framed": (),
    "ble:muse": ("eeg",),
    "ble:polar-h10": ("cardiac",),
    "ble:hrs": ("cardiac",),
    "ble:framed": (),
}


def spec_modalities(spec: str) -> tuple[str, ...]:
    """The modalities a source spec is expected to feed (best guess from its kind)."""
    transport, _, rest = spec.partition(":")
    device = rest.partition(":")[0]
    return SPEC_MODALITIES.get(f"{transport}:{device}", SPEC_MODALITIES.get(transport, ()))


def fed_modalities(specs: Iterable[str]) -> set[str] | None:
    """The modalities the configured sources can feed; None when a source's kind does not say.

    A framed protocol (or a kind not in SPEC_MODALITIES) may carry any stream, so then every
    model is loaded. Otherwise a model no source can feed is not loaded at all: on a wrist-only
    device the face model, OpenCV and the face detector would cost memory and start-up time for
    nothing.
    """
    fed: set[str] = set()
    for spec in specs:
        modalities = spec_modalities(spec)
        if not modalities:
            return None
        fed |= set(modalities)
    return fed


@dataclass(frozen=True)
class OutgoingState:
    """A state ready to publish, with its fresh modality estimates and when its data completed."""

    payload: dict[str, Any]
    fresh: dict[str, ModalityEstimate]
    completed_perf: float  # time.perf_counter() when the block that completed the window arrived
    state: FusedState


@dataclass
class _Stream:
    buffer: StreamBuffer
    rate_hz: float
    channels: tuple[str, ...]
    ended: bool = False


@dataclass
class _Frames:
    """Camera frames of the face modality, admitted at most ``max_frames`` per hop (bounded)."""

    min_gap_s: float
    frames: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))
    last_time: float | None = None
    ended: bool = False


def fusion_params(fusion: FusionConfig) -> FusionParams:
    """The fusion rule's parameters from the ``[fusion]`` config section."""
    return FusionParams(reliability={m: fusion.reliability.for_modality(m) for m in MODALITIES},
                        smoothing_tau_s=fusion.smoothing_tau_s, stress_threshold=fusion.stress_threshold,
                        calm_threshold=fusion.calm_threshold, neutral_radius=fusion.neutral_radius,
                        negative_valence=fusion.negative_valence,
                        min_dimension_confidence=fusion.min_dimension_confidence,
                        uncertain_below=fusion.uncertain_below, label_hysteresis=fusion.label_hysteresis,
                        confirm_s=fusion.confirm_s, min_dwell_s=fusion.min_dwell_s)


class Pipeline:
    """Blocks in, states out; pure apart from the models it runs. See the module docstring."""

    def __init__(self, config: Config, estimators: dict[str, Estimator], expected: set[str] | None = None,
                 missing_reasons: dict[str, str] | None = None):
        self.config = config
        self.estimators = estimators
        self.static_reasons: dict[str, str] = dict(missing_reasons or {})  # model/source failures
        # modalities the sources feed (or would have fed): only these are reported missing
        self.expected: set[str] = set(expected if expected is not None else estimators)
        self.streams: dict[str, _Stream] = {}
        self.frames: _Frames | None = None
        self.clocks: dict[str, WindowClock] = {m: WindowClock(e.window) for m, e in estimators.items()}
        self.latest: dict[str, collections.deque[ModalityEstimate]] = {m: collections.deque(maxlen=8) for m in estimators}
        self.reasons: dict[str, str] = {}  # the latest reason a modality's window gave no estimate
        self.published_upto: dict[str, float] = {}  # newest estimate ts already sent as a modality payload
        fusion = config.fusion
        self.params = fusion_params(fusion)
        self.smoother = Smoother(fusion.smoothing_tau_s)
        self.labels = LabelHolder(self.params)
        self.calibrator = Calibrator(config.calibration.rest_s, config.calibration.rest_stress)
        self._fusion_grid: HopGrid | None = None
        self.last_fusion: float | None = None
        self.windows_done = 0
        self.estimate_seconds: dict[str, float] = collections.defaultdict(float)  # CPU per modality
        self.windows_by_modality: dict[str, int] = collections.defaultdict(int)
        self.ignored_streams: set[str] = set()
        self.refused_streams: set[str] = set()  # blocks with times outside the unix range: said once
        self._stating = False  # whether the last fusion produced a state (log transitions only)

    @property
    def next_fusion(self) -> float | None:
        return None if self._fusion_grid is None else self._fusion_grid.next

    # -- models ----------------------------------------------------------------------------------
    def models(self) -> dict[str, str]:
        """Versions of the loaded models of the modalities the sources feed."""
        return {m: e.version for m, e in sorted(self.estimators.items()) if m in self.expected}

    def add_reason(self, modality: str, reason: str) -> None:
        """A modality is out for good (its source failed): report it, stop expecting estimates."""
        self.static_reasons[modality] = reason
        self.expected.add(modality)

    # -- ingest ------------------------------------------------------------------------------------
    def ingest(self, block: SampleBlock | FrameBlock, completed_perf: float | None = None) -> list[OutgoingState]:
        """Buffer one block; run the windows it completes; return the fusion states now due."""
        completed_perf = time.perf_counter() if completed_perf is None else completed_perf
        modality = STREAM_TO_MODALITY.get(block.stream)
        if modality is None:
            if block.stream not in self.ignored_streams:
                self.ignored_streams.add(block.stream)
                log.info("stream %r feeds no modality; ignored", block.stream)
            return []
        if modality in self.config.daemon.modalities:
            self.expected.add(modality)
        if modality not in self.estimators:
            return []
        if isinstance(block, SampleBlock) and block.n > 1:
            pieces = split_block(block)
            if len(pieces) > 1:  # a long block: buffered a piece at a time, so no window loses its start
                return [state for piece in pieces for state in self.ingest(piece, completed_perf)]
        if isinstance(block, FrameBlock):
            self._ingest_frame(block)
            data_end = block.ts_unix
            first = block.ts_unix
        else:
            if block.n == 0:
                return []
            stream = self._stream_for(block, modality)
            if stream is None:
                return []
            times = block_times(block)
            first = float(times[0])
            if not (is_unix_time(first) and is_unix_time(float(times[-1]))):
                if block.stream not in self.refused_streams:  # a decoder's bug or a corrupt clock: say it once
                    self.refused_streams.add(block.stream)
                    log.warning("stream %s: block at %r..%r is outside 1900..2100 (unix s); dropped",
                                block.stream, first, float(times[-1]))
                return []
            last = stream.buffer.last_time
            stream.buffer.lost_samples += int(block.lost_samples)
            stream.buffer.append(times, block.data)
            if block.stream in AUXILIARY_STREAMS:
                return []  # read beside the modality's own streams, which alone drive its windows
            data_end = block.end_unix
            if last is not None and first - last > self.clocks[modality].spec.length_s:
                self.clocks[modality].skip_gap(first)
        clock = self.clocks[modality]
        clock.start(first)
        self.calibrator.start(first)
        for end in clock.advance(data_end):
            self._run_window(modality, end)
        return self._fuse_due(self._watermark(), completed_perf)

    def _stream_for(self, block: SampleBlock, modality: str) -> _Stream | None:
        stream = self.streams.get(block.stream)
        if stream is None:
            length = self.estimators[modality].window.length_s
            rate = block.rate_hz if block.rate_hz > 0 else IBI_NOMINAL_RATE_HZ
            n_channels = int(block.data.shape[1]) if block.data.ndim == 2 else 1
            capacity = buffer_capacity(rate, length) if math.isfinite(rate) else -1
            if not 0 < capacity * max(n_channels, 1) * 2 * 12 <= MAX_STREAM_BUFFER_BYTES:  # float32 + float64 time
                if block.stream not in self.refused_streams:
                    self.refused_streams.add(block.stream)
                    log.error("stream %s: %g Hz x %d channel(s) x %g s window needs more than %d MB; ignored",
                              block.stream, rate, n_channels, length, MAX_STREAM_BUFFER_BYTES >> 20)
                return None
            stream = _Stream(StreamBuffer(buffer_capacity(rate, length), n_channels), float(block.rate_hz),
                             tuple(block.channels))
            self.streams[block.stream] = stream
            log.info("stream %s: %s, %d channel(s) %s -> %s", block.stream,
                     f"{block.rate_hz:g} Hz" if block.rate_hz else "events",
                     n_channels, ",".join(block.channels), modality)
        elif (block.data.shape[1] if block.data.ndim == 2 else 1) != stream.buffer.n_channels:
            log.warning("stream %s: block with %d channels, expected %d; dropped", block.stream,
                        block.data.shape[1], stream.buffer.n_channels)
            return None
        return stream

    def _ingest_frame(self, block: FrameBlock) -> None:
        if self.frames is None:
            est = self.estimators["face"]
            max_frames = getattr(est, "max_frames", 5)
            self.frames = _Frames(min_gap_s=est.window.hop_s / max_frames * 0.9,
                                  frames=collections.deque(maxlen=max(8, int(math.ceil(
                                      max_frames * est.window.length_s / est.window.hop_s)) + 2)))
        f = self.frames
        if f.last_time is not None and block.ts_unix < f.last_time + f.min_gap_s:
            return  # more frames than the face model needs: skip (cheap, before any conversion)
        image = block.image
        if image.ndim == 3:
            import cv2  # noqa: PLC0415 - only with a camera

            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        f.frames.append((block.ts_unix, image))
        f.last_time = block.ts_unix

    def _windows_for(self, modality: str, end: float) -> dict[str, Any]:
        length = self.estimators[modality].window.length_s
        start = end - length
        if modality == "face":
            if self.frames is None:
                return {}
            chosen = [(t, img) for t, img in self.frames.frames if start <= t < end + 1e-9]
            return {"video": FrameWindow(start, end, [t for t, _ in chosen], [img for _, img in chosen])}
        out = {}
        for name in MODALITY_STREAMS[modality] + AUX_STREAMS.get(modality, ()):
            stream = self.streams.get(name)
            if stream is None:
                continue
            times, values = stream.buffer.window(start, end)
            out[name] = StreamWindow(name, start, end, stream.rate_hz, times, values, stream.channels)
        return out

    def _run_window(self, modality: str, end: float) -> None:
        windows = self._windows_for(modality, end)
        t0 = time.process_time()
        try:
            estimate = self.estimators[modality].estimate(end, windows)
        except EstimateUnavailable as exc:
            if self.reasons.get(modality) != str(exc):
                log.info("%s: no estimate at %.1f: %s", modality, end, exc)
            self.reasons[modality] = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in one modality must not stop the others
            reason = f"estimator error: {type(exc).__name__}: {exc}"
            if self.reasons.get(modality) != reason:  # once per distinct failure, not every window
                log.error("%s: estimator failed at %.1f: %s: %s", modality, end, type(exc).__name__, exc)
            self.reasons[modality] = reason
            return
        finally:
            self.estimate_seconds[modality] += time.process_time() - t0
            self.windows_done += 1
            self.windows_by_modality[modality] += 1
        if self.reasons.pop(modality, None) is not None:
            log.info("%s: estimates again from %.1f", modality, end)
        self.latest[modality].append(self.calibrator.apply(estimate))
        if self._fusion_grid is None:  # fusion grid: first data time + k x fusion hop, from the first estimate on
            hop = self.config.fusion.hop_s
            anchor = self.calibrator.start_unix if self.calibrator.start_unix is not None else end
            self._fusion_grid = HopGrid(anchor, hop, math.ceil((end - anchor) / hop - 1e-9))

    # -- fusion -----------------------------------------------------------------------------------
    def _data_ends(self) -> list[float]:
        ends = [s.buffer.last_time for s in self.streams.values() if not s.ended and s.buffer.last_time is not None]
        if self.frames is not None and not self.frames.ended and self.frames.last_time is not None:
            ends.append(self.frames.last_time)
        return ends

    def _watermark(self) -> float | None:
        """The source time up to which every live stream has delivered (laggards beyond max_lag_s excluded)."""
        ends = self._data_ends()
        if not ends:
            return None
        newest = max(ends)
        return min(e for e in ends if e >= newest - self.config.fusion.max_lag_s)

    def _fuse_due(self, watermark: float | None, completed_perf: float) -> list[OutgoingState]:
        out: list[OutgoingState] = []
        if watermark is None:
            return out
        grid = self._fusion_grid
        if grid is None:
            return out
        hop = self.config.fusion.hop_s
        due = grid.due(watermark)  # counted, not stepped: no loop depends on float progress
        # a gap in the data, or sources on different clocks: skip the empty stretch
        keep = min(MAX_DUE_PER_STEP, int(max(self.config.fusion.max_lag_s, 10 * hop) / hop) + 1)
        if due > keep:
            grid.skip(due - keep)
            due = keep
        for t in grid.take(due):
            state = self.fuse_at(t, completed_perf)
            if state is not None:
                out.append(state)
        return out

    def stale_after_s(self, modality: str) -> float:
        est = self.estimators[modality]
        return self.config.fusion.stale_hops * est.window.hop_s + self.config.fusion.stale_slack_s

    def fuse_at(self, t: float, completed_perf: float) -> OutgoingState | None:
        """Fuse each modality's latest estimate at source time ``t``; None (logged) if nothing usable."""
        chosen: dict[str, ModalityEstimate] = {}
        staleness: dict[str, float] = {}
        missing: dict[str, str] = {}
        for m in sorted(self.expected):
            if m in self.static_reasons:
                missing[m] = self.static_reasons[m]
                continue
            history = self.latest.get(m)
            candidates = [e for e in (history or ()) if e.ts_unix <= t + 1e-6]
            if not candidates:
                missing[m] = self.reasons.get(m) or ("no data" if m not in self._fed_modalities() else "warming up: first window not complete")
                continue
            est = candidates[-1]
            age = t - est.ts_unix
            limit = self.stale_after_s(m)
            if age > limit:
                why = self.reasons.get(m)
                missing[m] = f"stale: last estimate {age:.0f} s old" + (f" ({why})" if why else "")
                continue
            chosen[m] = est
            staleness[m] = staleness_factor(age - est.hop_s, limit) if age > est.hop_s else 1.0
        self.last_fusion = t
        fused = fuse(chosen, t, self.params, staleness)
        if fused is None:  # nothing usable: no state is published (a state of confidence 0 would be noise)
            if self._stating:
                why = (f"every modality has weight 0 ({', '.join(sorted(chosen))})" if chosen else
                       "; ".join(f"{m}: {r}" for m, r in sorted(missing.items())) or "no modality")
                log.warning("no states from %.1f on: %s", t, why)
            self._stating = False
            return None
        if not self._stating:
            log.info("states from %.1f on: %s", t, ", ".join(sorted(chosen)))
            self._stating = True
        fused = self.labels(self.smoother(fused))
        payload = fused.to_payload(missing, self.models(), self.calibrator.is_calibrated(t))
        fresh = {m: e for m, e in chosen.items() if e.ts_unix > self.published_upto.get(m, -math.inf)}
        for m, e in fresh.items():
            self.published_upto[m] = e.ts_unix
        return OutgoingState(payload, fresh, completed_perf, fused)

    def _fed_modalities(self) -> set[str]:
        fed = {STREAM_TO_MODALITY[s] for s in self.streams}
        if self.frames is not None:
            fed.add("face")
        return fed

    # -- end of data -------------------------------------------------------------------------------
    def end_streams(self, streams: tuple[str, ...] | list[str]) -> list[OutgoingState]:
        """Streams that will deliver nothing more (their source ended or failed): stop waiting for them."""
        for name in streams:
            if name in self.streams:
                self.streams[name].ended = True
            if name == "video" and self.frames is not None:
                self.frames.ended = True
        return self._fuse_due(self._watermark(), time.perf_counter())

    def finish(self) -> list[OutgoingState]:
        """All sources done: run each modality's last partial window, then the last fusions."""
        now = time.perf_counter()
        final_end = None
        for m, clock in self.clocks.items():
            ends = [self.streams[s].buffer.last_time for s in MODALITY_STREAMS[m] if s in self.streams
                    and self.streams[s].buffer.last_time is not None]
            if m == "face" and self.frames is not None and self.frames.last_time is not None:
                ends.append(self.frames.last_time)
            if not ends:
                continue
            data_end = max(ends)
            for end in clock.advance(data_end):
                self._run_window(m, end)
            end = clock.final(data_end)
            if end is not None:
                self._run_window(m, end)
            last = clock.last_end
            if last is not None:
                final_end = last if final_end is None else max(final_end, last)
        out: list[OutgoingState] = []
        if final_end is None or self.next_fusion is None:
            return out
        out.extend(self._fuse_due(final_end, now))
        if self.last_fusion is None or final_end > self.last_fusion + 1e-6:
            state = self.fuse_at(final_end, now)
            if state is not None:
                out.append(state)
        return out


# -- assembling the pipeline ---------------------------------------------------------------------

def estimator_for(config: Config, modality: str, model: Any) -> Estimator:
    """The daemon's estimator for one loaded model, with the config's window and face settings (tools use it too)."""
    return make_estimator(modality, model, window_spec(config, modality, model.manifest),
                          max_frames=config.face.max_frames_per_window, min_face_px=config.face.min_face_px,
                          detect_width_px=config.face.detect_width_px, face_detector=config.face.detector,
                          zoom_tiles=config.face.zoom_tiles, num_threads=config.models.num_threads)


def load_estimators(config: Config, only: set[str] | None = None) -> tuple[dict[str, Estimator], dict[str, str]]:
    """Load, verify and wrap each configured modality's model; (estimators, reasons for the rest).

    ``only``: load just these modalities (``fed_modalities``); None loads every configured one.
    """
    import os  # noqa: PLC0415

    from edge.models import TFLiteModel  # noqa: PLC0415

    if config.models.dir:
        os.environ["EMOTION_EDGE_MODELS_DIR"] = config.models.dir
    estimators: dict[str, Estimator] = {}
    reasons: dict[str, str] = {}
    for m in MODALITIES:
        if m not in config.daemon.modalities or (only is not None and m not in only):
            continue
        try:
            model = TFLiteModel(m, num_threads=config.models.num_threads)
            estimators[m] = estimator_for(config, m, model)
            window = estimators[m].window
            log.info("model %s %s loaded (%s, window %g s, hop %g s)", m, model.version, model.runtime,
                     window.length_s, window.hop_s)
        except MissingExtraError as exc:  # face without OpenCV: a camera source says so as an error itself
            log.info("model %s: not loaded: %s", m, exc)
            reasons[m] = f"model not loaded: {exc}"
        except EmotionEdgeError as exc:
            log.error("%s", exc)
            reasons[m] = f"model not loaded: {exc}"
        except Exception as exc:  # noqa: BLE001 - e.g. cv2 missing for face: that modality only
            log.error("model %s: cannot be used: %s: %s", m, type(exc).__name__, exc)
            reasons[m] = f"model not loaded: {type(exc).__name__}: {exc}"
    return estimators, reasons


def window_spec(config: Config, modality: str, manifest: dict[str, Any]) -> WindowSpec:
    """Window length/hop: the config's, else the model manifest's, else the built-in default."""
    pre = manifest.get("preprocessing", {}) or {}
    default_len, default_hop = DEFAULT_WINDOWS[modality]
    cfg = config.windows.for_modality(modality)
    length = cfg.length_s or float(pre.get("window_s") or default_len)
    hop = cfg.hop_s or float(pre.get("hop_s") or default_hop)
    if not (MIN_HOP_S <= length <= MAX_WINDOW_S and MIN_HOP_S <= hop <= MAX_HOP_S):  # a manifest is outside input too
        raise ModelIntegrityError(f"model {modality}: window {length:g} s / hop {hop:g} s outside "
                                  f"{MIN_HOP_S:g}..{MAX_WINDOW_S:g} s / {MIN_HOP_S:g}..{MAX_HOP_S:g} s")
    return WindowSpec(length, min(hop, length))


# -- the asyncio daemon --------------------------------------------------------------------------

@dataclass
class DaemonResult:
    states: int = 0
    windows: int = 0
    latencies_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100_000))  # arrival -> publish_state returned
    ready_perf: float | None = None
    estimate_cpu_s: dict[str, float] = field(default_factory=dict)  # features + inference CPU per modality
    models: dict[str, str] = field(default_factory=dict)


async def run_daemon(config: Config, *, on_ready: Callable[[], None] | None = None,
                     on_state: Callable[[int, OutgoingState], None] | None = None,
                     stop_event: asyncio.Event | None = None, install_signals: bool = True) -> DaemonResult:
    """Run until the sources end, ``duration_s`` passes or a signal arrives; publish offline; return figures."""
    result = DaemonResult()
    loop = asyncio.get_running_loop()
    stop = stop_event or asyncio.Event()
    taps = _open_taps(config)  # recorder and LSL outlet (edge.record), None when neither is on
    publisher = _make_publisher(config)  # checks the broker URL and TLS files before anything is opened
    estimators, reasons = load_estimators(config, only=fed_modalities(config.daemon.sources))
    sources, source_reasons = open_sources(config.daemon.sources, config.daemon.speed)
    expected: set[str] = set()
    for spec, reason in source_reasons.items():
        for m in spec_modalities(spec):
            if m in config.daemon.modalities:
                reasons[m] = f"{reasons[m]}; {reason}" if m in reasons else reason
    for src in sources:  # what an opened source declares; a failed one: guessed from its kind
        declared = {STREAM_TO_MODALITY[s] for s in getattr(src, "streams", ()) if s in STREAM_TO_MODALITY}
        expected |= declared or set(spec_modalities(getattr(src, "spec", "")))
    for spec in source_reasons:
        expected |= set(spec_modalities(spec))
    expected &= set(config.daemon.modalities)
    usable = [s for s in sources if not getattr(s, "streams", ()) or
              any(STREAM_TO_MODALITY.get(k) in estimators for k in s.streams)]
    if not sources or not estimators or not usable:
        for src in sources:
            await _close_source(src)
        publisher.stop(timeout_s=0.0)  # never started: just closes the outbox
        if taps:
            taps.close()
        relevant = {k: v for k, v in reasons.items() if k in expected}
        why = "; ".join(list(source_reasons.values()) + [f"{k}: {v}" for k, v in relevant.items()])
        why = why or "no source feeds a loaded model"
        raise EmotionEdgeError(f"nothing can run ({why})")
    pipeline = Pipeline(config, estimators, expected, reasons)
    baseline_file = store_path(config.daemon.state_dir, config.daemon.device_id)
    load_baselines(baseline_file, estimators)
    publisher.start()
    await _wait_connected(publisher, 3.0)
    result.ready_perf = time.perf_counter()
    log.info("running: %d source(s), modalities %s; publishing to %s as %s", len(sources),
             ", ".join(sorted(estimators)), _safe_url(config.mqtt.broker), config.daemon.device_id)
    if on_ready is not None:
        on_ready()
    sdnotify.ready(f"running: {', '.join(sorted(estimators))} from {len(sources)} source(s)")
    watchdog_task = None
    interval = sdnotify.watchdog_interval_s()
    if interval:
        async def pet_watchdog() -> None:  # proves the event loop (and so the pipeline) is not stuck
            while True:
                sdnotify.watchdog()
                await asyncio.sleep(interval)

        watchdog_task = asyncio.create_task(pet_watchdog())

    metrics = _start_metrics(config)
    metrics_task = asyncio.create_task(_refresh_metrics(metrics, config, sources, publisher, pipeline)) if metrics else None

    executor = None
    if "face" in estimators:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="estimate")
    lock = asyncio.Lock()

    async def keep_baselines() -> None:  # so a restart resumes them (edge.baseline_store)
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            async with lock:
                await loop.run_in_executor(None, save_baselines, baseline_file, estimators)

    baseline_task = asyncio.create_task(keep_baselines())
    taps_task = asyncio.create_task(taps.watch(sources)) if taps else None

    withheld = 0  # states of a source's primed past: computed, not published

    def primed_until() -> float | None:
        ends = [t for t in (getattr(s, "primed_until_unix", None) for s in sources) if t is not None]
        return max(ends) if ends else None

    def publish(states: list[OutgoingState]) -> None:
        nonlocal withheld
        past_until = primed_until() if states else None
        for item in states:
            if past_until is not None and float(item.payload["ts"]) < past_until - 1e-6:
                withheld += 1  # the source's past, produced at once: it settles the label, it is not news
                continue
            if withheld:
                log.info("%d states of the sources' primed past computed, not published", withheld)
                withheld = 0
            seq = publisher.publish_state(item.payload)
            result.latencies_s.append(time.perf_counter() - item.completed_perf)
            result.states += 1
            if config.mqtt.publish_modalities:
                for name, est in item.fresh.items():
                    publisher.publish_modality(name, {"seq": seq, "ts": est.ts_unix, "modality": name,
                                                      "quality": round(est.quality, 4), "outputs": dict(est.outputs),
                                                      "model_version": est.model_version})
            if metrics is not None:
                registry = metrics[0]
                registry.inc("emotion_edge_states_published_total")
                for name, est in item.fresh.items():
                    registry.set("emotion_edge_modality_quality", est.quality, modality=name)
            if taps:
                taps.on_state(seq, item)
            if on_state is not None:
                on_state(seq, item)
            log.debug("state %d at %.1f: %s", seq, item.payload["ts"], item.payload["label"])

    async def pump(source: Any) -> None:
        spec = getattr(source, "spec", "?")
        seen: set[str] = set()
        n = 0
        failure = None
        errors_noted = 0
        try:
            async for block in source.blocks():
                if stopping:  # a source that swallowed its cancellation still stops here
                    break
                seen.add(block.stream)
                if taps:
                    taps.on_block(source, block)
                stream_errors = getattr(source, "stream_errors", None)
                if stream_errors and len(stream_errors) > errors_noted:
                    errors_noted = len(stream_errors)  # a file left out beside good ones: name it in `missing`
                    for stream, why in list(stream_errors.items()):
                        if STREAM_TO_MODALITY.get(stream) and stream not in AUXILIARY_STREAMS:
                            pipeline.add_reason(STREAM_TO_MODALITY[stream], f"source {spec}: {why}")
                arrived = time.perf_counter()
                if isinstance(block, FrameBlock) and executor is not None:
                    async with lock:
                        states = await loop.run_in_executor(executor, pipeline.ingest, block, arrived)
                else:
                    async with lock:
                        states = pipeline.ingest(block, arrived)
                publish(states)
                n += 1
                if n % 64 == 0:
                    await asyncio.sleep(0)  # let signals, timers and the other sources in
            log.info("source %s ended", spec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing source must not stop the others
            log.error("source %s failed: %s", spec, _one_line(exc))
            failure = _one_line(exc)
            failed_sources.append(f"source {spec} failed: {_one_line(exc)}")
            for m in spec_modalities(spec) or {STREAM_TO_MODALITY.get(s) for s in seen}:
                if m:
                    pipeline.add_reason(m, f"source {spec} failed: {_one_line(exc)}")
        finally:
            if taps:
                taps.on_source_end(source, failure)
            streams = set(seen) | set(getattr(source, "streams", ()))
            async with lock:
                publish(pipeline.end_streams(sorted(streams)))

    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
    stopping = False
    failed_sources: list[str] = []  # each source that raised, in one line
    tasks = [asyncio.create_task(pump(s), name=f"source {getattr(s, 'spec', '?')}") for s in sources]
    all_done = asyncio.ensure_future(asyncio.gather(*tasks, return_exceptions=True))
    stopper = asyncio.create_task(stop.wait())
    waiters = {all_done, stopper}
    duration = config.daemon.duration_s
    timeout = None if math.isinf(duration) else duration
    done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    ended_naturally = all_done in done
    if not ended_naturally:
        log.info("stopping (%s)", "signal" if stopper in done else f"duration {duration:g} s reached")
        stopping = True
        await _cancel_all(tasks, timeout_s=5.0)
    all_done.cancel()
    stopper.cancel()
    sdnotify.stopping()
    for src in sources:
        await _close_source(src)
    async with lock:
        publish(pipeline.finish())
    baseline_task.cancel()
    if taps_task is not None:
        taps_task.cancel()
    if taps is not None:
        taps.close()  # the last chunk's files
    save_baselines(baseline_file, estimators)
    if executor is not None:
        executor.shutdown(wait=True)
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
    if watchdog_task is not None:
        watchdog_task.cancel()
    if metrics_task is not None:
        metrics_task.cancel()
        _update_metrics(metrics, config, sources, publisher, pipeline)
        if metrics[1] is not None:
            metrics[1].stop()
    result.windows = pipeline.windows_done
    result.estimate_cpu_s = dict(pipeline.estimate_seconds)
    result.models = {m: e.version for m, e in sorted(estimators.items())}  # loaded (whether fed or not)
    await loop.run_in_executor(None, lambda: publisher.stop(timeout_s=5.0))
    log.info("stopped: %d states published, %d windows", result.states, result.windows)
    if ended_naturally and len(failed_sources) == len(sources):
        # nothing is left running because everything failed: a non-zero exit, so a supervisor
        # (systemd Restart=on-failure) starts it again, rather than "all done"
        raise EmotionEdgeError(f"nothing can run: every source failed ({'; '.join(failed_sources)})")
    return result


def _open_taps(config: Config) -> Any:
    if not config.record.dir and not config.lsl.enabled:
        return None
    from edge.record import open_taps  # noqa: PLC0415

    return open_taps(config)


def _start_metrics(config: Config) -> tuple[Any, Any] | None:
    """(registry, HTTP server or None) when metrics are enabled or a textfile is configured."""
    m = config.metrics
    if not m.enabled and not m.textfile:
        return None
    from edge.metrics import MetricsRegistry, MetricsServer, describe_daemon_metrics  # noqa: PLC0415

    registry = describe_daemon_metrics(MetricsRegistry())
    server = None
    if m.enabled:
        try:
            server = MetricsServer(registry, m.host, m.port).start()
        except OSError as exc:
            log.error("metrics: cannot serve on %s:%d: %s", m.host, m.port, exc)
    return registry, server


def _update_metrics(metrics: tuple[Any, Any], config: Config, sources: list[Any], publisher: Any,
                    pipeline: Pipeline) -> None:
    registry = metrics[0]
    for modality, n in pipeline.windows_by_modality.items():
        registry.set("emotion_edge_windows_processed_total", n, modality=modality)
    for src in sources:
        stats = getattr(src, "stats", None)
        if stats is not None:
            spec = getattr(src, "spec", "?")
            registry.set("emotion_edge_lost_packets_total", stats.lost, source=spec)
            registry.set("emotion_edge_decode_errors_total", stats.decode_errors, source=spec)
    pub = publisher.stats() if hasattr(publisher, "stats") else {}
    if pub.get("last_publish_latency_ms") is not None:
        registry.set("emotion_edge_publish_latency_seconds", pub["last_publish_latency_ms"] / 1000.0)
    registry.set("emotion_edge_outbox_depth", pub.get("outbox_depth", 0))
    registry.set("emotion_edge_mqtt_connected", 1.0 if pub.get("connected") else 0.0)
    if config.metrics.textfile:
        try:
            registry.write_textfile(Path(config.metrics.textfile))
        except OSError as exc:
            log.warning("metrics: cannot write %s: %s", config.metrics.textfile, exc)


async def _refresh_metrics(metrics: tuple[Any, Any], config: Config, sources: list[Any], publisher: Any,
                           pipeline: Pipeline) -> None:
    while True:
        _update_metrics(metrics, config, sources, publisher, pipeline)
        await asyncio.sleep(config.metrics.interval_s)


def open_sources(specs: tuple[str, ...], speed: float | None) -> tuple[list[Any], dict[str, str]]:
    """Open each source spec; (opened sources, {spec: reason} for those that could not be opened)."""
    from firmware_bridge.devices import open_source  # noqa: PLC0415

    sources, reasons = [], {}
    for spec in specs:
        try:
            sources.append(open_source(spec, speed))
        except Exception as exc:  # noqa: BLE001 - one bad source must not stop the others
            log.error("source %s: cannot open: %s", spec, _one_line(exc))
            reasons[spec] = f"source {spec} not opened: {_one_line(exc)}"
    return sources, reasons


async def _cancel_all(tasks: list[asyncio.Task], timeout_s: float) -> None:
    """Cancel the source tasks and wait for them, re-cancelling (a cancellation can be lost in a race
    inside ``asyncio.wait_for`` on Python < 3.12: the transports avoid it from 3.11 on, see
    ``firmware_bridge.transports.aio``, but 3.10 and third-party code may not); a task still running
    after ``timeout_s`` is left."""
    deadline = time.monotonic() + timeout_s
    pending = {t for t in tasks if not t.done()}
    while pending and time.monotonic() < deadline:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.25)
    for t in pending:
        log.warning("%s did not stop within %g s; leaving it", t.get_name(), timeout_s)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and not isinstance(exc, EmotionEdgeError) else (text[0] if text else type(exc).__name__)


def _safe_url(url: str) -> str:
    from edge.config import mask_password  # noqa: PLC0415

    return mask_password(url)


async def _close_source(source: Any) -> None:
    try:
        await asyncio.wait_for(source.close(), timeout=3.0)
    except Exception as exc:  # noqa: BLE001 - closing is best effort, but say so
        log.warning("source %s: close failed: %s", getattr(source, "spec", "?"), _one_line(exc))


def _make_publisher(config: Config) -> Any:
    from edge.config import broker_address  # noqa: PLC0415
    from edge.publish import StatePublisher  # noqa: PLC0415

    m = config.mqtt
    state_dir = Path(config.daemon.state_dir).expanduser()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmotionEdgeError(f"state dir {state_dir}: cannot create ({exc.strerror or exc})") from None
    return StatePublisher(broker_address(m), config.daemon.device_id, topic_prefix=m.topic_prefix,
                          state_dir=state_dir, client_id=m.client_id or None, ca_file=m.ca_file or None,
                          cert_file=m.cert_file or None, key_file=m.key_file or None,
                          allow_plaintext_remote=m.allow_plaintext_remote, protocol=m.protocol,
                          max_bytes=m.outbox_max_bytes, retained_on_connect=_homeassistant_discovery(config))


def _homeassistant_discovery(config: Config) -> list[tuple[str, bytes]]:
    """Home Assistant discovery configs, re-published (retained) on every connect, if enabled."""
    if not config.homeassistant.enabled:
        return []
    from edge import package_version  # noqa: PLC0415
    from edge.homeassistant import discovery_messages  # noqa: PLC0415

    return discovery_messages(config.daemon.device_id, topic_prefix=config.mqtt.topic_prefix,
                              discovery_prefix=config.homeassistant.discovery_prefix, sw_version=package_version(),
                              modalities=tuple(config.daemon.modalities))


async def _wait_connected(publisher: Any, timeout_s: float) -> None:
    """Give the background connect a moment (start-up figure); publishing works regardless (outbox)."""
    probe = getattr(publisher, "wait_connected", None)
    if probe is not None:
        await asyncio.get_running_loop().run_in_executor(None, probe, timeout_s)
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not getattr(publisher, "connected", True):
        await asyncio.sleep(0.01)

