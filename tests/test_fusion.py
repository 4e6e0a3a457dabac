"""Late fusion over every subset of modalities: weights, ranges, missing modalities, smoothing, labels."""

from __future__ import annotations

import itertools
import math

import pytest

from edge.calibration import Calibrator
from edge.fusion import (FACE_CIRCUMPLEX, FusionParams, ModalityEstimate, Smoother, fuse, label_for,
                         map_to_affect, staleness_factor)
from edge.stream import MODALITIES

FER = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def make_estimate(modality: str, ts: float = 100.0, quality: float = 0.9, confidence: float = 0.8,
                  stress: float = 0.7, valence: float = 0.3, arousal: float = 0.4, face: str = "happy") -> ModalityEstimate:
    if modality == "face":
        probs = {k: (0.94 if k == face else 0.01) for k in FER}
        return ModalityEstimate("face", ts, {"label": face, "probs": probs}, confidence=confidence, quality=quality)
    if modality in ("eda", "cardiac"):
        return ModalityEstimate(modality, ts, {"stress": stress}, stress=stress, confidence=confidence, quality=quality)
    return ModalityEstimate("eeg", ts, {"valence": valence, "arousal": arousal}, valence=valence, arousal=arousal,
                            confidence=confidence, quality=quality)


SUBSETS = [c for r in range(0, len(MODALITIES) + 1) for c in itertools.combinations(MODALITIES, r)]


@pytest.mark.parametrize("subset", SUBSETS, ids=lambda s: "+".join(s) or "none")
def test_every_subset_fuses_into_range_with_weights_summing_to_one(subset):
    estimates = {m: make_estimate(m) for m in subset}
    state = fuse(estimates, 100.0, FusionParams())
    if not subset:
        assert state is None  # nothing to fuse: no state is published
        return
    assert set(state.contributions) == set(subset)
    weights = [c.weight for c in state.contributions.values()]
    assert math.isclose(sum(weights), 1.0, abs_tol=1e-9)
    assert all(0 <= w <= 1 for w in weights)
    assert -1 <= state.valence <= 1 and -1 <= state.arousal <= 1 and 0 <= state.stress <= 1
    assert 0 <= state.confidence <= 1
    payload = state.to_payload({m: "not configured" for m in MODALITIES if m not in subset}, {m: "1" for m in subset}, False)
    assert set(payload["missing"]) == set(MODALITIES) - set(subset)
    assert set(payload["modalities"]) == set(subset)


def test_quality_zero_gets_weight_zero_and_does_not_move_the_state():
    good = make_estimate("eda", stress=0.9)
    broken = make_estimate("eeg", quality=0.0, valence=0.9, arousal=-0.9)
    both = fuse({"eda": good, "eeg": broken}, 100.0, FusionParams())
    alone = fuse({"eda": good}, 100.0, FusionParams())
    assert both.contributions["eeg"].weight == 0.0
    assert both.valence == pytest.approx(alone.valence) and both.stress == pytest.approx(alone.stress)


def test_all_weights_zero_publishes_nothing():
    assert fuse({"eda": make_estimate("eda", quality=0.0), "face": make_estimate("face", confidence=0.0)},
                1.0, FusionParams()) is None


def test_one_modality_alone_follows_that_modality():
    stressed = fuse({"eda": make_estimate("eda", stress=0.95)}, 1.0, FusionParams())
    relaxed = fuse({"cardiac": make_estimate("cardiac", stress=0.05)}, 1.0, FusionParams())
    assert stressed.stress == pytest.approx(0.95) and stressed.label == "stressed" and stressed.arousal > 0.5
    assert relaxed.stress == pytest.approx(0.05) and relaxed.arousal < -0.5 and relaxed.label != "stressed"
    sad_face = fuse({"face": make_estimate("face", face="sad")}, 1.0, FusionParams())
    assert sad_face.valence < -0.5 and sad_face.label == "sad"
    happy_face = fuse({"face": make_estimate("face", face="happy")}, 1.0, FusionParams())
    assert happy_face.valence > 0.5 and happy_face.label in ("happy", "excited")
    eeg = fuse({"eeg": make_estimate("eeg", valence=0.6, arousal=-0.5)}, 1.0, FusionParams())
    assert eeg.valence == pytest.approx(0.6) and eeg.label == "calm"


def test_reliability_prior_shifts_weight():
    est = {"eda": make_estimate("eda", stress=0.9), "eeg": make_estimate("eeg", valence=0.5, arousal=-0.5)}
    trust_eda = fuse(est, 1.0, FusionParams(reliability={"eda": 1.0, "eeg": 0.1}))
    trust_eeg = fuse(est, 1.0, FusionParams(reliability={"eda": 0.1, "eeg": 1.0}))
    assert trust_eda.contributions["eda"].weight > 0.8 > trust_eeg.contributions["eda"].weight
    assert trust_eda.stress > trust_eeg.stress


def test_disagreement_lowers_confidence():
    agree = fuse({"eda": make_estimate("eda", stress=0.9), "face": make_estimate("face", face="angry")}, 1.0, FusionParams())
    disagree = fuse({"eda": make_estimate("eda", stress=0.9), "face": make_estimate("face", face="sad")}, 1.0, FusionParams())
    assert agree.confidence > disagree.confidence


def test_staleness_lowers_quality():
    est = {"eda": make_estimate("eda", stress=0.9), "eeg": make_estimate("eeg", valence=0.5, arousal=-0.5)}
    fresh = fuse(est, 1.0, FusionParams())
    old = fuse(est, 1.0, FusionParams(), staleness={"eda": staleness_factor(9.0, 10.0)})
    assert old.contributions["eda"].weight < fresh.contributions["eda"].weight
    assert staleness_factor(11.0, 10.0) == 0.0 and staleness_factor(0.0, 10.0) == 1.0


def test_smoothing_follows_the_source_clock():
    smoother = Smoother(tau_s=10.0)
    calm = fuse({"eda": make_estimate("eda", ts=0.0, stress=0.1)}, 0.0, FusionParams())
    tense = fuse({"eda": make_estimate("eda", ts=5.0, stress=0.9)}, 5.0, FusionParams())
    first = smoother(calm)
    second = smoother(tense)
    assert first.stress == pytest.approx(0.1)
    expected = 0.1 + (1 - math.exp(-0.5)) * 0.8  # alpha = 1 - exp(-dt / tau)
    assert second.stress == pytest.approx(expected)
    # a long gap lets the new value through almost entirely
    later = smoother(fuse({"eda": make_estimate("eda", ts=500.0, stress=0.9)}, 500.0, FusionParams()))
    assert later.stress == pytest.approx(0.9, abs=1e-3)
    assert Smoother(0.0)(tense).stress == pytest.approx(tense.stress)


def test_label_rule():
    assert label_for(0.0, 0.0, 0.7) == "stressed"
    assert label_for(0.1, 0.1, 0.1) == "neutral"
    assert label_for(0.2, 0.8, 0.1) == "excited"
    assert label_for(0.8, 0.2, 0.1) == "happy"
    assert label_for(-0.5, 0.5, 0.3) == "tense"
    assert label_for(-0.5, -0.5, 0.1) == "sad"
    assert label_for(0.5, -0.5, 0.1) == "calm"


def test_face_circumplex_covers_every_fer_class_and_maps_in_range():
    assert set(FACE_CIRCUMPLEX) == set(FER)
    for label in FER:
        affect = map_to_affect(make_estimate("face", face=label))
        assert -1 <= affect.valence <= 1 and -1 <= affect.arousal <= 1 and 0 <= affect.stress <= 1
    assert map_to_affect(make_estimate("face", face="fear")).stress > map_to_affect(make_estimate("face", face="happy")).stress


def test_calibration_subtracts_the_rest_baseline():
    cal = Calibrator(rest_s=60.0, rest_stress=0.2)
    cal.start(0.0)
    for t in range(10, 60, 10):
        out = cal.apply(make_estimate("eda", ts=float(t), stress=0.7))
        assert out.stress == pytest.approx(0.7)  # unchanged during rest
    assert not cal.is_calibrated(50.0) and cal.is_calibrated(60.0)
    after = cal.apply(make_estimate("eda", ts=70.0, stress=0.9))
    assert after.stress == pytest.approx(0.9 - 0.7 + 0.2)
    same = cal.apply(make_estimate("eda", ts=80.0, stress=0.7))
    assert same.stress == pytest.approx(0.2)
