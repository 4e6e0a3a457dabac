"""Late fusion: per-modality estimates -> one emotion state (valence, arousal, stress, label).

Pure: no I/O, no clock reads; time comes in as the estimates' source-clock timestamps.

The rule, step by step (documented in the README's fusion section too):

1. Each modality is mapped into valence-arousal space plus stress (``map_to_affect``):
   - face: class probabilities x circumplex coordinates per FER class (``FACE_CIRCUMPLEX``);
     stress = weighted sum of the negative high-arousal classes (``FACE_STRESS``).
   - eda, cardiac: stress probability p -> stress = p, arousal = 0.8 (2p - 1),
     valence = -0.3 max(0, 2p - 1) (a small negative valence only under high stress).
   - eeg: valence and arousal straight from the model; its stress is a circumplex proxy
     clip((arousal - valence) / 2, 0, 1) counted at half weight (it has no stress head).
2. Weight of modality m: w_m = confidence_m x quality_m x staleness_m x reliability_m
   (reliability = configurable prior from the model cards), normalised to sum to 1.
   Quality 0 (or confidence 0) -> weight 0. All weights 0 -> no state (``FusionResult.state`` None).
3. Fused valence, arousal, stress = weighted means.
4. Confidence = agreement x evidence, with agreement = 1 - (weighted mean distance of the
   modalities' V/A points from the fused point) / 2, clipped to [0, 1], and
   evidence = 1 - prod_m (1 - confidence_m quality_m reliability_m) (more independent,
   good-quality modalities -> more evidence).
5. Exponential smoothing of V, A and stress with time constant tau on the source clock:
   alpha = 1 - exp(-dt / tau).
6. Label (``label_for``): stress >= stress_threshold -> "stressed"; else inside the neutral
   radius of the V/A origin -> "neutral"; else by quadrant: V >= 0, A >= 0 -> "excited" if
   A >= V else "happy"; V < 0, A >= 0 -> "tense"; V < 0, A < 0 -> "sad"; V >= 0, A < 0 -> "calm".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from edge.stream import MODALITIES

# Approximate positions (valence, arousal) of the corresponding affect words on Russell's
# circumplex (J. A. Russell, "A circumplex model of affect", J. Pers. Soc. Psychol. 39(6),
# 1161-1178, 1980, Fig. 2: happy, angry, afraid, sad, astonished), read off the figure as unit-circle
# coordinates; "disgust" is not among Russell's 28 words and is placed between "distressed" and
# "annoyed"; neutral is the origin. A prior for mapping classifier output, not a fitted model.
FACE_CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "angry": (-0.40, 0.79),
    "disgust": (-0.67, 0.49),
    "fear": (-0.12, 0.79),
    "happy": (0.89, 0.17),
    "neutral": (0.0, 0.0),
    "sad": (-0.81, -0.40),
    "surprise": (0.16, 0.89),
}
# Stress carried by each facial expression class: negative, high-arousal classes.
FACE_STRESS: dict[str, float] = {"angry": 1.0, "fear": 1.0, "disgust": 0.7, "sad": 0.3}
EEG_STRESS_WEIGHT = 0.5  # eeg's stress is a circumplex proxy, counted at half weight


@dataclass(frozen=True)
class ModalityEstimate:
    """One modality's reading of one window.

    ``outputs`` are the model's own outputs (published as is); valence / arousal / stress are
    what the model says directly (None where it has no such head; calibration adjusts these).
    confidence and quality are in [0, 1]: confidence from the model's output, quality from the
    signal (quality index x data coverage / packet loss).
    """

    modality: str
    ts_unix: float  # end of the window, source clock
    outputs: Mapping[str, Any]
    valence: float | None = None
    arousal: float | None = None
    stress: float | None = None
    confidence: float = 0.0
    quality: float = 0.0
    model_version: str = ""
    window_s: float = 0.0
    hop_s: float = 0.0


@dataclass(frozen=True)
class Affect:
    """A modality mapped into the common space: V, A in [-1, 1], stress in [0, 1]."""

    valence: float
    arousal: float
    stress: float
    stress_weight: float = 1.0  # relative weight of this modality's stress (proxy stress < 1)


@dataclass(frozen=True)
class FusionParams:
    reliability: Mapping[str, float] = field(default_factory=lambda: {m: 1.0 for m in MODALITIES})
    smoothing_tau_s: float = 10.0
    stress_threshold: float = 0.6
    neutral_radius: float = 0.25


@dataclass(frozen=True)
class Contribution:
    quality: float
    weight: float
    ts_unix: float
    outputs: Mapping[str, Any]
    affect: Affect


@dataclass(frozen=True)
class FusedState:
    ts_unix: float
    valence: float
    arousal: float
    stress: float
    label: str
    confidence: float
    contributions: Mapping[str, Contribution]

    def to_payload(self, missing_reasons: Mapping[str, str], models: Mapping[str, str],
                   calibrated: bool) -> dict[str, Any]:
        """The state payload of the MQTT contract (the publisher adds seq and device_id)."""
        return {
            "ts": self.ts_unix,
            "valence": round(self.valence, 4),
            "arousal": round(self.arousal, 4),
            "stress": round(self.stress, 4),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "modalities": {
                name: {"quality": round(c.quality, 4), "weight": round(c.weight, 4), "ts": c.ts_unix,
                       "outputs": dict(c.outputs, valence=round(c.affect.valence, 4) + 0.0,
                                       arousal=round(c.affect.arousal, 4) + 0.0)}
                for name, c in self.contributions.items()
            },
            "missing": sorted(missing_reasons),
            "missing_reasons": dict(sorted(missing_reasons.items())),
            "models": dict(sorted(models.items())),
            "calibrated": bool(calibrated),
            "schema_version": 1,
        }


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def map_to_affect(estimate: ModalityEstimate) -> Affect:
    """Map one modality's estimate into valence-arousal space plus stress (rule 1 above)."""
    if estimate.modality == "face":
        probs = estimate.outputs.get("probs", {})
        total = sum(probs.values()) or 1.0
        v = sum(p * FACE_CIRCUMPLEX.get(k, (0.0, 0.0))[0] for k, p in probs.items()) / total
        a = sum(p * FACE_CIRCUMPLEX.get(k, (0.0, 0.0))[1] for k, p in probs.items()) / total
        s = sum(p * FACE_STRESS.get(k, 0.0) for k, p in probs.items()) / total
        if estimate.valence is not None:  # calibrated values take precedence
            v = estimate.valence
        if estimate.arousal is not None:
            a = estimate.arousal
        return Affect(_clip(v, -1, 1), _clip(a, -1, 1), _clip(s, 0, 1))
    if estimate.modality in ("eda", "cardiac"):
        p = _clip(float(estimate.stress if estimate.stress is not None else 0.5), 0.0, 1.0)
        centred = 2.0 * p - 1.0
        return Affect(-0.3 * max(0.0, centred), 0.8 * centred, p)
    if estimate.modality == "eeg":
        v = _clip(float(estimate.valence or 0.0), -1, 1)
        a = _clip(float(estimate.arousal or 0.0), -1, 1)
        if estimate.stress is not None:
            return Affect(v, a, _clip(estimate.stress, 0, 1))
        return Affect(v, a, _clip((a - v) / 2.0, 0.0, 1.0), EEG_STRESS_WEIGHT)
    raise ValueError(f"unknown modality {estimate.modality!r}")


def label_for(valence: float, arousal: float, stress: float, stress_threshold: float = 0.6,
              neutral_radius: float = 0.25) -> str:
    """A categorical label from fused V/A/stress (rule 6 above)."""
    if stress >= stress_threshold:
        return "stressed"
    if math.hypot(valence, arousal) < neutral_radius:
        return "neutral"
    if arousal >= 0:
        if valence >= 0:
            return "excited" if arousal >= valence else "happy"
        return "tense"
    return "calm" if valence >= 0 else "sad"


def fuse(estimates: Mapping[str, ModalityEstimate], ts_unix: float, params: FusionParams,
         staleness: Mapping[str, float] | None = None) -> FusedState | None:
    """Fuse the given modalities' estimates (any subset, incl. one) at ``ts_unix``; None if no weight.

    ``staleness`` multiplies each modality's quality (1 = fresh), e.g. decaying with the
    estimate's age; modalities not given are simply absent (never fed as zeros).
    """
    affects = {m: map_to_affect(e) for m, e in estimates.items()}
    raw: dict[str, float] = {}
    quality: dict[str, float] = {}
    for m, e in estimates.items():
        q = _clip(float(e.quality), 0, 1) * _clip(float((staleness or {}).get(m, 1.0)), 0, 1)
        quality[m] = q
        raw[m] = _clip(float(e.confidence), 0, 1) * q * _clip(float(params.reliability.get(m, 1.0)), 0, 1)
    total = sum(raw.values())
    if total <= 0:
        return None
    weights = {m: w / total for m, w in raw.items()}
    v = sum(weights[m] * affects[m].valence for m in weights)
    a = sum(weights[m] * affects[m].arousal for m in weights)
    stress_w = {m: weights[m] * affects[m].stress_weight for m in weights}
    stress_total = sum(stress_w.values())
    s = sum(stress_w[m] * affects[m].stress for m in weights) / stress_total if stress_total > 0 else 0.0
    spread = sum(weights[m] * math.hypot(affects[m].valence - v, affects[m].arousal - a) for m in weights)
    agreement = _clip(1.0 - spread / 2.0, 0.0, 1.0)
    evidence = 1.0 - math.prod(1.0 - _clip(r, 0, 1) for r in raw.values())
    confidence = _clip(agreement * evidence, 0.0, 1.0)
    contributions = {m: Contribution(quality[m], weights[m], estimates[m].ts_unix, estimates[m].outputs, affects[m])
                     for m in sorted(estimates)}
    v, a, s = _clip(v, -1, 1), _clip(a, -1, 1), _clip(s, 0, 1)
    return FusedState(ts_unix, v, a, s, label_for(v, a, s, params.stress_threshold, params.neutral_radius),
                      confidence, contributions)


class Smoother:
    """Exponential smoothing of V, A and stress on the source clock (time constant ``tau_s``)."""

    def __init__(self, tau_s: float, stress_threshold: float = 0.6, neutral_radius: float = 0.25):
        self.tau_s = tau_s
        self.stress_threshold = stress_threshold
        self.neutral_radius = neutral_radius
        self._last: tuple[float, float, float, float] | None = None  # ts, v, a, s

    def __call__(self, state: FusedState) -> FusedState:
        if self._last is None or self.tau_s <= 0 or state.ts_unix <= self._last[0]:
            self._last = (state.ts_unix, state.valence, state.arousal, state.stress)
            return state
        t0, v0, a0, s0 = self._last
        alpha = 1.0 - math.exp(-(state.ts_unix - t0) / self.tau_s)
        v = v0 + alpha * (state.valence - v0)
        a = a0 + alpha * (state.arousal - a0)
        s = s0 + alpha * (state.stress - s0)
        self._last = (state.ts_unix, v, a, s)
        return FusedState(state.ts_unix, v, a, s, label_for(v, a, s, self.stress_threshold, self.neutral_radius),
                          state.confidence, state.contributions)


def staleness_factor(age_s: float, stale_after_s: float) -> float:
    """1 for a fresh estimate, falling linearly to 0.5 at the staleness limit (0 beyond it)."""
    if age_s <= 0:
        return 1.0
    if age_s > stale_after_s:
        return 0.0
    return 1.0 - 0.5 * age_s / stale_after_s
