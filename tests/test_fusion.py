"""Late fusion over every subset of modalities: per-dimension evidence, null dimensions, weights, smoothing,
labels, hysteresis and dwell."""

from __future__ import annotations

import itertools
import math

import pytest

from edge.calibration import Calibrator
from edge.fusion import (DIMENSIONS, FACE_CIRCUMPLEX, LABELS, FusedState, FusionParams, LabelHolder, ModalityEstimate,
                         Smoother, choose_label, fuse, map_to_affect, staleness_factor)
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
VALENCE_SOURCES = {"face", "eeg"}
PHYSIOLOGY_LABELS = {"stressed", "calm", "neutral", "uncertain"}


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
    assert -1 <= state.arousal <= 1 and 0 <= state.stress <= 1  # every modality measures these
    for dim in DIMENSIONS:
        assert 0 <= state.dimension_confidence(dim) <= 1
    assert 0 <= state.confidence <= 1 and 0 <= state.label_confidence <= 1 and state.label in LABELS
    if VALENCE_SOURCES & set(subset):
        assert -1 <= state.valence <= 1 and state.valence_confidence > 0
    else:  # physiology alone: valence is unknown, not 0.0, and the label never needs a valence
        assert state.valence is None and state.valence_confidence == 0.0
        assert state.label in PHYSIOLOGY_LABELS
    payload = state.to_payload({m: "not configured" for m in MODALITIES if m not in subset}, {m: "1" for m in subset}, False)
    assert set(payload["missing"]) == set(MODALITIES) - set(subset)
    assert set(payload["modalities"]) == set(subset)
    assert payload["schema_version"] == 2
    assert ("valence" in payload and payload["valence"] is None) == (not VALENCE_SOURCES & set(subset))
    for m in {"eda", "cardiac"} & set(subset):
        assert "valence" not in payload["modalities"][m]["outputs"]  # no valence is made up for them


@pytest.mark.parametrize("stress", [0.02, 0.5, 0.98])
def test_physiology_never_moves_valence(stress):
    face = make_estimate("face", face="happy")
    with_physiology = fuse({"face": face, "eda": make_estimate("eda", stress=stress),
                            "cardiac": make_estimate("cardiac", stress=stress)}, 1.0, FusionParams())
    face_alone = fuse({"face": face}, 1.0, FusionParams())
    assert with_physiology.valence == pytest.approx(face_alone.valence)
    assert with_physiology.valence_confidence == pytest.approx(face_alone.valence_confidence)
    assert with_physiology.stress != pytest.approx(face_alone.stress)  # but it does move stress
    alone = fuse({"eda": make_estimate("eda", stress=stress)}, 1.0, FusionParams())
    assert alone.valence is None and alone.valence_confidence == 0.0


def test_quality_zero_gets_weight_zero_and_does_not_move_the_state():
    good = make_estimate("eda", stress=0.9)
    broken = make_estimate("eeg", quality=0.0, valence=0.9, arousal=-0.9)
    both = fuse({"eda": good, "eeg": broken}, 100.0, FusionParams())
    alone = fuse({"eda": good}, 100.0, FusionParams())
    assert both.contributions["eeg"].weight == 0.0
    assert both.stress == pytest.approx(alone.stress) and both.arousal == pytest.approx(alone.arousal)
    assert both.valence is None and both.valence_confidence == 0.0  # a broken eeg informs nothing


def test_all_weights_zero_publishes_nothing():
    assert fuse({"eda": make_estimate("eda", quality=0.0), "face": make_estimate("face", confidence=0.0)},
                1.0, FusionParams()) is None


def test_one_modality_alone_follows_that_modality():
    stressed = fuse({"eda": make_estimate("eda", stress=0.95)}, 1.0, FusionParams())
    relaxed = fuse({"cardiac": make_estimate("cardiac", stress=0.05)}, 1.0, FusionParams())
    assert stressed.stress == pytest.approx(0.95) and stressed.label == "stressed" and stressed.arousal > 0.5
    assert relaxed.stress == pytest.approx(0.05) and relaxed.arousal < -0.5 and relaxed.label == "calm"
    middling = fuse({"eda": make_estimate("eda", stress=0.45)}, 1.0, FusionParams())
    assert middling.label == "neutral"
    sad_face = fuse({"face": make_estimate("face", face="sad")}, 1.0, FusionParams())
    assert sad_face.valence < -0.5 and sad_face.label == "sad"
    happy_face = fuse({"face": make_estimate("face", face="happy")}, 1.0, FusionParams())
    assert happy_face.valence > 0.5 and happy_face.label in ("happy", "excited")
    angry_face = fuse({"face": make_estimate("face", face="angry")}, 1.0, FusionParams())
    assert angry_face.label in ("tense", "stressed")
    eeg = fuse({"eeg": make_estimate("eeg", valence=0.6, arousal=-0.5)}, 1.0, FusionParams())
    assert eeg.valence == pytest.approx(0.6) and eeg.label == "calm"


def test_reliability_prior_shifts_weight():
    est = {"eda": make_estimate("eda", stress=0.9), "eeg": make_estimate("eeg", valence=0.5, arousal=-0.5)}
    trust_eda = fuse(est, 1.0, FusionParams(reliability={"eda": 1.0, "eeg": 0.1}))
    trust_eeg = fuse(est, 1.0, FusionParams(reliability={"eda": 0.1, "eeg": 1.0}))
    assert trust_eda.contributions["eda"].weight > 0.8 > trust_eeg.contributions["eda"].weight
    assert trust_eda.stress > trust_eeg.stress
    assert trust_eeg.valence_confidence > trust_eda.valence_confidence  # only eeg informs valence here


def test_disagreement_lowers_that_dimensions_confidence():
    agree = fuse({"eda": make_estimate("eda", stress=0.9), "cardiac": make_estimate("cardiac", stress=0.85)}, 1.0, FusionParams())
    disagree = fuse({"eda": make_estimate("eda", stress=0.9), "cardiac": make_estimate("cardiac", stress=0.1)}, 1.0, FusionParams())
    assert agree.stress_confidence > disagree.stress_confidence + 0.2
    faces = {"face": make_estimate("face", face="happy")}
    v_agree = fuse({**faces, "eeg": make_estimate("eeg", valence=0.8, arousal=0.2)}, 1.0, FusionParams())
    v_disagree = fuse({**faces, "eeg": make_estimate("eeg", valence=-0.8, arousal=0.2)}, 1.0, FusionParams())
    assert v_agree.valence_confidence > v_disagree.valence_confidence


def test_more_good_modalities_give_more_evidence():
    one = fuse({"eda": make_estimate("eda", stress=0.8)}, 1.0, FusionParams())
    two = fuse({"eda": make_estimate("eda", stress=0.8), "cardiac": make_estimate("cardiac", stress=0.8)}, 1.0, FusionParams())
    poor = fuse({"eda": make_estimate("eda", stress=0.8, quality=0.2)}, 1.0, FusionParams())
    assert two.stress_confidence > one.stress_confidence > poor.stress_confidence


def test_weak_evidence_is_labelled_uncertain():
    params = FusionParams()
    poor = fuse({"eda": make_estimate("eda", stress=0.9, quality=0.1)}, 1.0, params)
    assert poor.label == "uncertain" and poor.label_confidence < params.uncertain_below
    # a fair signal right at the stress threshold: half sure of a border reading, times its quality
    border = fuse({"eda": make_estimate("eda", stress=params.stress_threshold + 0.001, quality=0.25)}, 1.0, params)
    assert border.label == "uncertain" and border.label_confidence < params.uncertain_below
    clear = fuse({"eda": make_estimate("eda", stress=0.9, quality=0.25)}, 1.0, params)
    assert clear.label == "stressed"
    torn = fuse({"eda": make_estimate("eda", stress=0.95, quality=0.5), "cardiac": make_estimate("cardiac", stress=0.05, quality=0.5)},
                1.0, FusionParams())
    assert torn.label == "uncertain"
    # their stress is too split to inform, their (derived, 0.8-scaled) arousal just informed: arousal alone says nothing
    assert torn.arousal_confidence >= params.min_dimension_confidence > torn.stress_confidence


def test_staleness_lowers_quality():
    est = {"eda": make_estimate("eda", stress=0.9), "eeg": make_estimate("eeg", valence=0.5, arousal=-0.5)}
    fresh = fuse(est, 1.0, FusionParams())
    old = fuse(est, 1.0, FusionParams(), staleness={"eda": staleness_factor(9.0, 10.0)})
    assert old.contributions["eda"].weight < fresh.contributions["eda"].weight
    assert old.stress_confidence < fresh.stress_confidence
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


def test_smoothing_never_carries_a_dimension_past_its_evidence():
    smoother = Smoother(tau_s=10.0)
    with_face = smoother(fuse({"face": make_estimate("face", ts=0.0, face="sad"), "eda": make_estimate("eda", ts=0.0)}, 0.0, FusionParams()))
    assert with_face.valence < -0.5
    without = smoother(fuse({"eda": make_estimate("eda", ts=5.0)}, 5.0, FusionParams()))
    assert without.valence is None  # not a decaying -0.4
    back = smoother(fuse({"face": make_estimate("face", ts=10.0, face="happy"), "eda": make_estimate("eda", ts=10.0)}, 10.0, FusionParams()))
    assert back.valence > 0.5  # restarts from the new reading, not from the old sad one


def constructed(t: float, valence: float | None = None, arousal: float | None = None, stress: float | None = None,
                confidence: float = 0.9) -> FusedState:
    """A state with the given dimensions (None = uninformed), each with ``confidence``."""
    def c(x: float | None) -> float:
        return 0.0 if x is None else confidence
    return FusedState(t, valence, arousal, stress, "uncertain", confidence, {}, c(valence), c(arousal), c(stress))


def test_label_rule():
    p = FusionParams()
    assert choose_label(constructed(0, 0.0, 0.0, 0.7), p)[0] == "stressed"
    assert choose_label(constructed(0, 0.1, 0.1, 0.1), p)[0] == "neutral"
    assert choose_label(constructed(0, 0.2, 0.8, 0.1), p)[0] == "excited"
    assert choose_label(constructed(0, 0.8, 0.2, 0.1), p)[0] == "happy"
    assert choose_label(constructed(0, -0.5, 0.5, 0.3), p)[0] == "tense"
    assert choose_label(constructed(0, -0.5, -0.5, 0.1), p)[0] == "sad"
    assert choose_label(constructed(0, 0.5, -0.5, 0.1), p)[0] == "calm"
    assert choose_label(constructed(0, -0.1, -0.5, 0.1), p)[0] == "calm"  # a valence near 0 is not "sad"
    assert choose_label(constructed(0, -0.1, 0.5, 0.3), p)[0] == "excited"  # ... nor "tense"
    # physiology only (no valence): stressed / neutral / calm, never a valence label
    assert choose_label(constructed(0, None, 0.6, 0.8), p)[0] == "stressed"
    assert choose_label(constructed(0, None, 0.0, 0.45), p)[0] == "neutral"
    assert choose_label(constructed(0, None, -0.6, 0.1), p)[0] == "calm"
    assert choose_label(constructed(0, None, None, None), p) == ("uncertain", 0.0)
    # a dimension below min_dimension_confidence does not choose the label
    weak_valence = constructed(0, -0.9, -0.5, 0.1)
    weak_valence = FusedState(0, -0.9, -0.5, 0.1, "x", 0.5, {}, 0.05, 0.9, 0.9)
    assert choose_label(weak_valence, p)[0] == "calm"
    # label confidence: deeper inside the region and better informed -> surer
    deep = choose_label(constructed(0, None, 0.6, 0.95), p)[1]
    border = choose_label(constructed(0, None, 0.6, 0.61), p)[1]
    thin = choose_label(constructed(0, None, 0.6, 0.95, confidence=0.5), p)[1]
    assert deep > border and deep > thin and 0 < border < deep <= 1


def hold_sequence(stresses: list[float], params: FusionParams, hop_s: float = 5.0) -> list[str]:
    holder = LabelHolder(params)
    return [holder(constructed(i * hop_s, None, 0.0, s)).label for i, s in enumerate(stresses)]


def test_hysteresis_holds_a_label_through_noise_around_its_border():
    noisy = [0.9] + [0.6 + (0.04 if i % 2 else -0.04) for i in range(40)]  # straddles stress_threshold 0.6
    free = FusionParams(stress_threshold=0.6, label_hysteresis=0.0, confirm_s=0.0, min_dwell_s=0.0)
    labels = hold_sequence(noisy, free)
    assert sum(a != b for a, b in zip(labels, labels[1:])) > 20  # without hysteresis it flips every hop
    held = hold_sequence(noisy, FusionParams(stress_threshold=0.6, label_hysteresis=0.1, confirm_s=0.0, min_dwell_s=0.0))
    assert set(held) == {"stressed"}
    clear = hold_sequence([0.9] * 3 + [0.4] * 3, FusionParams(stress_threshold=0.6, label_hysteresis=0.1, confirm_s=0.0, min_dwell_s=0.0))
    assert clear == ["stressed"] * 3 + ["neutral"] * 3  # evidence well past the border does change it


def test_dwell_and_confirmation_on_the_source_clock():
    params = FusionParams(stress_threshold=0.6, label_hysteresis=0.0, confirm_s=15.0, min_dwell_s=60.0)
    # stressed from t=0; from t=20 s a little below the threshold: held until 60 s of dwell have passed
    labels = hold_sequence([0.7] * 4 + [0.5] * 20, params)
    first_neutral = labels.index("neutral")
    assert labels[:first_neutral] == ["stressed"] * first_neutral and first_neutral * 5.0 == pytest.approx(60.0)
    # evidence decisively against the shown label: it goes after confirm_s, dwell or not
    decisive = hold_sequence([0.9] * 4 + [0.1] * 20, params)
    assert decisive.index("calm") * 5.0 == pytest.approx(20.0 + 15.0)
    # after the dwell, a one-hop blip does not change the label; a lasting change does, after confirm_s
    blip = hold_sequence([0.5] * 20 + [0.7] + [0.5] * 10, params)
    assert set(blip) == {"neutral"}
    lasting = hold_sequence([0.5] * 20 + [0.7] * 10, params)
    assert lasting.index("stressed") == 20 + 3  # 15 s of confirmation at a 5-s hop
    # losing to changing labels counts as losing: neutral beaten by calm, then stressed, then calm
    mixed = hold_sequence([0.4] * 20 + [0.1, 0.9, 0.1, 0.9] + [0.1] * 4,
                          FusionParams(stress_threshold=0.6, label_hysteresis=0.0, confirm_s=15.0, min_dwell_s=0.0))
    assert mixed[20:23] == ["neutral"] * 3 and mixed[23] != "neutral"
    holder = LabelHolder(params)  # a source clock going back (new recording) starts over
    holder(constructed(100.0, None, 0.0, 0.9))
    assert holder(constructed(10.0, None, 0.0, 0.1)).label == "calm"


def test_a_held_label_whose_evidence_is_gone_changes_at_once():
    params = FusionParams(min_dwell_s=600.0, confirm_s=60.0)
    holder = LabelHolder(params)
    sad = holder(constructed(0.0, -0.8, -0.5, 0.1))
    assert sad.label == "sad"
    physiology_only = holder(constructed(5.0, None, -0.5, 0.1))
    assert physiology_only.label == "calm"  # no valence source left: "sad" may not stand


def test_held_label_reports_its_own_doubted_confidence():
    params = FusionParams(stress_threshold=0.6, label_hysteresis=0.0, confirm_s=0.0, min_dwell_s=60.0)
    holder = LabelHolder(params)
    sure = holder(constructed(0.0, None, 0.0, 0.95))
    doubted = holder(constructed(5.0, None, 0.0, 0.5))  # below the threshold, not decisively
    assert doubted.label == "stressed" and doubted.label_confidence < sure.label_confidence


def test_face_circumplex_covers_every_fer_class_and_maps_in_range():
    assert set(FACE_CIRCUMPLEX) == set(FER)
    for label in FER:
        affect = map_to_affect(make_estimate("face", face=label))
        assert affect.valence is not None and -1 <= affect.valence <= 1 and -1 <= affect.arousal <= 1 and 0 <= affect.stress <= 1
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


@pytest.mark.parametrize("expression, expected", [
    ("happy", {"happy", "excited"}), ("sad", {"sad"}), ("angry", {"tense", "stressed"}),
    ("fear", {"tense", "stressed"}), ("disgust", {"tense", "stressed"}), ("surprise", {"excited", "tense"}),
    ("neutral", {"neutral", "calm"}),
])
def test_a_face_alone_reads_as_its_place_on_the_circumplex(expression, expected):
    """Face only (quality 0.8): the label agrees with the expression, and is not 'uncertain'."""
    state = fuse({"face": make_estimate("face", face=expression, quality=0.8, confidence=0.9)}, 1.0, FusionParams())
    assert state.label in expected and state.label_confidence >= FusionParams().uncertain_below, (state.label, state.label_confidence)


def test_a_label_read_off_fast_evidence_dwells_less():
    """Face windows are 1 s: a new expression shows after confirm_s, not after the physiology's 3-minute dwell."""
    params = FusionParams(label_hysteresis=0.0, confirm_s=10.0, min_dwell_s=180.0)

    def face_labels(window_s: float) -> list[str]:
        holder, out = LabelHolder(params), []
        for i in range(20):  # 50 s of a happy face, then one between neutral, surprise and happy: just "excited"
            probs = ({"happy": 0.9, "neutral": 0.1} if i < 10 else {"neutral": 0.5, "surprise": 0.27, "happy": 0.23})
            e = ModalityEstimate("face", i * 5.0, {"label": "x", "probs": probs}, confidence=0.9, quality=0.9, window_s=window_s)
            out.append(holder(fuse({"face": e}, i * 5.0, params)).label)
        return out

    fast = face_labels(1.0)
    assert fast[:10] == ["happy"] * 10 and fast[-1] != "happy"
    slow = face_labels(300.0)  # the same readings from a 300-s window would dwell
    assert set(slow) == {"happy"}


# A clear expression with the confusions FER2013 models typically share it with (face 1.4.0's
# confusion matrix: sad with angry/fear/neutral, fear with surprise/sad, ...).
TYPICAL_FACES = {
    "happy": ({"happy": 0.6, "neutral": 0.25, "surprise": 0.15}, {"happy", "excited"}),
    "sad": ({"sad": 0.5, "angry": 0.2, "fear": 0.2, "neutral": 0.1}, {"sad"}),
    "angry": ({"angry": 0.5, "sad": 0.2, "disgust": 0.15, "fear": 0.15}, {"tense", "stressed"}),
    "fear": ({"fear": 0.5, "surprise": 0.2, "sad": 0.2, "angry": 0.1}, {"tense", "stressed"}),
    "disgust": ({"disgust": 0.5, "angry": 0.3, "sad": 0.2}, {"tense", "stressed"}),
    "surprise": ({"surprise": 0.6, "fear": 0.25, "happy": 0.15}, {"excited", "tense"}),
    "neutral": ({"neutral": 0.5, "sad": 0.3, "happy": 0.2}, {"neutral", "calm"}),
}


@pytest.mark.parametrize("expression", sorted(TYPICAL_FACES))
def test_a_clear_face_with_its_usual_confusions_reads_as_its_own_place(expression):
    """Face only: the label is the expression's region of the circumplex, held steady through the LabelHolder."""
    probs, expected = TYPICAL_FACES[expression]
    params = FusionParams()
    holder = LabelHolder(params)
    for i in range(30):
        e = ModalityEstimate("face", float(i), {"label": expression, "probs": probs}, confidence=max(probs.values()),
                             quality=0.8, window_s=1.0)
        state = holder(fuse({"face": e}, float(i), params))
        assert state.label in expected, (i, state.label, state.valence, state.arousal, state.stress)
        assert state.valence is not None and state.arousal is not None


def test_a_sad_face_is_not_pulled_into_tense_by_its_runner_up_classes():
    """The plain probability-weighted mean puts this sad face above the horizontal axis (tense); the face's own place is sad."""
    probs = TYPICAL_FACES["sad"][0]
    plain_arousal = sum(p * FACE_CIRCUMPLEX[k][1] for k, p in probs.items())
    assert plain_arousal > 0  # what the mixture's mean alone would say: activated, i.e. tense
    e = ModalityEstimate("face", 0.0, {"label": "sad", "probs": probs}, confidence=0.5, quality=0.8, window_s=1.0)
    affect = map_to_affect(e)
    assert affect.arousal < 0 and affect.valence < -0.5
    assert fuse({"face": e}, 0.0, FusionParams()).label == "sad"
    # the published outputs stay the model's own probabilities
    assert fuse({"face": e}, 0.0, FusionParams()).contributions["face"].outputs["probs"] == probs


def test_a_face_torn_between_classes_is_less_sure_of_its_dimensions_than_a_clear_one():
    """A face split between happy and sad averages to near-neutral valence; its valence confidence says it is split."""
    def face(probs: dict[str, float]) -> FusedState:
        e = ModalityEstimate("face", 0.0, {"label": "x", "probs": probs}, confidence=max(probs.values()), quality=0.9,
                             window_s=1.0)
        return fuse({"face": e}, 0.0, FusionParams())

    clear = face({"happy": 0.9, "neutral": 0.1})
    torn = face({"happy": 0.5, "sad": 0.5})
    assert abs(torn.valence) < 0.1  # the mean alone would claim a confident "neutral"
    assert torn.valence_confidence < 0.5 * clear.valence_confidence
    assert torn.label_confidence < clear.label_confidence
    # the split is the face's own: an eeg reading that agrees with the face's mean does not hide it
    def with_agreeing_eeg(probs: dict[str, float]) -> FusedState:
        alone = face(probs)
        e = ModalityEstimate("face", 0.0, {"probs": probs}, confidence=max(probs.values()), quality=0.9, window_s=1.0)
        eeg = make_estimate("eeg", valence=alone.valence, arousal=alone.arousal, quality=0.9)
        return fuse({"face": e, "eeg": eeg}, 0.0, FusionParams())

    assert with_agreeing_eeg({"happy": 0.5, "sad": 0.5}).valence_confidence < \
        with_agreeing_eeg({"happy": 0.9, "neutral": 0.1}).valence_confidence - 0.2


def test_a_face_with_nan_or_inf_probabilities_still_maps_into_range():
    for bad in (math.nan, math.inf, -math.inf, 1e300):
        e = ModalityEstimate("face", 0.0, {"probs": {"happy": bad, "sad": 0.5, "neutral": 0.2}}, confidence=0.5, quality=0.9)
        affect = map_to_affect(e)
        for dim in DIMENSIONS:
            assert math.isfinite(affect.get(dim)) and math.isfinite(affect.spread_of(dim)), (bad, dim)
        state = fuse({"face": e}, 0.0, FusionParams())
        assert state is not None and -1 <= state.valence <= 1 and 0 <= state.valence_confidence <= 1
