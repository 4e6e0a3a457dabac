"""Per-modality estimators: a window of samples -> features -> model -> ``ModalityEstimate``.

One estimator per modality; each takes the windows of the streams feeding it (``StreamWindow``,
cut from the ring buffers on the source clock) and returns a frozen ``ModalityEstimate`` or
raises ``EstimateUnavailable`` with the reason (too few beats, no face in view, ...), which the
daemon reports in the state's ``missing_reasons``. Features come from ``edge.features`` — the
same code the models were trained on.

Confidence (how sure the model is, [0, 1]):
- stress models (eda, cardiac): 0.2 + 0.8 |2p - 1| — a p of 0.5 says little but is not nothing;
- face: the mean top-class probability over the scored frames;
- eeg (valence/arousal regression): (0.5 + 0.5 min(1, |(v, a)|)) x how full its trailing baseline
  is (``max(0.2, baseline seconds / EEG_BASELINE_FULL_S)``), v, a being the baseline-relative values.
Quality ([0, 1]): the feature module's signal quality x the window's data coverage
(``edge.quality.combine_quality``). Where the wrist's accelerometer is streamed (``acc``, e.g. an
E4 replay), eda and cardiac quality is further multiplied by ``edge.features.wrist.motion_weight``
of the share of the window's last minute in which the wrist moved (1 at rest, 0.25 if it moved
throughout): movement raises skin conductance and heart rate without stress, so such windows weigh
less in fusion. Their ``outputs`` then carry ``motion_share``. The trailing baseline still takes
windows by their signal quality alone, as in training. Without ``acc`` nothing changes.

A model whose manifest has ``preprocessing.trailing_baseline`` (eda, cardiac from 1.1.0) takes
each window's features beside their deviation from the same stream's trailing mean
(``edge.features.baseline``); the estimator keeps that per-stream history, so it must see the
windows in time order, as the daemon gives them.

EEG is read against the wearer's own trailing baseline too, but on the model's *outputs*: the
eeg model (trained on DEAP with no baseline input) gives an absolute valence/arousal whose
offset differs from person to person and headset to headset (frontal alpha asymmetry has a
large, stable individual offset). The estimate's valence/arousal are the outputs minus their
mean over the trailing ``EEG_BASELINE_SPAN_S`` of usable windows (the "now" being the mean of
the last ``EEG_AVERAGE_S``, since one 4-s window is noisy) (the model's absolute values stay
in ``outputs`` as ``valence_absolute``/``arousal_absolute``). A long stretch in one state thus
drifts towards 0 (the new normal): eeg reports change against the wearer's recent past, not a
level. The baseline is saved and resumed across restarts like eda/cardiac's
(``edge.baseline_store``). Face keeps its absolute reading (an expression is already relative to
a neutral face).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edge.features.baseline import TRAILING_SPAN_S, TrailingBaseline, input_names, trailing_span_s
from edge.fusion import ModalityEstimate
from edge.quality import combine_quality, coverage
from edge.windows import WindowSpec

log = logging.getLogger(__name__)

__all__ = ["ModalityEstimate", "EstimateUnavailable", "StreamWindow", "FrameWindow", "Estimator",
           "EdaEstimator", "CardiacEstimator", "EegEstimator", "FaceEstimator", "DEFAULT_WINDOWS",
           "MODALITY_STREAMS", "AUX_STREAMS", "make_estimator"]

# Streams feeding each modality, best first (a modality uses the best stream with a usable window).
MODALITY_STREAMS: dict[str, tuple[str, ...]] = {
    "eeg": ("eeg",),
    "cardiac": ("ecg", "bvp", "ibi"),
    "eda": ("eda",),
    "face": ("video",),
}
# Streams a modality's estimator also reads, beside its own: the wrist's movement, which explains
# EDA and heart-rate changes that are not stress (skin temperature rides along with eda; no shipped
# model reads it yet, see docs/wrist.md).
AUX_STREAMS: dict[str, tuple[str, ...]] = {"eda": ("temp", "acc"), "cardiac": ("acc",)}
# (length_s, hop_s) when neither the config nor the model's manifest says.
DEFAULT_WINDOWS: dict[str, tuple[float, float]] = {
    "face": (1.0, 1.0), "eda": (60.0, 5.0), "cardiac": (60.0, 5.0), "eeg": (4.0, 2.0),
}


class EstimateUnavailable(Exception):
    """No estimate for this window; ``str(exc)`` is the reason shown in ``missing_reasons``."""


@dataclass(frozen=True)
class StreamWindow:
    """Samples of one stream in ``[start_unix, end_unix)``: values (n, channels), times (n,)."""

    stream: str
    start_unix: float
    end_unix: float
    rate_hz: float  # 0 for event streams (ibi)
    times: np.ndarray
    values: np.ndarray
    channels: tuple[str, ...] = ("ch0",)

    @property
    def coverage(self) -> float:
        if self.rate_hz <= 0:
            return 1.0 if len(self.times) else 0.0
        return coverage(len(self.times), self.rate_hz, self.end_unix - self.start_unix)


@dataclass(frozen=True)
class FrameWindow:
    """Gray frames (uint8, 2-D) with their times in ``[start_unix, end_unix)``."""

    start_unix: float
    end_unix: float
    times: Sequence[float]
    frames: Sequence[np.ndarray]


class Estimator:
    """Base: holds the verified model and the window; subclasses turn windows into estimates."""

    modality = ""

    def __init__(self, model: Any, window: WindowSpec):
        self.model = model
        self.window = window
        self.version = str(getattr(model, "version", "0"))
        pre = (getattr(model, "manifest", None) or {}).get("preprocessing") or {}
        self._baseline_span_s = trailing_span_s(pre)
        self._baseline_quality_min = float(pre.get("quality_min", 0.0))
        self._baselines: dict[str, TrailingBaseline] = {}  # stream -> its trailing history

    def _model_input(self, stream: str, end_unix: float, features: np.ndarray, quality: float) -> np.ndarray:
        """The features as the model was trained on them: alone, or beside their trailing-baseline deviations."""
        if self._baseline_span_s <= 0:
            return features
        baseline = self._baselines.get(stream)
        if baseline is None:
            baseline = self._baselines[stream] = TrailingBaseline(self._baseline_span_s)
        return baseline.model_input(end_unix, features, usable=quality >= self._baseline_quality_min)

    def baseline_states(self) -> dict[str, dict]:
        """{stream: TrailingBaseline.state()} of the streams with a non-empty baseline (for a restart)."""
        return {stream: b.state() for stream, b in self._baselines.items() if len(b)}

    def _baseline_width(self) -> int:
        """How many values each row of this estimator's trailing baselines holds."""
        return len((self.model.manifest.get("preprocessing") or {}).get("feature_names") or ())

    def restore_baselines(self, states: Mapping[str, Any]) -> int:
        """Resume saved baselines (``baseline_states``); returns the windows restored. ValueError if unusable."""
        if self._baseline_span_s <= 0:
            return 0
        n_features = self._baseline_width()
        restored = {stream: TrailingBaseline.from_state(state, n_features) for stream, state in states.items()}
        for baseline in restored.values():
            baseline.span_s = self._baseline_span_s  # the model's span rules, whatever the file says
        self._baselines.update(restored)
        return sum(len(b) for b in restored.values())

    def _finish(self, end_unix: float, outputs: Mapping[str, Any], confidence: float, quality: float,
                **affect: float | None) -> ModalityEstimate:
        return ModalityEstimate(self.modality, float(end_unix), dict(outputs), confidence=float(np.clip(confidence, 0, 1)),
                                quality=float(np.clip(quality, 0, 1)), model_version=self.version,
                                window_s=self.window.length_s, hop_s=self.window.hop_s, **affect)

    def _predict(self, features: np.ndarray) -> np.ndarray:
        if not np.all(np.isfinite(features)):
            raise EstimateUnavailable("window too short or signal unusable for features")
        return np.asarray(self.model.predict(features), dtype=np.float32).reshape(-1)

    def estimate(self, end_unix: float, windows: Mapping[str, Any]) -> ModalityEstimate:
        raise NotImplementedError


def _stress_confidence(p: float) -> float:
    return 0.2 + 0.8 * abs(2.0 * p - 1.0)


def motion_share_of(windows: Mapping[str, Any]) -> float | None:
    """Share of the window's last minute in which the wrist moved, from its ``acc`` window (g); None without one."""
    w = windows.get("acc")
    if w is None or len(w.times) < 2 or w.rate_hz <= 0 or w.values.ndim != 2 or w.values.shape[1] != 3:
        return None
    from edge.features import wrist  # noqa: PLC0415 - numpy only

    return wrist.motion_share(w.values.astype(np.float64), w.rate_hz)


def _motion_gated(quality: float, outputs: dict[str, Any], windows: Mapping[str, Any]) -> float:
    """The estimate's quality down-weighted by movement (``motion_share`` added to ``outputs``)."""
    share = motion_share_of(windows)
    if share is None:
        return quality
    from edge.features import wrist  # noqa: PLC0415

    outputs["motion_share"] = round(share, 3)
    return quality * wrist.motion_weight(share)


class EdaEstimator(Estimator):
    modality = "eda"

    def __init__(self, model: Any, window: WindowSpec):
        super().__init__(model, window)
        from edge.features import eda  # noqa: PLC0415 - numpy only, imported when the model is

        self._features, self._quality = eda.eda_features, eda.eda_quality

    def estimate(self, end_unix: float, windows: Mapping[str, StreamWindow]) -> ModalityEstimate:
        w = windows.get("eda")
        if w is None or len(w.times) == 0:
            raise EstimateUnavailable("no eda samples in the window")
        x = w.values[:, 0].astype(np.float64)
        quality = combine_quality(self._quality(x, w.rate_hz), w.coverage)
        if quality <= 0:
            raise EstimateUnavailable(f"eda signal unusable (coverage {w.coverage:.0%})")
        features = self._model_input("eda", end_unix, self._features(x, w.rate_hz), quality)
        p = float(np.clip(self._predict(features)[0], 0.0, 1.0))
        outputs: dict[str, Any] = {"stress": round(p, 4)}
        quality = _motion_gated(quality, outputs, windows)
        return self._finish(end_unix, outputs, _stress_confidence(p), quality, stress=p)


class CardiacEstimator(Estimator):
    modality = "cardiac"

    def __init__(self, model: Any, window: WindowSpec):
        super().__init__(model, window)
        from edge.features import cardiac  # noqa: PLC0415

        self._c = cardiac
        self._beats: dict[str, tuple[np.ndarray, float]] = {}  # stream -> (sure beat times, sure up to)

    # Beats are found once, not once per window: a 300-s window slid by 5 s would otherwise run
    # the detector over the same samples 60 times. Each call detects on the new data plus
    # CONTEXT_S before it (the detector's filters and adaptive threshold settle within that),
    # keeps the beats it is sure of (older than EDGE_S before the window's end) and takes the
    # newest EDGE_S provisionally, to be re-detected with more context next time.
    CONTEXT_S = 10.0
    EDGE_S = 1.5

    def _detect(self, stream: str, signal: np.ndarray, rate_hz: float) -> np.ndarray:
        c = self._c
        beats = c.ecg_r_peaks(signal, rate_hz) if stream == "ecg" else c.bvp_beats(signal, rate_hz)
        beats = np.asarray(beats, dtype=np.int64)
        return beats[(beats >= 0) & (beats < len(signal))]

    def beat_times_of(self, w: StreamWindow) -> np.ndarray:
        """Beat times (unix s) in the window, reusing the beats found in earlier, overlapping windows."""
        cache = self._beats.get(w.stream)
        incremental = (cache is not None and w.start_unix <= cache[1] - self.CONTEXT_S and cache[1] <= w.end_unix)
        if incremental:
            known, sure_until = cache
            seg = w.times >= sure_until - self.CONTEXT_S
        else:
            known, sure_until = np.zeros(0), -np.inf
            seg = np.ones(len(w.times), bool)
        times = w.times[seg]
        found = times[self._detect(w.stream, w.values[seg, 0].astype(np.float64), w.rate_hz)] if len(times) > 8 else np.zeros(0)
        cutoff = w.end_unix - self.EDGE_S
        new_sure = found[(found >= sure_until) & (found < cutoff)]
        known = np.concatenate([known[known >= w.start_unix], new_sure])
        self._beats[w.stream] = (known, max(cutoff, sure_until))
        provisional = found[found >= max(cutoff, sure_until)]
        return np.concatenate([known, provisional])

    def ibi_of(self, w: StreamWindow) -> tuple[np.ndarray, np.ndarray]:
        """(IBIs in ms, time of the beat ending each IBI in unix s) from one stream's window."""
        if w.stream == "ibi":
            return w.values[:, 0].astype(np.float64), w.times.astype(np.float64)
        beat_times = self.beat_times_of(w)
        return self._c.beats_to_ibi_ms(beat_times), beat_times[1:]

    def estimate(self, end_unix: float, windows: Mapping[str, StreamWindow]) -> ModalityEstimate:
        reasons = []
        for stream in MODALITY_STREAMS["cardiac"]:
            w = windows.get(stream)
            if w is None:
                continue
            if len(w.times) < 2:
                reasons.append(f"no {stream} samples in the window")
                continue
            ibi_ms, beat_times = self.ibi_of(w)
            quality = combine_quality(self._c.cardiac_quality(ibi_ms), w.coverage)
            if quality <= 0 or len(ibi_ms) < 2:
                reasons.append(f"{stream}: too few plausible beats ({len(ibi_ms)} intervals)")
                continue
            features = self._c.hrv_features(ibi_ms, beat_times - beat_times[0])
            if not np.all(np.isfinite(features)):
                reasons.append(f"{stream}: too few valid beats for HRV")
                continue
            features = self._model_input(stream, end_unix, features, quality)
            p = float(np.clip(self._predict(features)[0], 0.0, 1.0))
            valid = ibi_ms[self._c.valid_ibi_mask(ibi_ms)] if hasattr(self._c, "valid_ibi_mask") else ibi_ms
            outputs = {"stress": round(p, 4), "hr_bpm": round(float(60000.0 / np.mean(valid)), 1) if len(valid) else None,
                       "source_stream": stream}
            outputs = {k: v for k, v in outputs.items() if v is not None}
            quality = _motion_gated(quality, outputs, windows)
            return self._finish(end_unix, outputs, _stress_confidence(p), quality, stress=p)
        raise EstimateUnavailable("; ".join(reasons) or "no cardiac stream in the window")


EEG_BASELINE_SPAN_S = TRAILING_SPAN_S  # eeg outputs are read against their mean over this trailing span
EEG_BASELINE_FULL_S = 60.0  # eeg's confidence reaches full once its baseline holds this much signal
EEG_BASELINE_QUALITY_MIN = 0.5  # windows below this quality do not join the baseline
# A 4-s window's valence swings by about +-0.6 around its level (simulated and DEAP alike), so the
# reading is the mean of the usable windows of the last EEG_AVERAGE_S (10 windows at a 2-s hop).
EEG_AVERAGE_S = 20.0


class EegEstimator(Estimator):
    modality = "eeg"

    def __init__(self, model: Any, window: WindowSpec):
        super().__init__(model, window)
        from edge.features import eeg  # noqa: PLC0415

        self._analyse = eeg.eeg_quality_and_features
        self._baseline_span_s = EEG_BASELINE_SPAN_S  # on the model's 2 outputs, not on its features
        self._recent: collections.deque[tuple[float, float, float]] = collections.deque()  # (end, v, a), last EEG_AVERAGE_S

    def _baseline_width(self) -> int:
        return 2  # valence, arousal

    def restore_baselines(self, states: Mapping[str, Any]) -> int:
        """Resume the saved baseline, and the last ``EEG_AVERAGE_S`` of readings from its newest rows."""
        n = super().restore_baselines(states)
        baseline = self._baselines.get("eeg")
        self._recent.clear()
        if baseline is not None and len(baseline):
            saved = baseline.state()
            newest = saved["ends"][-1]
            self._recent.extend((t, v, a) for t, (v, a) in zip(saved["ends"], saved["rows"]) if t > newest - EEG_AVERAGE_S)
        return n

    def relative_to_baseline(self, end_unix: float, valence: float, arousal: float, quality: float) -> tuple[float, float, float]:
        """(valence, arousal) minus their trailing means, and how full the baseline is (0-1]."""
        baseline = self._baselines.get("eeg")
        if baseline is None:
            baseline = self._baselines["eeg"] = TrailingBaseline(self._baseline_span_s)
        usable = quality >= EEG_BASELINE_QUALITY_MIN
        row = baseline.model_input(end_unix, np.array([valence, arousal]), usable=usable)
        reference = row[:2] - row[2:]  # the trailing mean (or this window, with no baseline yet)
        recent = self._recent
        if recent and end_unix < recent[-1][0]:
            recent.clear()  # the source clock went back
        if usable or not recent:
            recent.append((end_unix, valence, arousal))
        while recent[0][0] <= end_unix - EEG_AVERAGE_S:
            recent.popleft()
        now = np.mean([[v, a] for _, v, a in recent], axis=0)
        fill = min(1.0, len(baseline) * max(self.window.hop_s, 1e-6) / EEG_BASELINE_FULL_S)
        return float(np.clip(now[0] - reference[0], -1, 1)), float(np.clip(now[1] - reference[1], -1, 1)), fill

    def estimate(self, end_unix: float, windows: Mapping[str, StreamWindow]) -> ModalityEstimate:
        from edge.errors import ConfigError  # noqa: PLC0415

        w = windows.get("eeg")
        if w is None or len(w.times) < 2:
            raise EstimateUnavailable("no eeg samples in the window")
        try:
            signal_quality, features = self._analyse(w.values, w.rate_hz, w.channels)
        except ConfigError as exc:  # no frontal pair, rate too low: a property of the device
            raise EstimateUnavailable(str(exc)) from None
        quality = combine_quality(signal_quality, w.coverage)
        if quality <= 0:
            raise EstimateUnavailable(f"eeg signal unusable (coverage {w.coverage:.0%})")
        out = self._predict(features)
        v_abs, a_abs = float(np.clip(out[0], -1, 1)), float(np.clip(out[1], -1, 1))
        v, a, fill = self.relative_to_baseline(end_unix, v_abs, a_abs, quality)
        confidence = (0.5 + 0.5 * min(1.0, float(np.hypot(v, a)))) * max(0.2, fill)
        outputs = {"valence": round(v, 4), "arousal": round(a, 4),
                   "valence_absolute": round(v_abs, 4), "arousal_absolute": round(a_abs, 4)}
        return self._finish(end_unix, outputs, confidence, quality, valence=v, arousal=a)


class FaceEstimator(Estimator):
    modality = "face"

    def __init__(self, model: Any, window: WindowSpec, max_frames: int = 5, min_face_px: int = 48,
                 detect_width_px: int = 320, detector: str = "blazeface", zoom_tiles: bool = True,
                 num_threads: int = 1):
        super().__init__(model, window)
        from edge.features import face  # noqa: PLC0415 - imports cv2 lazily itself

        self._face = face
        self.labels = tuple(getattr(model, "labels", None) or face.FER_LABELS)
        self.min_face_px = int(min_face_px)
        self.detector_name = detector
        if detector == "blazeface":
            from edge.features.face_detect import BlazeFaceDetector  # noqa: PLC0415

            self.detector: Any = BlazeFaceDetector(min_face_px=min_face_px, num_threads=num_threads,
                                                   zoom_tiles=zoom_tiles)
            self._largest_face = self._blazeface_box
        elif detector == "haar":
            self.detector = face.FaceDetector(min_face_px=min_face_px)
            self._largest_face = self._haar_box
        else:
            raise ValueError(f"face detector {detector!r}: not one of blazeface, haar")
        self.max_frames = int(max_frames)
        self.detect_width_px = int(detect_width_px)

    def face_crop(self, gray: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int], float] | None:
        """(model input, box, margin fraction) of the largest face in one gray frame, or None.

        The detector runs on a copy scaled down to ``detect_width_px`` (Haar's cost grows with
        the pixel count, BlazeFace sees 128 px anyway; a face that is ``min_face_px`` at full size
        is still found); the model's input is cut from the full-resolution frame: BlazeFace's box
        mapped to the FER framing (``blazeface_crop``), or Haar's box grown by FACE_MARGIN_FRAC.
        Training uses it too (``train face --camera-crops``), so the net learns the crops it is shown.
        """
        h, w = gray.shape[:2]
        scale = 1.0
        small = gray
        if self.detect_width_px and w > self.detect_width_px:
            import cv2  # noqa: PLC0415

            scale = self.detect_width_px / w
            small = cv2.resize(gray, (self.detect_width_px, max(1, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
        self.detector.min_face_px = max(16, int(self.min_face_px * scale))
        found = self._largest_face(small, scale)
        if found is None:
            return None
        box, margin_frac = found
        return self._face.face_input(gray, box, margin_frac), box, margin_frac

    def _blazeface_box(self, small: np.ndarray, scale: float) -> tuple[tuple[int, int, int, int], float] | None:
        """BlazeFace's largest face mapped to the FER framing, in full-frame pixels (no margin left to add)."""
        faces = self.detector.detect_faces(small)
        if not faces:
            return None
        return self._face.blazeface_crop(faces[0].scaled(1.0 / scale)), 0.0

    def _haar_box(self, small: np.ndarray, scale: float) -> tuple[tuple[int, int, int, int], float] | None:
        """Haar's largest box in full-frame pixels, to be grown by FACE_MARGIN_FRAC."""
        boxes = self.detector.detect(small)
        if not boxes:
            return None
        x, y, bw, bh = boxes[0]
        box = (int(x / scale), int(y / scale), int(round(bw / scale)), int(round(bh / scale)))
        return box, self._face.FACE_MARGIN_FRAC

    def score_frame(self, gray: np.ndarray) -> tuple[np.ndarray, float] | None:
        """(class probabilities, face quality) of the largest face in one gray frame (``face_crop``), or None."""
        cropped = self.face_crop(gray)
        if cropped is None:
            return None
        model_input, box, margin_frac = cropped
        probs = np.asarray(self.model.predict(model_input), dtype=np.float64)
        return probs, float(self._face.face_quality(gray, box, margin_frac, model_input))

    def estimate(self, end_unix: float, windows: Mapping[str, FrameWindow]) -> ModalityEstimate:
        w = windows.get("video")
        if w is None or not w.frames:
            raise EstimateUnavailable("no camera frames in the window")
        frames = list(w.frames)
        if len(frames) > self.max_frames:  # evenly spread over the window, newest included
            idx = np.linspace(len(frames) - 1, 0, self.max_frames).round().astype(int)[::-1]
            frames = [frames[i] for i in idx]
        probs, qualities = [], []
        for gray in frames:
            scored = self.score_frame(gray)
            if scored is None:
                continue
            probs.append(scored[0])
            qualities.append(scored[1])
        if not probs:
            raise EstimateUnavailable(f"no face in view ({len(frames)} frames)")
        mean = np.mean(probs, axis=0)
        mean = mean / mean.sum() if mean.sum() > 0 else mean
        found_fraction = len(probs) / len(frames)
        quality = float(np.mean(qualities)) * found_fraction
        confidence = float(np.mean([p.max() for p in probs]))
        distribution = {label: round(float(p), 4) for label, p in zip(self.labels, mean)}
        top = self.labels[int(np.argmax(mean))]
        return self._finish(end_unix, {"label": top, "probs": distribution}, confidence, quality)


# The feature-name tuple each modality's model must have been trained on.
FEATURE_NAMES = {"eda": ("edge.features.eda", "EDA_FEATURE_NAMES"),
                 "cardiac": ("edge.features.cardiac", "CARDIAC_FEATURE_NAMES"),
                 "eeg": ("edge.features.eeg", "EEG_FEATURE_NAMES")}


def check_feature_names(modality: str, manifest: Mapping[str, Any]) -> None:
    """Refuse a model trained on other features than this code computes (one line naming both)."""
    from edge.errors import ModelIntegrityError  # noqa: PLC0415

    if modality not in FEATURE_NAMES:
        return
    import importlib  # noqa: PLC0415

    module_name, attr = FEATURE_NAMES[modality]
    ours = tuple(getattr(importlib.import_module(module_name), attr))
    pre = manifest.get("preprocessing") or {}
    theirs = tuple(pre.get("feature_names") or ())
    if theirs and theirs != ours:
        diff = sorted(set(theirs) ^ set(ours))[:3]
        raise ModelIntegrityError(
            f"model {modality}: trained on {len(theirs)} features, {module_name} computes {len(ours)} "
            f"(differing: {', '.join(diff) or 'order'}); retrain or update the model")
    baseline = pre.get("trailing_baseline")
    if baseline is not None:
        span = baseline.get("span_s") if isinstance(baseline, Mapping) else None
        if not isinstance(span, (int, float)) or span <= 0:
            raise ModelIntegrityError(f"model {modality}: preprocessing.trailing_baseline.span_s {span!r} is not "
                                      f"a positive number of seconds; fix or retrain the model")
        names = baseline.get("input_names")
        if names is not None and list(names) != input_names(ours):
            raise ModelIntegrityError(f"model {modality}: trailing_baseline.input_names are not {module_name}'s "
                                      f"features and their deviations; retrain or update the model")


def make_estimator(modality: str, model: Any, window: WindowSpec, *, max_frames: int = 5,
                   min_face_px: int = 48, detect_width_px: int = 320, face_detector: str = "blazeface",
                   zoom_tiles: bool = True, num_threads: int = 1) -> Estimator:
    check_feature_names(modality, getattr(model, "manifest", {}) or {})
    if modality == "eda":
        return EdaEstimator(model, window)
    if modality == "cardiac":
        return CardiacEstimator(model, window)
    if modality == "eeg":
        return EegEstimator(model, window)
    if modality == "face":
        return FaceEstimator(model, window, max_frames=max_frames, min_face_px=min_face_px,
                             detect_width_px=detect_width_px, detector=face_detector, zoom_tiles=zoom_tiles,
                             num_threads=num_threads)
    raise ValueError(f"unknown modality {modality!r}")
