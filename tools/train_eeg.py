"""``emotion-edge train eeg --dataset KIND:PATH --out DIR`` and ``models evaluate eeg --dataset deap:DIR``.

Two kinds:

* ``markers:.`` (the path is not read) rebuilds the *shipped* model: a fixed-coefficient
  estimator from two published EEG markers, expressed as a TFLite graph over
  ``EEG_FEATURE_NAMES`` (one Dense layer whose only non-zero weights pick two features,
  then tanh)::

      valence = tanh(VALENCE_GAIN * (faa - FAA_NEUTRAL))
      arousal = tanh(AROUSAL_GAIN * (log_beta_alpha_frontal - LOG_BETA_ALPHA_NEUTRAL))

  Nothing is fitted to labels. The int8 calibration data (and the float/int8 agreement
  check) are features of synthetic EEG (:func:`synthesize_eeg`: 1/f background plus alpha
  and beta bursts with a controlled left/right alpha ratio) spanning realistic ranges.
  Why these constants: see ``models/eeg.md`` and the comments below.

* ``deap:DIR`` trains a small MLP on the same features from DEAP's preprocessed-Python
  files (``edge.tools.deap``), labels = valence and arousal self-ratings mapped 1–9 -> [-1, 1],
  4 s windows with a 2 s hop over each 60 s trial (the 3 s baseline dropped), split by
  subject (leave-subjects-out: a seeded 25 % of participants, at least one, never seen in
  training). Float and int8 are scored on the held-out subjects: RMSE, and accuracy/AUROC
  for high vs low (rating above 5 vs not), per window and per trial.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DatasetError, ModelIntegrityError
from edge.features.eeg import (
    EEG_FEATURE_NAMES,
    FEATURE_INDEX,
    FRONTAL_PAIRS,
    HOP_S,
    MIN_RATE_HZ,
    WINDOW_S,
    eeg_features,
)
from edge.tools import metrics
from edge.tools.tensorflow_import import import_tensorflow

log = logging.getLogger(__name__)

MODEL_NAME = "eeg"
MODEL_VERSION = "1.0.0"

# --- the shipped estimator's constants (reasons in models/eeg.md) ---------------------------
# FAA = ln(alpha right) − ln(alpha left). Resting frontal asymmetry scores in ln(µV²) mostly
# lie within about ±0.5 with a between-person SD of roughly 0.1–0.2 (Coan & Allen 2004
# review; Allen, Urry, Hitt & Coan 2004, Psychophysiology 41:269). Neutral = symmetry (0);
# a gain of 2.5 maps ±0.2 (≈ one SD, a large state shift) to ±0.46 and ±0.5 to ±0.85.
FAA_NEUTRAL = 0.0
VALENCE_GAIN = 2.5
# ln(beta/alpha) at the frontal pair (Ramirez & Vamvakousis 2012 arousal index). Relaxed,
# eyes-closed, alpha-dominated spectra give beta/alpha ≈ 0.3–0.6 (ln ≈ −1.2…−0.5); alert,
# eyes-open, task-engaged spectra ≈ 1.5–3 (ln ≈ 0.4…1.1); equal power (ln = 0) is the neutral
# point. A gain of 1.0 keeps that span inside tanh's responsive range (−0.83…+0.80).
LOG_BETA_ALPHA_NEUTRAL = 0.0
AROUSAL_GAIN = 1.0

OUTPUTS = [
    {"name": "valence", "index": 0, "range": [-1.0, 1.0],
     "meaning": "EEG valence estimate: >0 pleasant/approach, <0 unpleasant/withdrawal"},
    {"name": "arousal", "index": 1, "range": [-1.0, 1.0],
     "meaning": "EEG arousal estimate: >0 activated/alert, <0 calm/drowsy"},
]
MUSE_CHANNELS = ("TP9", "AF7", "AF8", "TP10")
CYTON_CHANNELS = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")  # OpenBCI's default 10-20 placement
DEFAULT_EPOCHS = 40
BATCH_SIZE = 64
TEST_SUBJECT_FRAC = 0.25
HIGH_THRESHOLD = 5.0  # a 1–9 rating above the scale's middle counts as "high"


# ------------------------------------------------------------------------- synthetic EEG

def _narrowband(rng: np.random.Generator, n: int, rate_hz: float, centre_hz: np.ndarray,
                width_hz: float) -> np.ndarray:
    """Gaussian-shaped band of noise per column around ``centre_hz`` (unit RMS), via the FFT."""
    freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
    shape = np.exp(-0.5 * ((freqs[:, None] - centre_hz[None, :]) / width_hz) ** 2)
    spec = (rng.standard_normal((len(freqs), len(centre_hz))) + 1j * rng.standard_normal((len(freqs), len(centre_hz)))) * shape
    x = np.fft.irfft(spec, n=n, axis=0)
    return x / (x.std(axis=0, keepdims=True) + 1e-12)


def synthesize_eeg(n_samples: int, rate_hz: float, channels: tuple[str, ...], rng: np.random.Generator, *,
                   alpha_left_uv: float = 10.0, alpha_right_uv: float = 10.0, beta_uv: float = 3.0,
                   background_uv: float = 10.0, aperiodic_exponent: float = 1.5, alpha_hz: float = 10.0,
                   line_uv: float = 0.0) -> np.ndarray:
    """EEG-like test signal (n_samples, channels) in µV.

    A 1/f^exponent background (RMS ``background_uv``, independent per channel) plus waxing and
    waning alpha (around ``alpha_hz``) and beta (around 20 Hz) bursts. Alpha has RMS
    ``alpha_left_uv`` on left-hemisphere channels (odd 10-20 numbers), ``alpha_right_uv`` on
    the right (even numbers) and their mean on the midline; ``line_uv`` adds 50 Hz mains.
    """
    n_ch = len(channels)
    freqs = np.fft.rfftfreq(n_samples, 1.0 / rate_hz)
    colour = np.where(freqs > 0, np.maximum(freqs, 0.5) ** (-aperiodic_exponent / 2.0), 0.0)
    spec = (rng.standard_normal((len(freqs), n_ch)) + 1j * rng.standard_normal((len(freqs), n_ch))) * colour[:, None]
    background = np.fft.irfft(spec, n=n_samples, axis=0)
    background *= background_uv / (background.std(axis=0, keepdims=True) + 1e-12)

    side = np.array([_hemisphere(c) for c in channels])
    alpha_amp = np.where(side < 0, alpha_left_uv, np.where(side > 0, alpha_right_uv, 0.5 * (alpha_left_uv + alpha_right_uv)))
    # one shared alpha generator (alpha is coherent across the scalp), one envelope for bursts
    alpha = _narrowband(rng, n_samples, rate_hz, np.array([alpha_hz]), 1.0)
    envelope = 0.6 + 0.4 * _narrowband(rng, n_samples, rate_hz, np.array([0.0]), 0.3)
    alpha = alpha * np.clip(envelope, 0.1, None)
    alpha /= alpha.std() + 1e-12
    beta = _narrowband(rng, n_samples, rate_hz, np.full(n_ch, 20.0), 4.0)
    t = np.arange(n_samples) / rate_hz
    line = line_uv * np.sqrt(2.0) * np.sin(2 * np.pi * 50.0 * t)[:, None]
    return background + alpha * alpha_amp[None, :] + beta * beta_uv + line


def _hemisphere(channel: str) -> int:
    """-1 left (odd number), +1 right (even), 0 midline ('z') or unknown."""
    digits = "".join(ch for ch in channel if ch.isdigit())
    if not digits:
        return 0
    return -1 if int(digits) % 2 else 1


def synthetic_features(n_windows: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Features of ``n_windows`` synthetic 4 s windows over realistic parameter ranges.

    Montages Muse (256 Hz) and Cyton (250 Hz) and DEAP-like 128 Hz; FAA targets ±0.7;
    alpha 2–20 µV RMS, beta 1.5–12 µV, background 4–20 µV with 1/f exponents 0.8–2.2;
    a quarter of windows carry 5–60 µV of 50 Hz mains (which the features must ignore).
    Returns (features (n, len(EEG_FEATURE_NAMES)), the parameters drawn).
    """
    rng = np.random.default_rng(seed)
    setups = ((MUSE_CHANNELS, 256.0), (CYTON_CHANNELS, 250.0), (MUSE_CHANNELS, 128.0))
    params = {
        "faa_target": rng.uniform(-0.7, 0.7, n_windows),
        "alpha_uv": np.exp(rng.uniform(np.log(2.0), np.log(20.0), n_windows)),
        "beta_uv": np.exp(rng.uniform(np.log(1.5), np.log(12.0), n_windows)),
        "background_uv": rng.uniform(4.0, 20.0, n_windows),
        "exponent": rng.uniform(0.8, 2.2, n_windows),
        "alpha_hz": rng.uniform(8.5, 11.5, n_windows),
        "line_uv": np.where(rng.random(n_windows) < 0.25, rng.uniform(5.0, 60.0, n_windows), 0.0),
        "setup": rng.integers(0, len(setups), n_windows),
    }
    out = np.empty((n_windows, len(EEG_FEATURE_NAMES)), dtype=np.float32)
    for i in range(n_windows):
        channels, rate = setups[params["setup"][i]]
        half = np.exp(params["faa_target"][i] / 4.0)  # power ratio R/L = exp(faa) -> amplitude ratio exp(faa/2)
        x = synthesize_eeg(int(WINDOW_S * rate), rate, channels, rng,
                           alpha_left_uv=params["alpha_uv"][i] / half, alpha_right_uv=params["alpha_uv"][i] * half,
                           beta_uv=params["beta_uv"][i], background_uv=params["background_uv"][i],
                           aperiodic_exponent=params["exponent"][i], alpha_hz=params["alpha_hz"][i],
                           line_uv=params["line_uv"][i])
        out[i] = eeg_features(x, rate, channels)
    return out, params


# ----------------------------------------------------------------------- marker estimator

def marker_estimate(features: np.ndarray) -> np.ndarray:
    """The shipped estimator in plain numpy: (n, 2) [valence, arousal] — the float reference."""
    f = np.atleast_2d(np.asarray(features, dtype=np.float64))
    valence = np.tanh(VALENCE_GAIN * (f[:, FEATURE_INDEX["faa"]] - FAA_NEUTRAL))
    arousal = np.tanh(AROUSAL_GAIN * (f[:, FEATURE_INDEX["log_beta_alpha_frontal"]] - LOG_BETA_ALPHA_NEUTRAL))
    return np.stack([valence, arousal], axis=1).astype(np.float32)


def build_marker_model(mean: np.ndarray, std: np.ndarray) -> Any:
    """Keras graph of :func:`marker_estimate` over *standardised* features (x − mean) / std.

    The standardisation (applied by ``TFLiteModel`` from the manifest) only conditions the
    int8 input scale; it is folded back into the weights so the function is unchanged.
    """
    tf = import_tensorflow()

    n = len(EEG_FEATURE_NAMES)
    kernel = np.zeros((n, 2), dtype=np.float32)
    bias = np.zeros(2, dtype=np.float32)
    i_v, i_a = FEATURE_INDEX["faa"], FEATURE_INDEX["log_beta_alpha_frontal"]
    kernel[i_v, 0] = VALENCE_GAIN * std[i_v]
    bias[0] = VALENCE_GAIN * (mean[i_v] - FAA_NEUTRAL)
    kernel[i_a, 1] = AROUSAL_GAIN * std[i_a]
    bias[1] = AROUSAL_GAIN * (mean[i_a] - LOG_BETA_ALPHA_NEUTRAL)
    inputs = tf.keras.Input((n,), name="eeg_features")
    dense = tf.keras.layers.Dense(2, activation="tanh", name="valence_arousal")
    model = tf.keras.Model(inputs, dense(inputs), name="eeg_markers")
    dense.set_weights([kernel, bias])
    return model


def _preprocessing(mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    return {
        "features": "edge.features.eeg.eeg_features",
        "quality": "edge.features.eeg.eeg_quality",
        "feature_names": list(EEG_FEATURE_NAMES),
        "window_s": WINDOW_S, "hop_s": HOP_S,
        "rate_hz": 256.0,
        "rate_note": f"features are rate-independent: any rate above {MIN_RATE_HZ:g} Hz is used as recorded",
        "frontal_pairs": [list(p) for p in FRONTAL_PAIRS],
        "standardize": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
    }


def _robust_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


def train_markers(out_dir: Path, args: argparse.Namespace, report: Any = print) -> dict[str, Any]:
    """Build, convert and check the shipped fixed-coefficient model; return its manifest."""
    from edge.models import TFLiteModel
    from edge.tools.quantize import write_bundle

    seed = int(getattr(args, "seed", 0) or 0)
    t0 = time.perf_counter()
    x_calib, _ = synthetic_features(600, seed=seed)
    x_eval, params = synthetic_features(400, seed=seed + 1000)
    report(f"synthetic features: {len(x_calib)} calibration + {len(x_eval)} check windows "
           f"in {time.perf_counter() - t0:.1f} s")
    mean, std = _robust_scale(x_calib)
    y_eval = marker_estimate(x_eval)
    draft = {
        "name": MODEL_NAME, "version": MODEL_VERSION, "task": "valence_arousal", "outputs": OUTPUTS,
        "preprocessing": _preprocessing(mean, std),
        "estimator": {
            "valence": f"tanh({VALENCE_GAIN} * (faa - {FAA_NEUTRAL}))",
            "arousal": f"tanh({AROUSAL_GAIN} * (log_beta_alpha_frontal - {LOG_BETA_ALPHA_NEUTRAL}))",
            "references": [
                "Davidson 1992/2004: frontal asymmetry and approach/withdrawal",
                "Coan & Allen 2004, Biological Psychology 67:7-50 (frontal EEG asymmetry review)",
                "Ramirez & Vamvakousis 2012, Brain Informatics, LNCS 7670:175-184 (beta/alpha arousal index)",
            ],
        },
        "training": {
            "data": "none: fixed-coefficient estimator from published markers; not trained on labelled data",
            "split": "none", "subjects_train": [], "subjects_test": [],
            "calibration": "int8 calibration on features of 600 synthetic EEG windows (edge.tools.train_eeg.synthesize_eeg)",
        },
    }
    keras_model = build_marker_model(mean, std)
    keras_ref = keras_model.predict(((x_eval - mean) / std).astype(np.float32), verbose=0)
    manifest = write_bundle(Path(out_dir), MODEL_NAME, keras_model, draft, x_calib, x_eval, y_eval, report=report)

    int8_model = TFLiteModel(Path(out_dir) / f"{MODEL_NAME}.tflite")
    float_model = TFLiteModel(Path(out_dir) / f"{MODEL_NAME}.tflite", variant="float")
    out_int8 = int8_model.predict_batch(x_eval)
    out_float = float_model.predict_batch(x_eval)
    agreement = {
        "n": int(len(x_eval)),
        "keras_vs_formula_max_abs": float(np.abs(keras_ref - y_eval).max()),
        "float_vs_formula_max_abs": float(np.abs(out_float - y_eval).max()),
        "int8_vs_float_rmse_valence": float(np.sqrt(np.mean((out_int8[:, 0] - out_float[:, 0]) ** 2))),
        "int8_vs_float_rmse_arousal": float(np.sqrt(np.mean((out_int8[:, 1] - out_float[:, 1]) ** 2))),
        "int8_vs_float_max_abs": float(np.abs(out_int8 - out_float).max()),
        "faa_target_vs_feature_r": float(np.corrcoef(params["faa_target"], x_eval[:, FEATURE_INDEX["faa"]])[0, 1]),
    }
    report(f"float vs int8 on {agreement['n']} synthetic windows: RMSE valence {agreement['int8_vs_float_rmse_valence']:.4f}, "
           f"arousal {agreement['int8_vs_float_rmse_arousal']:.4f}, max |diff| {agreement['int8_vs_float_max_abs']:.4f}")
    manifest.setdefault("metrics", {})["synthetic_agreement"] = agreement
    (Path(out_dir) / f"{MODEL_NAME}.json").write_text(json.dumps(manifest, indent=2))
    return manifest


# ---------------------------------------------------------------------------------- DEAP

def deap_features(dataset_path: Path, subjects: set[str] | None = None, window_s: float = WINDOW_S,
                  hop_s: float = HOP_S) -> dict[str, np.ndarray]:
    """Features of every window of every (selected) DEAP subject.

    Returns x (n, features), y (n, 2) in [-1, 1], subject (n,) ids, trial (n,) index.
    """
    from edge.tools.deap import load_subject, subject_files, subject_windows

    files = subject_files(Path(dataset_path))
    if subjects is not None:
        files = [f for f in files if f.stem.lower() in subjects]
    try:
        from tqdm import tqdm

        files_iter = tqdm(files, desc="deap subjects", unit="subject", leave=False, disable=len(files) < 4)
    except ImportError:  # tqdm is optional
        files_iter = files
    xs, ys, subs, trials = [], [], [], []
    for path in files_iter:
        subject = load_subject(path)
        windows, targets, trial_idx = subject_windows(subject, window_s, hop_s)
        feats = np.stack([eeg_features(w, subject.rate_hz, subject.channels) for w in windows])
        xs.append(feats)
        ys.append(targets)
        subs.append(np.full(len(feats), subject.subject))
        trials.append(trial_idx)
    if not xs:
        raise DatasetError(f"deap:{dataset_path}: no subjects left to use")
    return {"x": np.concatenate(xs).astype(np.float32), "y": np.concatenate(ys).astype(np.float32),
            "subject": np.concatenate(subs), "trial": np.concatenate(trials)}


def split_subjects(subjects: list[str], seed: int, test_frac: float = TEST_SUBJECT_FRAC) -> tuple[list[str], list[str]]:
    """Seeded leave-subjects-out split: (train subjects, test subjects), at least one each."""
    unique = sorted(set(subjects))
    if len(unique) < 2:
        raise DatasetError(f"deap: {len(unique)} subject(s); a subject-wise split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test = min(len(unique) - 1, max(1, int(round(test_frac * len(unique)))))
    test = sorted(unique[i] for i in order[:n_test])
    return sorted(set(unique) - set(test)), test


def valence_arousal_metrics(pred: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    """RMSE and high/low (rating > 5 <=> target > 0) accuracy and AUROC per output.

    With ``groups`` (e.g. subject/trial keys), predictions are first averaged per group —
    DEAP's labels are one rating per trial, so the trial is the honest unit.
    """
    pred = np.asarray(pred, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if groups is not None:
        keys, inverse = np.unique(groups, return_inverse=True)
        count = np.bincount(inverse, minlength=len(keys))[:, None]
        pred = np.stack([np.bincount(inverse, pred[:, k], len(keys)) for k in range(2)], axis=1) / count
        y = np.stack([np.bincount(inverse, y[:, k], len(keys)) for k in range(2)], axis=1) / count
    out: dict[str, float] = {}
    for k, name in enumerate(("valence", "arousal")):
        high = y[:, k] > 0.0
        out[f"rmse_{name}"] = float(np.sqrt(np.mean((pred[:, k] - y[:, k]) ** 2)))
        out[f"accuracy_{name}"] = metrics.accuracy(high, pred[:, k] > 0.0)
        out[f"auroc_{name}"] = metrics.auroc(high, pred[:, k])
        out[f"share_high_{name}"] = float(high.mean())
    out["n"] = int(len(y))
    return out


def _build_mlp(n_features: int, seed: int) -> Any:
    tf = import_tensorflow()

    tf.keras.utils.set_random_seed(seed)
    reg = tf.keras.regularizers.l2(1e-4)
    model = tf.keras.Sequential([
        tf.keras.Input((n_features,), name="eeg_features"),
        tf.keras.layers.Dense(32, activation="relu", kernel_regularizer=reg),
        tf.keras.layers.Dropout(0.2),
        tf.keras.layers.Dense(16, activation="relu", kernel_regularizer=reg),
        tf.keras.layers.Dense(2, activation="tanh", name="valence_arousal"),
    ], name="eeg_mlp")
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
    return model


def train_deap(dataset_path: Path, out_dir: Path, args: argparse.Namespace, report: Any = print) -> dict[str, Any]:
    """Train, convert and score the DEAP MLP; return its manifest."""
    tf = import_tensorflow()

    from edge.models import TFLiteModel
    from edge.tools.quantize import save_training_bundle, write_bundle

    seed = int(getattr(args, "seed", 0) or 0)
    epochs = int(getattr(args, "epochs", None) or DEFAULT_EPOCHS)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    data = deap_features(dataset_path)
    report(f"deap: {len(data['x'])} windows from {len(set(data['subject']))} subjects "
           f"({time.perf_counter() - t0:.1f} s of feature extraction)")
    train_subjects, test_subjects = split_subjects(list(data["subject"]), seed)
    is_test = np.isin(data["subject"], test_subjects)
    x_tr = data["x"][~is_test]
    x_te, y_te = data["x"][is_test], data["y"][is_test]
    mean, std = _robust_scale(x_tr)

    # early stopping on held-out *training subjects* when there are enough of them
    fit_subjects, val_subjects = train_subjects, []
    if len(train_subjects) >= 4:
        fit_subjects, val_subjects = split_subjects(train_subjects, seed + 1, test_frac=0.125)
    is_fit = np.isin(data["subject"], fit_subjects)
    is_val = np.isin(data["subject"], val_subjects)
    model = _build_mlp(len(EEG_FEATURE_NAMES), seed)
    callbacks = []
    validation = None
    if is_val.any():
        validation = ((data["x"][is_val] - mean) / std, data["y"][is_val])
        callbacks.append(tf.keras.callbacks.EarlyStopping(patience=6, restore_best_weights=True))
    history = model.fit((data["x"][is_fit] - mean) / std, data["y"][is_fit], validation_data=validation,
                        epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0, callbacks=callbacks)
    report(f"trained {len(history.history['loss'])} epochs on {len(fit_subjects)} subjects "
           f"(validation subjects: {', '.join(val_subjects) or 'none'}); test subjects: {', '.join(test_subjects)}")

    rng = np.random.default_rng(seed)
    calib = x_tr[rng.permutation(len(x_tr))[:500]]
    draft = {
        "name": MODEL_NAME, "version": MODEL_VERSION + "+deap", "task": "valence_arousal", "outputs": OUTPUTS,
        "preprocessing": _preprocessing(mean, std) | {"rate_hz": 128.0},
        "training": {
            "data": f"DEAP data_preprocessed_python ({dataset_path}); 32 EEG channels at 128 Hz, average reference, "
                    "4-45 Hz; 3 s pre-trial baseline dropped; labels valence/arousal self-ratings (1-9) -> (r-5)/4",
            "split": f"subject-wise (leave-subjects-out), seed {seed}; test = {len(test_subjects)} of "
                     f"{len(set(data['subject']))} subjects; early stopping on {len(val_subjects)} training subjects",
            "subjects_train": train_subjects, "subjects_test": test_subjects,
            "epochs": len(history.history["loss"]), "windows_train": int(len(x_tr)), "windows_test": int(len(x_te)),
        },
    }
    save_training_bundle(out_dir, MODEL_NAME, model, draft, calib, x_te, y_te)
    manifest = write_bundle(out_dir, MODEL_NAME, model, draft, calib, x_te, y_te, report=report)

    groups = np.char.add(np.char.add(data["subject"][is_test].astype(str), ":"), data["trial"][is_test].astype(str))
    scores: dict[str, Any] = {}
    for variant in ("float", "int8"):
        pred = TFLiteModel(out_dir / f"{MODEL_NAME}.tflite", variant=variant).predict_batch(x_te)
        scores[variant] = {"windows": valence_arousal_metrics(pred, y_te),
                           "trials": valence_arousal_metrics(pred, y_te, groups)}
    scores["predict_zero"] = {"trials": valence_arousal_metrics(np.zeros_like(y_te), y_te, groups)}
    scores["markers_formula"] = {"trials": valence_arousal_metrics(marker_estimate(x_te), y_te, groups)}
    manifest.setdefault("metrics", {})["test_subjects"] = scores
    for variant in ("float", "int8"):
        t = scores[variant]["trials"]
        report(f"{variant:<5} held-out trials: valence RMSE {t['rmse_valence']:.3f} acc {t['accuracy_valence']:.3f} "
               f"AUROC {t['auroc_valence']:.3f} | arousal RMSE {t['rmse_arousal']:.3f} acc {t['accuracy_arousal']:.3f} "
               f"AUROC {t['auroc_arousal']:.3f} (n={t['n']})")
    (out_dir / f"{MODEL_NAME}.json").write_text(json.dumps(manifest, indent=2))
    (out_dir / f"{MODEL_NAME}.md").write_text(_deap_card(manifest))
    return manifest


def _deap_card(manifest: dict[str, Any]) -> str:
    tr = manifest["training"]
    t = manifest["metrics"]["test_subjects"]
    rows = []
    for key in ("float", "int8", "markers_formula", "predict_zero"):
        m = t[key]["trials"]
        rows.append(f"| {key} | {m['rmse_valence']:.3f} | {m['accuracy_valence']:.3f} | {m['auroc_valence']:.3f} | "
                    f"{m['rmse_arousal']:.3f} | {m['accuracy_arousal']:.3f} | {m['auroc_arousal']:.3f} | {m['n']} |")
    return "\n".join([
        f"# eeg {manifest['version']} — MLP on EEG band-power features, trained on DEAP",
        "",
        "Generated by `emotion-edge train eeg --dataset deap:DIR`. Inputs: `edge.features.eeg.eeg_features` "
        f"({len(manifest['preprocessing']['feature_names'])} features, 4 s windows, 2 s hop). Outputs valence and arousal in [-1, 1].",
        "",
        f"- Data: {tr['data']}",
        f"- Split: {tr['split']}",
        f"- Test subjects: {', '.join(tr['subjects_test'])}",
        f"- Size: int8 {manifest['size_bytes']['int8']} bytes, float {manifest['size_bytes']['float']} bytes",
        "",
        "Held-out subjects, per trial (window predictions averaged; 'high' = rating above 5):",
        "",
        "| model | RMSE val | acc val | AUROC val | RMSE aro | acc aro | AUROC aro | trials |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Caveats: DEAP's EEG is average-referenced 32-channel lab EEG; absolute log powers do not transfer to "
        "Muse/Cyton amplitudes or references. Subject-independent EEG emotion recognition on DEAP is typically "
        "close to chance; compare with the `predict_zero` and `markers_formula` rows before trusting this model.",
        "",
    ])


def train(kind: str, path: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``emotion-edge train eeg``: kind ``deap`` (MLP on DEAP) or ``markers`` (the shipped estimator)."""
    if kind == "deap":
        return train_deap(path, out_dir, args)
    if kind == "markers":
        return train_markers(out_dir, args)
    raise DatasetError(f"train eeg: unknown dataset kind {kind!r} (known: deap:DIR, markers:.)")


def evaluate_deap(name_or_path: str, dataset_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``emotion-edge models evaluate eeg --dataset deap:DIR``: score a model on DEAP subjects.

    Subjects the model was trained on (its manifest's ``training.subjects_train``) are left out.
    Figures are per trial (window predictions averaged), with per-window RMSE alongside.
    """
    from edge.models import TFLiteModel

    model = TFLiteModel(name_or_path, variant=getattr(args, "variant", "int8") or "int8")
    prep = model.manifest.get("preprocessing", {})
    if prep.get("features") != "edge.features.eeg.eeg_features" or list(prep.get("feature_names", [])) != list(EEG_FEATURE_NAMES):
        raise ModelIntegrityError(f"model {model.name}: not an eeg_features model (features {prep.get('features')!r})")
    seen = set(model.manifest.get("training", {}).get("subjects_train", []) or [])
    from edge.tools.deap import subject_files

    wanted = {p.stem.lower() for p in subject_files(Path(dataset_path))} - seen
    if not wanted:
        raise DatasetError(f"deap:{dataset_path}: every subject here was used to train {model.name}")
    data = deap_features(dataset_path, wanted, float(prep.get("window_s", WINDOW_S)), float(prep.get("hop_s", HOP_S)))
    pred = model.predict_batch(data["x"])
    groups = np.char.add(np.char.add(data["subject"].astype(str), ":"), data["trial"].astype(str))
    result: dict[str, Any] = {f"trial_{k}": v for k, v in valence_arousal_metrics(pred, data["y"], groups).items()}
    windows = valence_arousal_metrics(pred, data["y"])
    result.update({"window_rmse_valence": windows["rmse_valence"], "window_rmse_arousal": windows["rmse_arousal"],
                   "windows": windows["n"], "subjects": len(set(data["subject"])),
                   "subjects_excluded_as_training": len(seen & {p.stem.lower() for p in subject_files(Path(dataset_path))}),
                   "variant": model.variant})
    return result
