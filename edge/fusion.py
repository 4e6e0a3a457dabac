"""Late fusion: per-modality estimates -> one emotion state (valence, arousal, stress, label).

Pure: no I/O, no clock reads; time comes in as the estimates' source-clock timestamps.
``docs/fusion.md`` explains the models behind the rule (dimensional vs categorical emotion, what
each modality can and cannot measure); this is the rule itself.

**Each dimension carries its own evidence.** A state has three dimensions, valence and arousal
(Russell's circumplex, in [-1, 1]) and stress ([0, 1]), and each is fused only from the
modalities that measure it (``DIMENSION_WEIGHT``):

============  ===========================  ================================  ==================
modality      valence                      arousal                           stress
============  ===========================  ================================  ==================
face          FER probabilities (squared,  FER probabilities (squared,       negative high-
              renormalised) x circumplex   renormalised) x circumplex        arousal classes
              (weight 1)                   (weight 1)                        (proxy, weight 0.5)
eeg           model output vs the          model output vs the wearer's      circumplex proxy
              wearer's trailing baseline   trailing baseline (weight 1)      clip((a - v) / 2)
              (weight 1)                                                     (weight 0.5)
eda, cardiac  -- (none: skin conductance   0.8 (2p - 1) from the stress      p (weight 1)
              and heart rate rise with     probability p (weight 1)
              any arousal, pleasant or
              not)
============  ===========================  ================================  ==================

Physiology alone therefore never moves valence: with only eda/cardiac the state's ``valence``
is ``null`` with ``valence_confidence`` 0, never 0.0.

1. Weight of modality m on dimension d:
   ``w[m, d] = confidence_m x quality_m x staleness_m x reliability_m x DIMENSION_WEIGHT[m][d]``
   (reliability: a configurable prior from the model cards). A dimension no modality weighs is
   ``None`` (published ``null``), its confidence 0.
2. Each dimension's value is the ``w[m, d]``-weighted mean of the modalities that measure it.
3. Each dimension's confidence = evidence x agreement:
   evidence = ``1 - prod_m (1 - quality_m staleness_m reliability_m DIMENSION_WEIGHT[m][d])``
   (more independent, good-quality, trusted modalities -> more evidence; the model's own
   certainty is in the weights, not here: a stress probability of 0.5 is a reading, not a
   lack of one); agreement = ``1 - weighted mean (|x_m - x| + spread_m) / (range / 2)`` (range 2
   for valence and arousal, 1 for stress; range / 2 is the largest such spread, two modalities at
   opposite ends: agreement 1 = they all say the same, 0 = as split as they can be).
   ``spread_m`` is a modality's disagreement with itself: for the face, the mean distance of its
   classes' places from its own reading, weighted as the reading is (``Affect.spread``). A face
   split between happy and sad reads near the origin, and is as unsure of its valence as two
   modalities saying happy and sad would be; a single-valued reading (eda, cardiac, eeg) has
   none. The sum is at most the mean absolute deviation of all the readings' points from ``x``
   (triangle inequality) and equals it for one modality. ``confidence``
   (the state's overall figure) is the mean of the three dimension confidences, an uninformed
   dimension counting 0.
   Each modality's published ``weight`` is its share of ``confidence x quality x staleness x
   reliability`` (they sum to 1). All weights 0 -> no state (``fuse`` returns None).
4. ``Smoother``: exponential smoothing of each dimension on the source clock,
   ``alpha = 1 - exp(-dt / tau)``; a dimension that was uninformed restarts from its new value,
   and one that loses its evidence becomes ``None`` at once (no stale carry-over).
5. Label (``choose_label``), from the dimensions with evidence (confidence >=
   ``min_dimension_confidence``) only. Each label is a region of the informed dimensions, and
   ``label_margins`` gives the signed distance of the state into it (> 0 inside):

   - stress informed and ``stress >= stress_threshold`` -> ``stressed``, unless valence is
     informed and clearly positive (V > ``negative_valence``): the stress models read any high
     arousal as stress (excitement raises heart rate and skin conductance too), and a valence
     source is what tells the two apart;
   - valence and arousal informed (face, eeg): ``neutral`` inside ``neutral_radius`` of the
     origin, else by circumplex quadrant, where a negative label needs a clearly negative
     valence (V < -``negative_valence``; a valence near 0 is no reason to say ``sad``):
     A >= 0: ``tense`` if V < -negative_valence, else ``happy`` if V > A, else ``excited``;
     A < 0: ``sad`` if V < -negative_valence, else ``calm``;
   - stress informed but not valence (physiology only): ``calm`` below ``calm_threshold``,
     else ``neutral``; never ``sad``, ``happy``, ``tense`` or ``excited``;
   - arousal alone (stress and valence too unsure: eda and cardiac that disagree about stress, or a
     face split between pleasant and unpleasant classes): ``uncertain``;
   - nothing informed: ``uncertain``.

   ``label_confidence`` = confidence of the dimensions the label rests on (the lowest; for
   ``stressed`` with valence and arousal informed, the better of stress-and-valence and, in the
   circumplex's activated-unpleasant quadrant, valence-and-arousal) x
   ``clip(0.5 + 0.5 margin / MARGIN_SCALE, 0, 1)``: a state deep inside its region with well
   informed dimensions is sure, one on a border is half as sure (the label already shown counts
   its margin plus ``label_hysteresis``, as in rule 6).
   If the best label's confidence is below ``uncertain_below`` the label is ``uncertain``.
6. ``LabelHolder`` makes labels stable (source clock): hysteresis, the current label's margin
   counts ``label_hysteresis`` more, so the evidence must move that far past a border before the
   label changes; confirmation, the shown label must have lost for ``confirm_s`` in a row (to
   whichever label; the change is to the one winning then); dwell, a label stays at least
   ``min_dwell_s`` once shown, or ``DWELL_PER_WINDOW`` x the weighted mean window length of
   the modalities used if that is shorter (a label read off 1-s face windows need not wait as
   long as one read off 300-s physiology windows), unless the evidence is decisively against it (its
   margin below ``-(MARGIN_SCALE + label_hysteresis)``, label confidence 0): then it goes after
   ``confirm_s``, so a clear change is never held back for the whole dwell. The first state's
   label is shown at once, and so is any change forced because the evidence a held label rests
   on is gone (a ``sad`` whose valence source went away becomes what the remaining evidence says
   at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from edge.stream import MODALITIES

SCHEMA_VERSION = 2
DIMENSIONS = ("valence", "arousal", "stress")
# Labels a state may carry (the schema's enum). "aroused"/"relaxed" are not used.
LABELS = ("stressed", "tense", "sad", "calm", "neutral", "happy", "excited", "uncertain")
VALENCE_LABELS = ("tense", "sad", "happy", "excited")  # need a valence source
MARGIN_SCALE = 0.1  # a label this far inside its region (in V/A/stress units) is fully decided
# A label need not dwell longer than its evidence takes to renew: at most this many of the used
# modalities' (weighted mean) window lengths (eda/cardiac 300 s -> 180 s; face 1 s -> 0.6 s).
DWELL_PER_WINDOW = 0.6

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
# A face is placed at the mean circumplex position of its class probabilities raised to this power
# and renormalised (a softmax at temperature 1/2): a clear expression reads as its own place, not
# pulled towards its runner-up classes' places. Without it a sad face whose probability is shared
# with angry and fear (FER2013 confuses them) averages to above the horizontal axis and reads
# `tense`. Chosen on the face model's held-out FER2013 validation faces (1,346, without 91 pixel
# copies of training images), face only (reliability 1), label of the settled state: agreement with the
# expression's place 0.649 at power 1, 0.670 at 2, 0.672 at 3, 0.669 at 4 (model on the FER crop;
# sad faces 0.31 -> 0.55, angry and fear lose what their confusions with each other's and sad's
# places gave); through the detector path 0.443 -> 0.450. 2 is the smallest power within noise of
# the best. docs/evaluate.md has the test-part figures.
FACE_PROB_POWER = 2.0
# Stress carried by each facial expression class: negative, high-arousal classes.
FACE_STRESS: dict[str, float] = {"angry": 1.0, "fear": 1.0, "disgust": 0.7, "sad": 0.3}
EEG_STRESS_WEIGHT = 0.5  # eeg's stress is a circumplex proxy, counted at half weight
FACE_STRESS_WEIGHT = 0.5  # an expression is not a stress response: counted at half weight
# How much each modality measures each dimension (0 = not at all: it never moves that dimension).
DIMENSION_WEIGHT: dict[str, dict[str, float]] = {
    "face": {"valence": 1.0, "arousal": 1.0, "stress": FACE_STRESS_WEIGHT},
    "eeg": {"valence": 1.0, "arousal": 1.0, "stress": EEG_STRESS_WEIGHT},
    "eda": {"valence": 0.0, "arousal": 1.0, "stress": 1.0},
    "cardiac": {"valence": 0.0, "arousal": 1.0, "stress": 1.0},
}


@dataclass(frozen=True)
class ModalityEstimate:
    """One modality's reading of one window.

    ``outputs`` are the model's own outputs (published as is); valence / arousal / stress are
    what the model says directly (None where it has no such head; calibration and the eeg
    trailing baseline adjust these). confidence and quality are in [0, 1]: confidence from the
    model's output, quality from the signal (quality index x data coverage / packet loss).
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
    """A modality mapped into the common space: V, A in [-1, 1], stress in [0, 1]; None = not measured.

    ``spread``: per dimension, how far the modality's own reading is split, as the weighted mean
    distance of the points it averaged from their mean (the face's class places); 0 when missing.
    """

    valence: float | None
    arousal: float | None
    stress: float | None
    spread: Mapping[str, float] = field(default_factory=dict)

    def get(self, dimension: str) -> float | None:
        return getattr(self, dimension)

    def spread_of(self, dimension: str) -> float:
        return float(self.spread.get(dimension, 0.0))


@dataclass(frozen=True)
class FusionParams:
    reliability: Mapping[str, float] = field(default_factory=lambda: {m: 1.0 for m in MODALITIES})
    smoothing_tau_s: float = 10.0
    stress_threshold: float = 0.61
    calm_threshold: float = 0.25
    neutral_radius: float = 0.25
    negative_valence: float = 0.2
    min_dimension_confidence: float = 0.15
    uncertain_below: float = 0.15
    label_hysteresis: float = 0.15
    confirm_s: float = 10.0
    min_dwell_s: float = 180.0


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
    valence: float | None
    arousal: float | None
    stress: float | None
    label: str
    confidence: float
    contributions: Mapping[str, Contribution]
    valence_confidence: float = 0.0
    arousal_confidence: float = 0.0
    stress_confidence: float = 0.0
    label_confidence: float = 0.0
    evidence_window_s: float = math.inf  # weighted mean window length of the modalities used (inf: unknown)

    def value(self, dimension: str) -> float | None:
        return getattr(self, dimension)

    def dimension_confidence(self, dimension: str) -> float:
        return float(getattr(self, f"{dimension}_confidence"))

    def to_payload(self, missing_reasons: Mapping[str, str], models: Mapping[str, str],
                   calibrated: bool) -> dict[str, Any]:
        """The state payload of the MQTT contract (the publisher adds seq and device_id)."""
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 4) + 0.0

        def modality_outputs(c: Contribution) -> dict[str, Any]:
            out = dict(c.outputs)
            for dim in ("valence", "arousal"):
                if c.affect.get(dim) is not None:
                    out[dim] = rounded(c.affect.get(dim))
            return out

        return {
            "ts": self.ts_unix,
            "valence": rounded(self.valence),
            "arousal": rounded(self.arousal),
            "stress": rounded(self.stress),
            "valence_confidence": round(self.valence_confidence, 4),
            "arousal_confidence": round(self.arousal_confidence, 4),
            "stress_confidence": round(self.stress_confidence, 4),
            "label": self.label,
            "label_confidence": round(self.label_confidence, 4),
            "confidence": round(self.confidence, 4),
            "modalities": {
                name: {"quality": round(c.quality, 4), "weight": round(c.weight, 4), "ts": c.ts_unix,
                       "outputs": modality_outputs(c)}
                for name, c in self.contributions.items()
            },
            "missing": sorted(missing_reasons),
            "missing_reasons": dict(sorted(missing_reasons.items())),
            "models": dict(sorted(models.items())),
            "calibrated": bool(calibrated),
            "schema_version": SCHEMA_VERSION,
        }


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _finite_share(p: Any) -> float:
    """A class probability as a finite number in [0, 1] (NaN counts 0: no evidence for that class)."""
    x = float(p)
    return _clip(x, 0.0, 1.0) if math.isfinite(x) else 0.0


def map_to_affect(estimate: ModalityEstimate) -> Affect:
    """Map one modality's estimate into valence-arousal space plus stress (the table above)."""
    if estimate.modality == "face":
        probs = {k: _finite_share(p) ** FACE_PROB_POWER for k, p in estimate.outputs.get("probs", {}).items()}
        total = sum(probs.values()) or 1.0
        places = {k: (*FACE_CIRCUMPLEX.get(k, (0.0, 0.0)), FACE_STRESS.get(k, 0.0)) for k in probs}
        v, a, s = (sum(p * places[k][i] for k, p in probs.items()) / total for i in range(3))
        spread = {dim: sum(p * abs(places[k][i] - mean) for k, p in probs.items()) / total
                  for i, (dim, mean) in enumerate(zip(DIMENSIONS, (v, a, s)))}
        if estimate.valence is not None:  # calibrated values take precedence
            v = estimate.valence
        if estimate.arousal is not None:
            a = estimate.arousal
        return Affect(_clip(v, -1, 1), _clip(a, -1, 1), _clip(s, 0, 1), spread)
    if estimate.modality in ("eda", "cardiac"):
        if estimate.stress is None:
            return Affect(None, None, None)
        p = _clip(float(estimate.stress), 0.0, 1.0)
        return Affect(None, 0.8 * (2.0 * p - 1.0), p)
    if estimate.modality == "eeg":
        if estimate.valence is None or estimate.arousal is None:
            return Affect(None, None, None)
        v = _clip(float(estimate.valence), -1, 1)
        a = _clip(float(estimate.arousal), -1, 1)
        s = estimate.stress if estimate.stress is not None else (a - v) / 2.0
        return Affect(v, a, _clip(float(s), 0.0, 1.0))
    raise ValueError(f"unknown modality {estimate.modality!r}")


def _dimension_weight(modality: str, dimension: str, estimate: ModalityEstimate) -> float:
    if modality == "eeg" and dimension == "stress" and estimate.stress is not None:
        return 1.0  # a model with a real stress head
    return DIMENSION_WEIGHT.get(modality, {}).get(dimension, 0.0)


def fuse(estimates: Mapping[str, ModalityEstimate], ts_unix: float, params: FusionParams,
         staleness: Mapping[str, float] | None = None) -> FusedState | None:
    """Fuse the given modalities' estimates (any subset, incl. one) at ``ts_unix``; None if no weight.

    ``staleness`` multiplies each modality's quality (1 = fresh), e.g. decaying with the
    estimate's age; modalities not given are simply absent (never fed as zeros). The label is
    the instantaneous one (``choose_label``); ``LabelHolder`` makes it stable over time.
    """
    affects = {m: map_to_affect(e) for m, e in estimates.items()}
    trust: dict[str, float] = {}  # quality x staleness x reliability: how far the signal can be believed
    raw: dict[str, float] = {}
    quality: dict[str, float] = {}
    for m, e in estimates.items():
        q = _clip(float(e.quality), 0, 1) * _clip(float((staleness or {}).get(m, 1.0)), 0, 1)
        quality[m] = q
        trust[m] = q * _clip(float(params.reliability.get(m, 1.0)), 0, 1)
        raw[m] = _clip(float(e.confidence), 0, 1) * trust[m]
    total = sum(raw.values())
    if total <= 0:
        return None
    values: dict[str, float | None] = {}
    confidences: dict[str, float] = {}
    span = {"valence": 2.0, "arousal": 2.0, "stress": 1.0}  # range of each dimension
    for dim in DIMENSIONS:
        dim_w = {m: _dimension_weight(m, dim, estimates[m]) for m in estimates if affects[m].get(dim) is not None}
        w = {m: raw[m] * dw for m, dw in dim_w.items() if raw[m] * dw > 0}
        w_total = sum(w.values())
        if w_total <= 0:
            values[dim], confidences[dim] = None, 0.0
            continue
        x = sum(w[m] * affects[m].get(dim) for m in w) / w_total  # type: ignore[operator]
        spread = sum(w[m] * (abs(affects[m].get(dim) - x) + affects[m].spread_of(dim))  # type: ignore[operator]
                     for m in w) / w_total
        agreement = _clip(1.0 - spread / (span[dim] / 2.0), 0.0, 1.0)
        evidence = 1.0 - math.prod(1.0 - _clip(trust[m] * dim_w[m], 0, 1) for m in w)
        values[dim] = _clip(x, -1, 1) if dim != "stress" else _clip(x, 0, 1)
        confidences[dim] = _clip(agreement * evidence, 0.0, 1.0)
    contributions = {m: Contribution(quality[m], raw[m] / total, estimates[m].ts_unix, estimates[m].outputs, affects[m])
                     for m in sorted(estimates)}
    windows = [(raw[m] / total, float(e.window_s)) for m, e in estimates.items() if raw[m] > 0]
    window_s = sum(w * x for w, x in windows) if all(x > 0 for _, x in windows) else math.inf
    state = FusedState(ts_unix, values["valence"], values["arousal"], values["stress"], "uncertain",
                       sum(confidences.values()) / len(DIMENSIONS), contributions,
                       confidences["valence"], confidences["arousal"], confidences["stress"],
                       evidence_window_s=window_s)
    label, label_confidence = choose_label(state, params)
    return replace(state, label=label, label_confidence=label_confidence)


# -- labels ---------------------------------------------------------------------------------------

def _informed(state: FusedState, params: FusionParams) -> dict[str, float]:
    """{dimension: value} of the dimensions with enough evidence to label from."""
    return {d: state.value(d) for d in DIMENSIONS  # type: ignore[misc]
            if state.value(d) is not None and state.dimension_confidence(d) >= params.min_dimension_confidence}


Support = tuple[tuple[str, ...], ...]  # alternatives, each a set of dimensions that must all be informed


def label_margins(state: FusedState, params: FusionParams) -> dict[str, tuple[float, Support]]:
    """{label: (signed margin into its region, the dimensions it rests on)} for the labels the evidence allows."""
    x = _informed(state, params)
    s, v, a = x.get("stress"), x.get("valence"), x.get("arousal")
    out: dict[str, tuple[float, Support]] = {}
    not_stressed = math.inf
    if s is not None:
        out["stressed"] = (s - params.stress_threshold, (("stress",),))
        not_stressed = params.stress_threshold - s
        if v is not None and a is not None:  # high arousal with a clearly positive valence is excitement, not stress
            positive = v - params.negative_valence
            support: Support = (("stress", "valence"),)
            if v < 0 < a:  # the circumplex's activated-unpleasant quadrant supports it too
                support += (("valence", "arousal"),)
            out["stressed"] = (min(out["stressed"][0], -positive), support)
            not_stressed = max(not_stressed, positive)
    if v is not None and a is not None:
        outside = math.hypot(v, a) - params.neutral_radius
        dims: Support = (("valence", "arousal"),)
        out["neutral"] = (min(-outside, not_stressed), dims)
        diagonal = (v - a) / math.sqrt(2.0)
        negative = -v - params.negative_valence  # > 0: clearly negative valence
        for label, margin in (("happy", min(a, diagonal)), ("excited", min(-negative, -diagonal)),
                              ("tense", min(negative, a)), ("sad", min(negative, -a)), ("calm", min(-negative, -a))):
            out[label] = (min(outside, margin, not_stressed), dims)
    elif s is not None:
        out["calm"] = (params.calm_threshold - s, (("stress",),))
        out["neutral"] = (min(s - params.calm_threshold, not_stressed), (("stress",),))
    # Arousal alone labels nothing. It is informed without stress or valence when the readings of those
    # disagree: eda and cardiac derive arousal from their stress at 0.8 scale, so two opposite stress
    # readings still agree passably on arousal, and a face split between happy and sad is unsure of
    # valence but not of arousal. The mean of opposite readings is no reading: the label is uncertain.
    return out


def label_confidence_of(state: FusedState, margin: float, support: Support) -> float:
    """Confidence in a label: its weakest supporting dimension's confidence (best alternative) x how far
    inside its region the state is."""
    dim_conf = max(min(state.dimension_confidence(d) for d in dims) for dims in support)
    return _clip(dim_conf * _clip(0.5 + 0.5 * margin / MARGIN_SCALE, 0.0, 1.0), 0.0, 1.0)


def choose_label(state: FusedState, params: FusionParams, current: str | None = None) -> tuple[str, float]:
    """(label, label_confidence) from the informed dimensions; ``current`` gets the hysteresis bonus."""
    margins = label_margins(state, params)
    if not margins:
        return "uncertain", 0.0
    bonus = params.label_hysteresis
    best = max(margins, key=lambda k: margins[k][0] + (bonus if k == current else 0.0))
    margin, support = margins[best]
    confidence = label_confidence_of(state, margin + (bonus if best == current else 0.0), support)
    if confidence < params.uncertain_below:
        return "uncertain", confidence
    return best, confidence


class Smoother:
    """Exponential smoothing of each dimension on the source clock (time constant ``tau_s``).

    The label is left as it is: ``LabelHolder`` decides it from the smoothed state.
    """

    def __init__(self, tau_s: float):
        self.tau_s = tau_s
        self._last_ts: float | None = None
        self._last: dict[str, float | None] = {}

    def __call__(self, state: FusedState) -> FusedState:
        now = {d: state.value(d) for d in DIMENSIONS}
        if self._last_ts is None or self.tau_s <= 0 or state.ts_unix <= self._last_ts:
            self._last_ts, self._last = state.ts_unix, now
            return state
        alpha = 1.0 - math.exp(-(state.ts_unix - self._last_ts) / self.tau_s)
        smoothed: dict[str, float | None] = {}
        for d, x in now.items():
            before = self._last.get(d)
            smoothed[d] = None if x is None else x if before is None else before + alpha * (x - before)
        self._last_ts, self._last = state.ts_unix, smoothed
        return replace(state, **smoothed)


class LabelHolder:
    """Stable labels on the source clock: hysteresis, confirmation and a minimum dwell (rule 6)."""

    def __init__(self, params: FusionParams):
        self.params = params
        self.label: str | None = None
        self.since: float = -math.inf  # source time the shown label was adopted
        self._beaten_since: float | None = None  # since when another label has won, without a break
        self._last_ts: float | None = None

    def reset(self) -> None:
        self.label, self.since, self._beaten_since, self._last_ts = None, -math.inf, None, None

    def _contradicted(self, state: FusedState) -> bool:
        """The held label is decisively outside the evidence (its margin below -MARGIN_SCALE - hysteresis)."""
        margins = label_margins(state, self.params)
        if self.label not in margins:
            return self.label == "uncertain" and bool(margins)  # the evidence is back
        return margins[self.label][0] + self.params.label_hysteresis <= -MARGIN_SCALE

    def __call__(self, state: FusedState) -> FusedState:
        if self._last_ts is not None and state.ts_unix < self._last_ts:
            self.reset()  # the source clock went back (a new recording): start over
        self._last_ts = state.ts_unix
        candidate, confidence = choose_label(state, self.params, self.label)
        t = state.ts_unix
        allowed = self.label == "uncertain" or self.label in label_margins(state, self.params)
        if self.label is None or not allowed:  # first state, or the evidence for the held label is gone
            self.label, self.since, self._beaten_since = candidate, t, None
        elif candidate == self.label:
            self._beaten_since = None
        else:
            if self._beaten_since is None:
                self._beaten_since = t
            confirmed = t - self._beaten_since >= self.params.confirm_s - 1e-9
            dwell_s = min(self.params.min_dwell_s, DWELL_PER_WINDOW * state.evidence_window_s)
            dwelt = t - self.since >= dwell_s - 1e-9
            if confirmed and (dwelt or self._contradicted(state)):
                self.label, self.since, self._beaten_since = candidate, t, None
        if self.label != candidate:  # holding on: the held label's own confidence, which the evidence now doubts
            margins = label_margins(state, self.params)
            if self.label in margins:
                confidence = label_confidence_of(state, *margins[self.label])
        return replace(state, label=self.label, label_confidence=confidence)


def staleness_factor(age_s: float, stale_after_s: float) -> float:
    """1 for a fresh estimate, falling linearly to 0.5 at the staleness limit (0 beyond it)."""
    if age_s <= 0:
        return 1.0
    if age_s > stale_after_s:
        return 0.0
    return 1.0 - 0.5 * age_s / stale_after_s
