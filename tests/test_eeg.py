"""EEG modality: band-power features and quality, the shipped marker model, and the DEAP path.

The DEAP fixture is written here in DEAP's data_preprocessed_python layout (sNN.dat, a protocol-2
pickle of {"data": (trials, 40, samples) at 128 Hz with a 3 s baseline first, "labels": (trials, 4)}),
with known frontal alpha asymmetry, and goes through the real loader, the real `emotion-edge train`
and `models evaluate` commands, the real converter and the real TFLite interpreter.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edge.errors import ConfigError, DatasetError
from edge.features.eeg import (
    EEG_FEATURE_NAMES,
    FEATURE_INDEX,
    eeg_features,
    eeg_quality,
    eeg_quality_and_features,
    frontal_pair,
)
from edge.models import TFLiteModel, models_dir, sha256_of

MUSE = ("TP9", "AF7", "AF8", "TP10")
CYTON = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
DEAP_ORDER = ("Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
              "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2")


def eeg_window(channels, rate_hz=256.0, seconds=4.0, alpha_uv=None, beta_uv=None, noise_uv=3.0, seed=0):
    """Sinusoidal alpha (10 Hz) and beta (20 Hz) per channel (amplitudes in µV) over seeded noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    alpha = np.asarray(alpha_uv if alpha_uv is not None else [10.0] * len(channels), float)
    beta = np.asarray(beta_uv if beta_uv is not None else [3.0] * len(channels), float)
    x = rng.standard_normal((n, len(channels))) * noise_uv
    x += np.sin(2 * np.pi * 10.0 * t)[:, None] * alpha[None, :]
    x += np.sin(2 * np.pi * 20.0 * t + 0.3)[:, None] * beta[None, :]
    return x


# ------------------------------------------------------------------------------- features

def test_right_frontal_alpha_gives_positive_faa_of_the_right_size():
    x = eeg_window(MUSE, alpha_uv=[10, 10, 20, 10])  # AF8 (right) twice the amplitude of AF7
    f = eeg_features(x, 256.0, MUSE)
    assert f.dtype == np.float32 and f.shape == (len(EEG_FEATURE_NAMES),)
    assert f[FEATURE_INDEX["faa"]] == pytest.approx(np.log(4.0), abs=0.1)  # power ratio 4
    f_left = eeg_features(eeg_window(MUSE, alpha_uv=[10, 20, 10, 10]), 256.0, MUSE)
    assert f_left[FEATURE_INDEX["faa"]] == pytest.approx(-np.log(4.0), abs=0.1)


def test_feature_vector_has_fixed_length_for_any_montage_and_rate():
    for channels, rate in ((MUSE, 256.0), (CYTON, 250.0), (DEAP_ORDER, 128.0), (MUSE, 100.0)):
        f = eeg_features(eeg_window(channels, rate_hz=rate), rate, channels)
        assert f.shape == (len(EEG_FEATURE_NAMES),) and np.isfinite(f).all(), (channels, rate)
        assert f[FEATURE_INDEX["alpha_centre_hz"]] == pytest.approx(10.0, abs=0.6)
    assert frontal_pair(MUSE) == (1, 2)
    assert frontal_pair(DEAP_ORDER) == (2, 19)  # F3/F4 preferred over Fp1/Fp2
    assert frontal_pair(["eeg fp1-ref", "EEG FP2-REF"]) == (0, 1)


def test_montage_without_frontal_pair_is_refused_in_one_line():
    assert frontal_pair(["TP9", "TP10", "O1", "O2"]) is None
    with pytest.raises(ConfigError) as err:
        eeg_features(eeg_window(["TP9", "TP10"]), 256.0, ["TP9", "TP10"])
    assert "no frontal pair" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        eeg_features(eeg_window(MUSE, rate_hz=80.0), 80.0, MUSE)  # bands reach 45 Hz


def test_mains_interference_does_not_move_the_features():
    clean = eeg_window(MUSE, alpha_uv=[8, 8, 14, 8])
    t = np.arange(len(clean)) / 256.0
    hum = 60.0 * np.sin(2 * np.pi * 50.0 * t) + 40.0 * np.sin(2 * np.pi * 60.0 * t)
    f_clean = eeg_features(clean, 256.0, MUSE)
    f_hum = eeg_features(clean + hum[:, None], 256.0, MUSE)
    for name in ("faa", "log_beta_alpha_frontal", "rel_power_gamma", "log_power_gamma"):
        assert f_hum[FEATURE_INDEX[name]] == pytest.approx(f_clean[FEATURE_INDEX[name]], abs=0.02), name
    # a slow drift (electrode settling) is detrended away too
    f_drift = eeg_features(clean + np.linspace(0, 300, len(clean))[:, None], 256.0, MUSE)
    assert f_drift[FEATURE_INDEX["faa"]] == pytest.approx(f_clean[FEATURE_INDEX["faa"]], abs=0.05)


def test_quality_is_high_for_clean_eeg_and_drops_for_flatline_railing_blinks_and_emg():
    clean = eeg_window(MUSE, noise_uv=2.0)
    q_clean = eeg_quality(clean, 256.0)
    assert q_clean > 0.8
    assert eeg_quality(np.zeros_like(clean), 256.0) == 0.0
    assert eeg_quality(np.full_like(clean, 812.5), 256.0) == 0.0  # stuck at a rail: flat
    one_flat = clean.copy()
    one_flat[:, 1] = 3.0
    assert eeg_quality(one_flat, 256.0) < q_clean - 0.2
    railed = clean.copy()
    railed[300:700, :] = 600.0  # 40 % of the window pinned beyond 500 µV
    assert eeg_quality(railed, 256.0) < 0.6 * q_clean
    clipped = np.clip(clean * 80.0, -500.0, 500.0)  # amplifier saturating at ±500 µV
    assert eeg_quality(clipped, 256.0) < 0.6 * q_clean
    blinks = clean.copy()
    t = np.arange(len(clean)) / 256.0
    for onset in (0.5, 1.7, 2.9):
        blinks[:, 1:3] += (200.0 * np.exp(-0.5 * ((t - onset) / 0.08) ** 2))[:, None]
    assert eeg_quality(blinks, 256.0) < q_clean - 0.1
    emg = clean + np.random.default_rng(1).standard_normal(clean.shape) * 25.0
    assert eeg_quality(emg, 256.0) < q_clean - 0.3


def test_lost_samples_keep_features_finite_and_lower_quality():
    x = eeg_window(MUSE)
    x[100:160, :] = np.nan
    assert np.isfinite(eeg_features(x, 256.0, MUSE)).all()
    assert eeg_quality(x, 256.0) < eeg_quality(eeg_window(MUSE), 256.0)


def test_one_pass_analysis_equals_the_separate_functions_exactly():
    """The daemon's single pass (one fill, one PSD) must give the values the models were made with."""
    rng = np.random.default_rng(5)
    clean = eeg_window(MUSE)
    lost = clean.copy()
    lost[rng.integers(0, len(lost), 50), rng.integers(0, 4, 50)] = np.nan
    railed = clean.copy()
    railed[200:500, 2] = 900.0
    for x in (clean, lost, railed, eeg_window(CYTON, rate_hz=250.0)):
        channels = MUSE if x.shape[1] == 4 else CYTON
        rate = 256.0 if x.shape[1] == 4 else 250.0
        quality, features = eeg_quality_and_features(x, rate, channels)
        assert quality == eeg_quality(x, rate)
        assert np.array_equal(features, eeg_features(x, rate, channels))
    with pytest.raises(ConfigError, match="no frontal pair"):
        eeg_quality_and_features(clean[:, :2], 256.0, ("TP9", "TP10"))


# -------------------------------------------------------------------------- shipped model

@pytest.fixture(scope="module")
def shipped():
    return TFLiteModel("eeg")  # verifies the sha256 against the manifest


def test_shipped_model_matches_its_manifest_and_runs(shipped):
    manifest = json.loads((models_dir() / "eeg.json").read_text())
    assert sha256_of(models_dir() / "eeg.tflite") == manifest["sha256"]
    assert manifest["task"] == "valence_arousal" and shipped.output_names == ["valence", "arousal"]
    assert manifest["preprocessing"]["features"] == "edge.features.eeg.eeg_features"
    assert manifest["preprocessing"]["feature_names"] == list(EEG_FEATURE_NAMES)
    assert manifest["training"]["data"].startswith("none:")
    assert shipped.is_int8 and shipped.input_shape == (1, len(EEG_FEATURE_NAMES))
    out = shipped.predict(eeg_features(eeg_window(MUSE), 256.0, MUSE))
    assert out.shape == (2,) and np.all(np.abs(out) <= 1.0)
    float_twin = TFLiteModel("eeg", variant="float")
    f = eeg_features(eeg_window(CYTON, rate_hz=250.0, alpha_uv=[6, 12, 8, 8, 8, 8, 8, 8]), 250.0, CYTON)
    assert np.abs(float_twin.predict(f) - shipped.predict(f)).max() < 0.05


def test_shipped_valence_follows_frontal_alpha_asymmetry(shipped):
    valences = []
    for right_uv in (5.0, 8.0, 10.0, 12.5, 20.0):  # left fixed at 10 µV
        f = eeg_features(eeg_window(MUSE, alpha_uv=[10, 10, right_uv, 10]), 256.0, MUSE)
        valences.append(float(shipped.predict(f)[0]))
    assert valences[0] < -0.5 and valences[-1] > 0.5  # more right alpha = relatively more left activity
    assert abs(valences[2]) < 0.2  # symmetric = neutral (a 4 s window estimates FAA to about ±0.05)
    assert all(b > a for a, b in zip(valences, valences[1:]))


def test_shipped_arousal_rises_with_beta_over_alpha(shipped):
    arousals = []
    for beta_uv in (2.0, 6.0, 12.0, 24.0):  # alpha fixed at 10 µV everywhere
        f = eeg_features(eeg_window(MUSE, beta_uv=[beta_uv] * 4), 256.0, MUSE)
        arousals.append(float(shipped.predict(f)[1]))
    assert all(b > a for a, b in zip(arousals, arousals[1:]))
    assert arousals[0] < -0.5 and arousals[-1] > 0.5


# ------------------------------------------------------------------------------------ DEAP

def write_deap_fixture(folder: Path, n_trials: int = 3, trial_s: float = 10.0) -> dict:
    """Two participants in DEAP's preprocessed-Python layout; s01 has right-frontal alpha, s02 left."""
    folder.mkdir(parents=True, exist_ok=True)
    rate = 128
    n = int((3.0 + trial_s) * rate)
    t = np.arange(n) / rate
    f3, f4 = DEAP_ORDER.index("F3"), DEAP_ORDER.index("F4")
    expected = {}
    for subject, (left_uv, right_uv) in (("s01", (6.0, 15.0)), ("s02", (15.0, 6.0))):
        rng = np.random.default_rng(int(subject[1:]))
        data = rng.standard_normal((n_trials, 40, n)) * 2.0
        data[:, :32] += 8.0 * np.sin(2 * np.pi * 10.0 * t)
        data[:, f3] += (left_uv - 8.0) * np.sin(2 * np.pi * 10.0 * t)
        data[:, f4] += (right_uv - 8.0) * np.sin(2 * np.pi * 10.0 * t)
        data[:, :, : 3 * rate] = 400.0  # baseline marked so we can see it is dropped
        labels = rng.uniform(1.0, 9.0, (n_trials, 4))
        labels[0, :2] = (8.0, 2.0)
        with open(folder / f"{subject}.dat", "wb") as fh:
            pickle.dump({"labels": labels, "data": data}, fh, protocol=2)
        expected[subject] = {"labels": labels, "faa_sign": np.sign(np.log(right_uv / left_uv))}
    return expected


@pytest.fixture(scope="module")
def deap_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deap") / "data_preprocessed_python"
    return folder, write_deap_fixture(folder)


def test_deap_loader_reads_the_layout_drops_the_baseline_and_windows_trials(deap_dir):
    from edge.tools.deap import DEAP_EEG_CHANNELS, load_subject, subject_files, subject_windows

    folder, expected = deap_dir
    assert [p.name for p in subject_files(folder.parent)] == ["s01.dat", "s02.dat"]  # parent folder works too
    subject = load_subject(folder / "s01.dat")
    assert subject.subject == "s01" and subject.rate_hz == 128.0 and subject.channels == DEAP_EEG_CHANNELS
    assert subject.eeg_uv.shape == (3, 10 * 128, 32) and subject.baseline_uv.shape == (3, 384, 32)
    assert np.all(subject.baseline_uv == 400.0) and np.abs(subject.eeg_uv).max() < 100.0
    np.testing.assert_allclose(subject.ratings, expected["s01"]["labels"])
    windows, targets, trials = subject_windows(subject, 4.0, 2.0)
    assert windows.shape == (3 * 4, 512, 32) and list(trials[:5]) == [0, 0, 0, 0, 1]
    np.testing.assert_allclose(targets[0], [0.75, -0.75])  # ratings 8 and 2 -> (r - 5) / 4
    for name in ("s01", "s02"):
        w, _, _ = subject_windows(load_subject(folder / f"{name}.dat"), 4.0, 2.0)
        faa = eeg_features(w[0], 128.0, DEAP_EEG_CHANNELS)[FEATURE_INDEX["faa"]]
        assert np.sign(faa) == expected[name]["faa_sign"] and abs(faa) > 1.0


@pytest.mark.train
def test_deap_bad_layout_is_one_line(tmp_path):
    from edge.tools.deap import load_subject, subject_files

    with pytest.raises(DatasetError, match="no sNN.dat"):
        subject_files(tmp_path)
    bad = tmp_path / "s01.dat"
    with open(bad, "wb") as fh:
        pickle.dump({"data": np.zeros((2, 8, 100)), "labels": np.ones((2, 4))}, fh, protocol=2)
    with pytest.raises(DatasetError, match="expected \\(trials"):
        load_subject(bad)
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a DEAP"):
        load_subject(bad)
    proc = run_cli("train", "eeg", "--dataset", f"deap:{tmp_path}", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.train
def test_train_eeg_on_deap_end_to_end_writes_a_loadable_int8_model(deap_dir, tmp_path):
    folder, _ = deap_dir
    out = tmp_path / "model"
    proc = run_cli("train", "eeg", "--dataset", f"deap:{folder}", "--out", str(out), "--epochs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "eeg.json").read_text())
    assert manifest["task"] == "valence_arousal"
    split = manifest["training"]
    assert set(split["subjects_train"]) | set(split["subjects_test"]) == {"s01", "s02"}
    assert not set(split["subjects_train"]) & set(split["subjects_test"])
    for variant in ("float", "int8"):
        assert "auroc_valence" in manifest["metrics"]["test_subjects"][variant]["trials"]
    model = TFLiteModel(out / "eeg.tflite")
    assert model.is_int8
    out_va = model.predict(eeg_features(eeg_window(DEAP_ORDER, rate_hz=128.0), 128.0, DEAP_ORDER))
    assert out_va.shape == (2,) and np.all(np.abs(out_va) <= 1.0)

    proc = run_cli("models", "evaluate", str(out / "eeg.tflite"), "--dataset", f"deap:{folder}", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["subjects"] == 1 and result["subjects_excluded_as_training"] == 1  # only the held-out subject
    assert result["trial_n"] == 3 and 0.0 <= result["trial_rmse_valence"] <= 2.0
