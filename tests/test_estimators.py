"""Estimators on synthetic windows with the real shipped models: window -> features -> model -> estimate."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import Config
from edge.daemon import Pipeline, load_estimators, window_spec
from edge.estimators import (CardiacEstimator, EdaEstimator, EegEstimator, EstimateUnavailable, FaceEstimator,
                             FrameWindow, StreamWindow)
from edge.models import TFLiteModel
from edge.stream import SampleBlock
from firmware_bridge.simulate import CHANNELS, RATES_HZ, WearableSignals

CONFIG = Config()


@pytest.fixture(scope="module")
def signals() -> dict[str, np.ndarray]:
    """Simulated physiology along the script (calm 0-180 s, stressed 180-330, amused 330-480, calm 480-780)."""
    gen = WearableSignals(seed=11)
    out = {}
    for stream in ("eeg", "ecg", "eda"):
        t = np.arange(int(780 * RATES_HZ[stream])) / RATES_HZ[stream]
        out[stream] = np.asarray(gen.chunk(stream, t), dtype=np.float32).reshape(len(t), -1)
    return out


def make_window(stream: str, data: np.ndarray, start_s: float, length_s: float, t0: float = 1e9) -> StreamWindow:
    rate = RATES_HZ[stream]
    i0, i1 = int(start_s * rate), int((start_s + length_s) * rate)
    times = t0 + np.arange(i0, i1) / rate
    return StreamWindow(stream, t0 + start_s, t0 + start_s + length_s, rate, times, data[i0:i1], CHANNELS[stream])


def estimator(modality: str):
    model = TFLiteModel(modality)
    window = window_spec(CONFIG, modality, model.manifest)
    cls = {"eda": EdaEstimator, "cardiac": CardiacEstimator, "eeg": EegEstimator}[modality]
    return cls(model, window)


@pytest.mark.parametrize("modality, stream", [("eda", "eda"), ("cardiac", "ecg"), ("eeg", "eeg")])
def test_estimate_has_the_contract_fields_in_range(signals, modality, stream):
    est = estimator(modality)
    length = est.window.length_s
    w = make_window(stream, signals[stream], 330.0 - length, length)
    e = est.estimate(w.end_unix, {stream: w})
    assert e.modality == modality and e.ts_unix == w.end_unix  # ts = the window's end, source clock
    assert 0 < e.quality <= 1 and 0 < e.confidence <= 1
    assert e.model_version == TFLiteModel(modality).version
    if modality == "eeg":
        assert -1 <= e.valence <= 1 and -1 <= e.arousal <= 1 and e.stress is None
        assert set(e.outputs) == {"valence", "arousal", "valence_absolute", "arousal_absolute"}
        assert e.valence == pytest.approx(0.0, abs=1e-6)  # the first window is its own baseline: no change yet
    else:
        assert 0 <= e.stress <= 1 and e.outputs["stress"] == pytest.approx(e.stress, abs=1e-3)


def test_cardiac_model_ranks_windows_with_the_stress_phase_above_calm_ones(signals):
    """Windows holding the script's stress phase (180-330 s) score above all-calm windows (480-780 s).

    (The shipped EDA model does not separate the simulator's phases reliably; see the EDA model card.)
    """
    est = estimator("cardiac")
    length = est.window.length_s
    assert length <= 330.0, "window longer than the test signal's first cycle"
    stress = {}
    for end in np.arange(length / 2, 781.0, est.window.hop_s):  # in time order, as the daemon runs it
        start = max(0.0, end - length)  # warm-up: the window holds what has arrived so far
        w = make_window("ecg", signals["ecg"], start, end - start)
        w = StreamWindow("ecg", end - length + 1e9, end + 1e9, w.rate_hz, w.times, w.values, w.channels)
        stress[float(end)] = est.estimate(w.end_unix, {"ecg": w}).stress
    stressed = [stress[end] for end in (330.0, 360.0)]
    calm = [stress[end] for end in (720.0, 750.0, 780.0)]
    assert min(stressed) > max(calm), (stressed, calm)


def test_gaps_lower_quality_and_an_almost_empty_window_gives_no_estimate(signals):
    est = estimator("eda")
    length = est.window.length_s
    full = make_window("eda", signals["eda"], 780.0 - length, length)
    keep = np.ones(len(full.times), bool)
    keep[: len(keep) // 4] = False  # a quarter lost on the link
    gappy = StreamWindow("eda", full.start_unix, full.end_unix, full.rate_hz, full.times[keep], full.values[keep])
    q_full = est.estimate(full.end_unix, {"eda": full}).quality
    q_gappy = est.estimate(full.end_unix, {"eda": gappy}).quality
    assert q_gappy < q_full
    keep[: int(len(keep) * 0.8)] = False
    sparse = StreamWindow("eda", full.start_unix, full.end_unix, full.rate_hz, full.times[keep], full.values[keep])
    with pytest.raises(EstimateUnavailable):
        est.estimate(full.end_unix, {"eda": sparse})


def test_flat_or_missing_signals_give_a_reason_not_a_number(signals):
    est = estimator("cardiac")
    w = make_window("ecg", signals["ecg"], 0.0, est.window.length_s)
    flat = StreamWindow("ecg", w.start_unix, w.end_unix, w.rate_hz, w.times, np.zeros_like(w.values))
    with pytest.raises(EstimateUnavailable, match="beats"):
        est.estimate(w.end_unix, {"ecg": flat})
    with pytest.raises(EstimateUnavailable):
        est.estimate(w.end_unix, {})
    eeg = estimator("eeg")
    e = make_window("eeg", signals["eeg"], 10.0, eeg.window.length_s)
    no_frontal = StreamWindow("eeg", e.start_unix, e.end_unix, e.rate_hz, e.times, e.values, ("O1", "O2", "P3", "P4"))
    with pytest.raises(EstimateUnavailable, match="frontal"):
        eeg.estimate(e.end_unix, {"eeg": no_frontal})


def test_cardiac_uses_ibi_events_when_there_is_no_waveform():
    est = estimator("cardiac")
    rng = np.random.default_rng(0)
    ibi_ms = 850 + 40 * np.sin(np.arange(120) * 0.8) + rng.normal(0, 15, 120)
    times = 1e9 + np.cumsum(ibi_ms) / 1000.0
    end = float(times[-1]) + 0.1
    inside = times >= end - est.window.length_s
    w = StreamWindow("ibi", end - est.window.length_s, end, 0.0, times[inside], ibi_ms[inside, None])
    e = est.estimate(end, {"ibi": w})
    assert 0 <= e.stress <= 1 and e.outputs["source_stream"] == "ibi"
    assert e.outputs["hr_bpm"] == pytest.approx(60000 / 850, rel=0.05)


def test_face_without_a_face_reports_it():
    model = TFLiteModel("face")
    est = FaceEstimator(model, window_spec(CONFIG, "face", model.manifest))
    blank = [np.full((240, 320), 128, np.uint8) for _ in range(3)]
    with pytest.raises(EstimateUnavailable, match="no face"):
        est.estimate(1.0, {"video": FrameWindow(0.0, 1.0, [0.1, 0.4, 0.7], blank)})


def test_face_on_a_real_face_gives_probabilities(shared_data):
    import cv2

    folder = shared_data / "fer2013" / "train" / "happy"
    images = sorted(folder.glob("*.jpg"))[:40]
    model = TFLiteModel("face")
    est = FaceEstimator(model, window_spec(CONFIG, "face", model.manifest), min_face_px=48)
    for path in images:  # a FER crop, enlarged and framed like a camera image
        face = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (160, 160), interpolation=cv2.INTER_CUBIC)
        frame = np.full((240, 320), 110, np.uint8)
        frame[40:200, 80:240] = face
        try:
            e = est.estimate(1.0, {"video": FrameWindow(0.0, 1.0, [0.5], [frame])})
        except EstimateUnavailable:
            continue
        assert set(e.outputs["probs"]) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
        assert sum(e.outputs["probs"].values()) == pytest.approx(1.0, abs=0.02)
        assert 0 < e.quality <= 1 and 0 < e.confidence <= 1
        return
    pytest.fail("the detector found no face in 40 enlarged FER2013 crops")


def test_pipeline_windows_follow_the_source_clock_and_hop(signals):
    estimators, reasons = load_estimators(Config())
    assert not reasons, reasons  # every shipped model loads and verifies
    pipe = Pipeline(Config(), {"eeg": estimators["eeg"]}, {"eeg"})
    t0 = 1_700_000_000.0
    eeg = signals["eeg"]
    states = []
    for i in range(0, 60 * 256, 64):  # 0.25 s blocks, like a Muse
        states += pipe.ingest(SampleBlock("eeg", t0 + i / 256, 256.0, eeg[i:i + 64], CHANNELS["eeg"]))
    spec = estimators["eeg"].window
    ends = [e.ts_unix for e in pipe.latest["eeg"]]
    assert np.allclose(np.diff(ends), spec.hop_s)
    assert (ends[-1] - (t0 + spec.length_s)) / spec.hop_s == pytest.approx(round((ends[-1] - t0 - spec.length_s) / spec.hop_s))
    ts = [s.payload["ts"] for s in states]
    hop = CONFIG.fusion.hop_s  # fusion on a grid from the first sample, starting at the first window's end
    assert ts[0] == pytest.approx(t0 + np.ceil(spec.length_s / hop) * hop)
    assert np.allclose(np.diff(ts), CONFIG.fusion.hop_s)
    assert all(s.payload["missing"] == [] for s in states)


def test_a_model_no_source_can_feed_is_not_loaded():
    """A wrist-only device does not pay for the face model, OpenCV and the detector (22 MB, 30 ms here)."""
    from edge.daemon import fed_modalities

    assert fed_modalities(["simulate:seed=1"]) == {"eeg", "cardiac", "eda"}
    assert fed_modalities(["replay:e4:/data/S02", "camera:0"]) == {"eda", "cardiac", "face"}
    assert fed_modalities(["ble:polar-h10:AA:BB", "serial:framed:/dev/ttyUSB0"]) is None  # framed: any stream
    assert fed_modalities(["replay:somethingnew:/x"]) is None
    estimators, reasons = load_estimators(Config(), only={"eda", "cardiac"})
    assert set(estimators) == {"eda", "cardiac"} and not reasons


def test_cardiac_beats_found_incrementally_match_a_full_detection(signals):
    """Sliding 5 s at a time, beats are reused from earlier windows: same estimates as detecting afresh."""
    import copy

    sliding = estimator("cardiac")
    length = sliding.window.length_s
    for end in np.arange(length, 780.0 + 1e-9, 5.0):
        w = make_window("ecg", signals["ecg"], end - length, length)
        fresh = CardiacEstimator(sliding.model, sliding.window)
        fresh._baselines = copy.deepcopy(sliding._baselines)  # same trailing history, beats detected afresh
        a, b = sliding.estimate(w.end_unix, {"ecg": w}), fresh.estimate(w.end_unix, {"ecg": w})
        assert abs(a.stress - b.stress) <= 0.02 and abs(a.outputs["hr_bpm"] - b.outputs["hr_bpm"]) <= 1.0, end
        assert abs(len(sliding.beat_times_of(w)) - len(fresh.beat_times_of(w))) <= 2


def test_a_manifest_with_a_broken_trailing_baseline_is_refused_in_one_line():
    from edge.errors import ModelIntegrityError
    from edge.estimators import check_feature_names
    from edge.features.baseline import input_names
    from edge.features.eda import EDA_FEATURE_NAMES

    good = {"feature_names": list(EDA_FEATURE_NAMES),
            "trailing_baseline": {"span_s": 1200.0, "input_names": input_names(EDA_FEATURE_NAMES)}}
    check_feature_names("eda", {"preprocessing": good})
    for broken, match in (({"span_s": 0}, "span_s 0 is not"), ({"span_s": "20 min"}, "span_s '20 min'"),
                          ({"span_s": 600.0, "input_names": list(EDA_FEATURE_NAMES) * 2}, "input_names")):
        with pytest.raises(ModelIntegrityError, match=match) as info:
            check_feature_names("eda", {"preprocessing": {**good, "trailing_baseline": broken}})
        assert "\n" not in str(info.value)


def eeg_run(est, data: np.ndarray, start_s: float, end_s: float, t0: float = 1e9) -> list:
    hop, length = est.window.hop_s, est.window.length_s
    return [est.estimate(t0 + end, {"eeg": make_window("eeg", data, end - length, length, t0)})
            for end in np.arange(start_s + length, end_s + 1e-9, hop)]


def test_eeg_is_read_against_the_wearers_own_trailing_baseline(signals):
    """Two wearers whose headsets differ by a constant asymmetry offset: absolute valence differs, relative much less."""
    plain = signals["eeg"]
    offset = plain.copy()
    offset[:, 2] *= 1.35  # AF8 35 % larger: ln-power asymmetry +0.6, a fit/skin difference, not an emotion
    a, b = estimator("eeg"), estimator("eeg")
    run_a, run_b = eeg_run(a, plain, 0.0, 480.0), eeg_run(b, offset, 0.0, 480.0)
    late = slice(len(run_a) // 2, None)  # after a few minutes of baseline
    abs_gap = np.mean([abs(x.outputs["valence_absolute"] - y.outputs["valence_absolute"]) for x, y in zip(run_a[late], run_b[late])])
    rel_gap = np.mean([abs(x.valence - y.valence) for x, y in zip(run_a[late], run_b[late])])
    assert abs_gap > 0.2 and rel_gap < abs_gap / 2, (abs_gap, rel_gap)
    amused = [e.valence for e in run_a if 1e9 + 380 <= e.ts_unix <= 1e9 + 480]
    stressed = [e.valence for e in run_a if 1e9 + 230 <= e.ts_unix <= 1e9 + 330]
    assert np.mean(amused) > np.mean(stressed)  # the script's valence still shows, as change
    assert run_a[0].confidence < run_a[-1].confidence  # a new baseline is trusted less


def test_eeg_baseline_is_saved_and_resumed_for_the_same_model(signals, tmp_path):
    from edge.baseline_store import load_baselines, save_baselines, store_path

    before = estimator("eeg")
    eeg_run(before, signals["eeg"], 0.0, 300.0)
    path = store_path(tmp_path, "head-1")
    assert save_baselines(path, {"eeg": before})
    after = estimator("eeg")
    assert load_baselines(path, {"eeg": after}) == len(before.baseline_states()["eeg"]["ends"]) > 100
    for x, y in zip(eeg_run(before, signals["eeg"], 300.0, 360.0), eeg_run(after, signals["eeg"], 300.0, 360.0)):
        assert x.valence == pytest.approx(y.valence, abs=1e-5) and x.confidence == pytest.approx(y.confidence, abs=1e-6)
