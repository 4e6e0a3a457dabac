"""The Stress-Predict loader and ``emotion-edge models evaluate ... --dataset stress-predict:DIR`` on a
tiny dataset written here in the study's layout (Raw_data/SXX E4 CSVs + the processed label file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from edge.errors import DatasetError
from edge.tools import stress_predict as sp

DURATION_S = 720
STRESS_S = (360, 540)  # the synthetic "task": seconds after the session start
STARTS = {"S01": 1644226061.0, "S02": 1644227574.0}


def _scr_train(t: np.ndarray, onsets: np.ndarray, amp: float) -> np.ndarray:
    out = np.zeros_like(t)
    for onset in onsets:
        dt = np.clip(t - onset, 0, None)
        out += amp * (np.exp(-dt / 5.0) - np.exp(-dt / 0.75)) * (t >= onset) / 0.6
    return out


def write_subject(folder: Path, start: float, seed: int, level_us: float) -> None:
    """E4-layout CSVs: calm EDA/HR outside STRESS_S, SCR bursts, rising SCL and faster pulse inside."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    t_eda = np.arange(DURATION_S * 4) / 4.0
    stress = (t_eda >= STRESS_S[0]) & (t_eda < STRESS_S[1])
    onsets = np.concatenate([rng.uniform(0, DURATION_S, 6), np.arange(STRESS_S[0] + 3, STRESS_S[1], 9.0)])
    eda = level_us + 0.004 * np.clip(t_eda - STRESS_S[0], 0, None) * stress + _scr_train(t_eda, np.sort(onsets), 0.25)
    eda += rng.normal(0, 0.003, len(eda))
    (folder / "EDA.csv").write_text(f"{start:.6f}\n4.000000\n" + "\n".join(f"{v:.6f}" for v in eda) + "\n")
    # pulse: 62 bpm at rest, 95 bpm in the task, breathing-modulated
    t_bvp = np.arange(DURATION_S * 64) / 64.0
    hr_hz = np.where((t_bvp >= STRESS_S[0]) & (t_bvp < STRESS_S[1]), 95 / 60, 62 / 60)
    hr_hz = hr_hz * (1 + 0.04 * np.sin(2 * np.pi * 0.25 * t_bvp))
    phase = np.cumsum(hr_hz) / 64.0
    beat_idx = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    bvp = rng.normal(0, 2.0, len(t_bvp))
    for b in beat_idx:
        seg = slice(b, min(b + 40, len(bvp)))
        dt = t_bvp[seg] - t_bvp[b]
        bvp[seg] -= 60 * np.exp(-0.5 * ((dt - 0.15) / 0.06) ** 2)  # Empatica-like downward pulse
    (folder / "BVP.csv").write_text(f"{start:.0f}\n64\n" + "\n".join(f"{v:.2f}" for v in bvp) + "\n")
    beat_t = t_bvp[beat_idx]
    ibi_rows = "\n".join(f"{a:.6f},{b:.6f}" for a, b in zip(beat_t[1:], np.diff(beat_t)))
    (folder / "IBI.csv").write_text(f"{start:.6f}, IBI\n{ibi_rows}\n")
    (folder / "HR.csv").write_text(f"{start + 10:.2f}\n1.00\n" + "\n".join("70" for _ in range(DURATION_S - 10)) + "\n")
    (folder / f"tags_{folder.name}.csv").write_text(f"{start + STRESS_S[0]}\n{start + STRESS_S[1]}\n")


def write_labels(root: Path, participants: dict[int, float], offset_s: float = 0.0) -> None:
    rows = ["Participant,HR,respr,Time(sec),Label"]
    for p, start in participants.items():
        for s in range(9, DURATION_S):
            label = int(STRESS_S[0] <= s < STRESS_S[1])
            rows.append(f"{p},75,14.0,{int(start + s + offset_s)},{label}")
    (root / "Processed_data").mkdir(parents=True, exist_ok=True)
    (root / sp.LABEL_FILE).write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stress-predict")
    write_subject(root / "Raw_data" / "S01", STARTS["S01"], seed=1, level_us=0.8)
    write_subject(root / "Raw_data" / "S02", STARTS["S02"], seed=2, level_us=6.0)
    (root / "Raw_data" / "Readme").write_text("E4 exports\n")
    write_labels(root, {1: STARTS["S01"], 2: STARTS["S02"]})
    return root


def test_loader_maps_participants_to_folders_and_labels_windows(dataset: Path):
    labels = sp.load_labels(dataset)
    assert sorted(labels) == ["S01", "S02"]
    tables = sp.load_dataset(dataset)
    assert sorted(tables) == ["S01", "S02"]
    t = tables["S02"]
    # windows end every 5 s from 60 s after the start to the end of the shorter signal
    expected = np.arange(60, DURATION_S + 1, 5) + STARTS["S02"]
    np.testing.assert_allclose(t["ends"], expected)
    rel = t["ends"] - STARTS["S02"]
    np.testing.assert_array_equal(t["y"][(rel >= 400) & (rel <= 540)], 1)  # last minute inside the task
    np.testing.assert_array_equal(t["y"][(rel <= 380) | (rel >= 600)], 0)
    assert t["x_eda"].shape == (len(expected), 23) and t["x_cardiac"].shape[0] == len(expected)
    assert (t["q_eda"] > 0.9).all()
    assert np.median(t["q_cardiac"]) > 0.8
    # the features see the synthetic task: faster pulse and more SCRs inside it
    from edge.features.cardiac import CARDIAC_FEATURE_NAMES
    from edge.features.eda import EDA_FEATURE_NAMES

    hr = t["x_cardiac"][:, CARDIAC_FEATURE_NAMES.index("hr_mean_bpm")]
    assert np.nanmedian(hr[t["y"] == 1]) == pytest.approx(95, abs=5)
    assert np.nanmedian(hr[t["y"] == 0]) == pytest.approx(62, abs=5)
    scr = t["x_eda"][:, EDA_FEATURE_NAMES.index("scr_rate_per_min")]
    assert np.median(scr[t["y"] == 1]) > np.median(scr[t["y"] == 0]) + 3


def test_e4_ibi_source_matches_bvp_beats(dataset: Path):
    tables = sp.load_dataset(dataset, cardiac_source="ibi")
    from_bvp = sp.load_dataset(dataset, cardiac_source="bvp")
    hr_ibi = tables["S01"]["x_cardiac"][:, 0]
    hr_bvp = from_bvp["S01"]["x_cardiac"][:, 0]
    np.testing.assert_allclose(hr_ibi, hr_bvp, atol=2.0)


def test_subject_without_labels_is_skipped_and_mismatched_labels_are_refused(tmp_path: Path, dataset: Path):
    root = tmp_path / "sp"
    write_subject(root / "Raw_data" / "S01", STARTS["S01"], seed=1, level_us=1.0)
    write_subject(root / "Raw_data" / "S02", STARTS["S02"], seed=2, level_us=1.0)
    write_labels(root, {2: STARTS["S02"]})  # participant 1 absent, as in the published file
    assert sorted(sp.load_dataset(root)) == ["S02"]
    write_labels(root, {2: STARTS["S01"]})  # participant 2's labels at S01's times: wrong folder
    with pytest.raises(DatasetError, match="labels and folders disagree"):
        sp.load_dataset(root)


def written_out_inputs(table: dict[str, np.ndarray], pre: dict) -> np.ndarray:
    """EDA model inputs by the manifest's definition, written out here independently of tools/edge:
    the features, then (trailing_baseline) their deviation from the mean of the complete windows
    ending in (t - span, t] whose quality reaches quality_min (the daemon never makes shorter ones)."""
    x = table["x_eda"]
    baseline = pre.get("trailing_baseline")
    if not baseline:
        return x
    ends = table["ends"]
    complete = ends - ends[0] + 60.0 >= pre["window_s"] - 1e-3  # the loader's windows grow from 60 s to full
    joins = np.isfinite(x).all(axis=1) & complete & (table["q_eda"] >= pre["quality_min"])
    rows = []
    for i, t in enumerate(ends):
        ref = joins & (ends <= t) & (ends > t - baseline["span_s"])
        rows.append(np.concatenate([x[i], x[i] - (x[ref].mean(axis=0) if ref.any() else x[i])]))
    return np.asarray(rows, np.float32)


def test_evaluate_cli_scores_eda_on_the_fixture(dataset: Path):
    proc = run_cli("models", "evaluate", "eda", "--dataset", f"stress-predict:{dataset}", "--json", check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"auroc", "balanced_accuracy", "n"} <= set(result)
    tables = sp.load_dataset(dataset)
    labelled = sum(int((t["coverage"] >= 0.5).sum()) for t in tables.values())
    assert result["n"] == labelled  # every labelled window of both subjects has clean EDA and is scored
    assert result["subject_ids"] == ["S01", "S02"]
    # S02 is among the shipped model's training subjects (its manifest's training.subjects_train): said once
    assert result["training_overlap"] == {"what": "subjects", "n": 1, "of": 2, "ids": ["S02"]}
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: 1 of 2 subjects here were in eda's training data (its manifest's training record); "
                        "figures on them are not held-out"], proc.stderr
    # the figures are the shipped int8 model's own predictions on those windows, scored as documented
    from edge.models import TFLiteModel
    from edge.tools.metrics import stress_metrics

    model = TFLiteModel("eda")
    pre = model.manifest["preprocessing"]
    y = np.concatenate([t["y"][t["coverage"] >= 0.5] for t in tables.values()])
    p = np.concatenate([model.predict_batch(written_out_inputs(t, pre)[t["coverage"] >= 0.5])[:, 0]
                        for t in tables.values()])
    expected = stress_metrics(y, p)
    assert result["auroc"] == pytest.approx(expected["auroc"], abs=1e-9)
    assert result["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"], abs=1e-9)


def test_daemon_estimator_sees_what_evaluation_scores(dataset: Path):
    """The daemon's EdaEstimator, fed one recording's windows in time order (its trailing baseline
    builds up as it would on the device), gives the same p(stress) as the evaluation path."""
    from edge.estimators import EdaEstimator, StreamWindow
    from edge.models import TFLiteModel
    from edge.windows import WindowSpec
    from firmware_bridge.protocols.e4_csv import read_e4_signal
    from edge.tools.evaluate_physio import _predict

    model = TFLiteModel("eda")
    window_s = float(model.manifest["preprocessing"]["window_s"])
    tables = sp.load_dataset(dataset)
    expected = _predict(model, "eda", {"S02": tables["S02"]}, window_s)["S02"]
    signal = read_e4_signal(dataset / "Raw_data" / "S02" / "EDA.csv")
    times = signal.start_unix + np.arange(len(signal.data)) / signal.rate_hz
    est = EdaEstimator(model, WindowSpec(window_s, 5.0))
    compared = 0
    for k, end in enumerate(tables["S02"]["ends"]):
        if end < signal.start_unix + window_s - 1e-3:
            continue  # the daemon's first window is a complete one (edge.windows.WindowClock)
        inside = (times >= end - window_s) & (times < end)
        w = StreamWindow("eda", end - window_s, end, signal.rate_hz, times[inside], signal.data[inside, :1])
        p = est.estimate(end, {"eda": w}).stress
        assert p == pytest.approx(float(np.clip(expected[k], 0, 1)), abs=1e-6), (k, end)
        compared += 1
    assert compared > 80


def test_evaluate_cli_fused_stress_and_float_variant(dataset: Path):
    proc = run_cli("models", "evaluate", "stress", "--dataset", f"stress-predict:{dataset}", "--json",
                   "--variant", "float", check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["variant"] == "float" and result["n"] > 100
    assert result["auroc"] > 0.7


def test_evaluate_cli_names_a_dataset_without_labels(tmp_path: Path):
    (tmp_path / "Raw_data" / "S01").mkdir(parents=True)
    proc = run_cli("models", "evaluate", "eda", "--dataset", f"stress-predict:{tmp_path}")
    assert proc.returncode == 2
    assert "label file" in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.train
def test_train_cli_writes_a_verified_int8_model_that_evaluate_accepts(dataset: Path, tmp_path: Path):
    out = tmp_path / "bundle"
    run_cli("train", "eda", "--dataset", f"stress-predict:{dataset}", "--out", str(out), "--epochs", "3",
            check=True, timeout=600)
    manifest = json.loads((out / "eda.json").read_text())
    pre = manifest["preprocessing"]
    assert pre["features"] == "edge.features.eda.eda_features"
    assert pre["window_s"] == 300.0 and pre["hop_s"] == 5.0 and pre["rate_hz"] == 4.0
    assert len(pre["feature_names"]) == 23 and len(pre["standardize"]["mean"]) == 46
    assert pre["trailing_baseline"]["span_s"] == 1200.0 and len(pre["trailing_baseline"]["input_names"]) == 46
    assert manifest["input_tensor"]["dtype"] == "int8" and manifest["input_tensor"]["shape"] == [1, 46]
    cv = manifest["metrics"]["cv_subject_wise"]
    assert {"eda", "cardiac", "stress"} <= set(cv) and 0.0 <= cv["stress"]["int8"]["auroc"] <= 1.0
    assert manifest["training"]["subjects_train"] == ["S01", "S02"]
    proc = run_cli("models", "evaluate", str(out / "eda.tflite"), "--dataset", f"stress-predict:{dataset}",
                   "--json", check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] > 100
    # a bundle whose bytes were changed is refused with one line
    blob = bytearray((out / "eda.tflite").read_bytes())
    blob[-1] ^= 0xFF
    (out / "eda.tflite").write_bytes(bytes(blob))
    proc = run_cli("models", "evaluate", str(out / "eda.tflite"), "--dataset", f"stress-predict:{dataset}")
    assert proc.returncode == 2 and "sha256" in proc.stderr


def test_evaluate_json_stays_strict_when_a_figure_cannot_be_computed(tmp_path: Path):
    root = tmp_path / "sp"
    write_subject(root / "Raw_data" / "S02", STARTS["S02"], seed=2, level_us=3.0)
    rows = ["Participant,HR,respr,Time(sec),Label"] + [f"2,75,14.0,{int(STARTS['S02'] + s)},0" for s in range(9, DURATION_S)]
    (root / "Processed_data").mkdir()
    (root / sp.LABEL_FILE).write_text("\n".join(rows) + "\n")  # rest only: no AUROC exists
    proc = run_cli("models", "evaluate", "eda", "--dataset", f"stress-predict:{root}", "--json", check=True)

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    result = json.loads(proc.stdout.strip().splitlines()[-1], parse_constant=refuse)
    assert result["auroc"] is None and result["auroc_complete_windows"] is None and result["n"] > 100
