"""Train the ``eda`` and ``cardiac`` stress models on Stress-Predict (subject-wise validation).

``emotion-edge train eda --dataset stress-predict:PATH --out DIR`` (and ``cardiac``):

1. features per window from ``edge.tools.stress_predict`` (the daemon's own feature code);
2. grouped K-fold over *subjects* (default: 13 folds of two subjects): for each fold a small
   Keras MLP is trained on the other subjects, converted to float and int8 TFLite and scored
   on the held-out subjects — these out-of-fold predictions are the reported figures (eda,
   cardiac and the fused "stress" = the quality-weighted mean of the two);
3. the shipped model is trained on every labelled subject and written through
   ``edge.tools.quantize.write_bundle`` with the cross-validated metrics in its manifest.

Each window's model input is its features plus their deviation from the mean of the same
recording's usable windows over the trailing ``--baseline-span`` seconds (default 1200;
``edge.features.baseline``, the code the daemon runs). It is causal and needs no calibration
period; ``--baseline-span 0`` trains on the absolute features alone, as models before 1.1.0 did.
Set ``EMOTION_EDGE_FEATURE_CACHE=DIR`` to cache extracted features between runs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DatasetError
from edge.features.baseline import TRAILING_SPAN_S, input_names, with_trailing_deviation
from edge.features.cardiac import CARDIAC_FEATURE_NAMES
from edge.features.eda import EDA_FEATURE_NAMES
from edge.tools import metrics
from edge.tools import stress_predict as sp
from edge.tools.tensorflow_import import import_tensorflow

log = logging.getLogger(__name__)

QUALITY_MIN = 0.3  # windows below this signal quality are neither trained on nor scored
COVERAGE_MIN = 0.5  # share of a window's described seconds that must carry a label
DEFAULT_FOLDS = 13
DEFAULT_EPOCHS = 40
MODEL_VERSION = "1.1.0"  # 1.1.0: inputs doubled by the trailing-baseline deviations

# how each cardiac stream becomes the IBIs that hrv_features(ibi_ms, beat_times_s) takes
BEAT_SOURCES = {
    "ibi": "the stream's inter-beat intervals (ms) as given (E4 IBI.csv, Polar/BLE HRS RR intervals)",
    "bvp": "edge.features.cardiac.bvp_beats -> beats_to_ibi_ms",
    "ecg": "edge.features.cardiac.ecg_r_peaks -> beats_to_ibi_ms",
}

MODALITIES: dict[str, dict[str, Any]] = {
    "eda": {"names": EDA_FEATURE_NAMES, "function": "edge.features.eda.eda_features",
            "window_s": sp.EDA_WINDOW_S, "rate_hz": 4.0, "streams": ["eda"],
            "quality": "edge.features.eda.eda_quality"},
    "cardiac": {"names": CARDIAC_FEATURE_NAMES, "function": "edge.features.cardiac.hrv_features",
                "window_s": sp.CARDIAC_WINDOW_S, "rate_hz": 64.0, "streams": ["ibi", "bvp", "ecg"],
                "quality": "edge.features.cardiac.cardiac_quality"},
}


def usable(table: dict[str, np.ndarray], modality: str, quality_min: float = QUALITY_MIN) -> np.ndarray:
    """Windows that can be trained on / scored: finite features, enough quality, labelled."""
    x = table[f"x_{modality}"]
    return np.isfinite(x).all(axis=1) & (table[f"q_{modality}"] >= quality_min) & (table["coverage"] >= COVERAGE_MIN)


def model_inputs(table: dict[str, np.ndarray], modality: str, span_s: float,
                 quality_min: float = QUALITY_MIN, window_s: float | None = None) -> np.ndarray:
    """The model's input rows for every window of one recording: the features, and (span_s > 0) their
    deviations from the trailing mean of the windows the daemon also takes into its baseline.

    The daemon's first window is a complete one (``edge.windows.WindowClock``), and each usable window
    (finite features, quality >= quality_min) joins the stream's baseline. So here the complete
    windows with finite features and enough quality join; the shorter start-up windows of a
    recording (ends from 60 s) are scored against them but never join. Labels play no part.
    """
    x = table[f"x_{modality}"]
    if not span_s:
        return x
    complete = sp.complete_windows(table["ends"], window_s or MODALITIES[modality]["window_s"])
    joins = np.isfinite(x).all(axis=1) & complete & (table[f"q_{modality}"] >= quality_min)
    return with_trailing_deviation(table["ends"], x, joins, span_s)


def stack(tables: dict[str, dict[str, np.ndarray]] | list[dict[str, dict[str, np.ndarray]]], sids: list[str],
          modality: str, span_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Usable rows of the given subjects, pooled over one or more feature sources (e.g. BVP and IBI.csv beats)."""
    sources = tables if isinstance(tables, list) else [tables]
    xs, ys = [], []
    for source in sources:
        for sid in sids:
            t = source[sid]
            x = model_inputs(t, modality, span_s)
            ok = usable(t, modality)
            xs.append(x[ok])
            ys.append(t["y"][ok])
    n_feat = len(MODALITIES[modality]["names"]) * (2 if span_s else 1)
    return (np.concatenate(xs) if xs else np.zeros((0, n_feat))).astype(np.float32), \
        (np.concatenate(ys) if ys else np.zeros(0)).astype(np.int8)


def build_model(n_features: int, seed: int):
    tf = import_tensorflow()

    tf.keras.utils.set_random_seed(seed)
    reg = tf.keras.regularizers.l2(1e-3)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(n_features,)),
        tf.keras.layers.Dense(16, activation="relu", kernel_regularizer=reg),
        tf.keras.layers.Dropout(0.3),
        tf.keras.layers.Dense(8, activation="relu", kernel_regularizer=reg),
        tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return model


def standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def fit(x: np.ndarray, y: np.ndarray, seed: int, epochs: int):
    """Standardise, train the MLP with balanced class weights; return (model, mean, std)."""
    mean, std = standardizer(x)
    model = build_model(x.shape[1], seed)
    pos = float(np.mean(y))
    weights = {0: 0.5 / max(1 - pos, 1e-3), 1: 0.5 / max(pos, 1e-3)}
    model.fit((x - mean) / std, y.astype(np.float32), epochs=epochs, batch_size=256, verbose=0,
              class_weight=weights, shuffle=True)
    return model, mean, std


def _tflite_predict(model_bytes: bytes, x_std: np.ndarray) -> np.ndarray:
    """Run a converted model (float or int8) over standardised rows; returns p(stress)."""
    from edge.models import interpreter_class

    interpreter_cls, _ = interpreter_class()
    interp = interpreter_cls(model_content=model_bytes, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    preds = np.empty(len(x_std), np.float32)
    for i, row in enumerate(x_std):
        v = row[None, :].astype(np.float32)
        if inp["dtype"] == np.int8:
            v = np.clip(np.round(v / in_scale + in_zp), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], v)
        interp.invoke()
        o = interp.get_tensor(out["index"])[0, 0]
        preds[i] = (float(o) - out_zp) * out_scale if out["dtype"] == np.int8 else float(o)
    return preds


def subject_folds(sids: list[str], n_folds: int) -> list[list[str]]:
    """Deterministic grouped folds: subjects dealt round-robin in sorted order."""
    n_folds = max(2, min(n_folds, len(sids)))
    return [sorted(sids)[k::n_folds] for k in range(n_folds)]


def cross_validate(sources: dict[str, dict[str, dict[str, np.ndarray]]], modality: str, n_folds: int, seed: int,
                   epochs: int, span_s: float, int8: bool = True) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Out-of-fold p(stress) per source, variant, subject and window (NaN = unusable window).

    ``sources`` maps a feature source ("bvp", "ibi", ...) to its tables; each fold trains one
    model on the training subjects' rows of every source and scores each source separately.
    Returns {source: {"float": {sid: p}, "int8": {sid: p}}}.
    """
    from edge.tools.quantize import convert

    first = next(iter(sources.values()))
    sids = sorted(first)
    out = {name: {"float": {}, "int8": {}} for name in sources}
    for k, test in enumerate(subject_folds(sids, n_folds)):
        train = [s for s in sids if s not in test]
        x, y = stack(list(sources.values()), train, modality, span_s)
        model, mean, std = fit(x, y, seed + k, epochs)
        float_bytes = convert(model, None)
        int8_bytes = convert(model, (x - mean) / std) if int8 else None
        for name, tables in sources.items():
            for sid in test:
                t = tables[sid]
                feats = model_inputs(t, modality, span_s)
                ok = usable(t, modality)
                x_std = ((feats[ok] - mean) / std).astype(np.float32)
                for variant, blob in (("float", float_bytes), ("int8", int8_bytes)):
                    p = np.full(len(t["y"]), np.nan, np.float32)
                    if blob is not None and ok.any():
                        p[ok] = _tflite_predict(blob, x_std)
                    out[name][variant][sid] = p
        log.info("%s fold %d/%d (test %s) done", modality, k + 1, n_folds, ", ".join(test))
    return out


def fuse(p_eda: np.ndarray, q_eda: np.ndarray, p_cardiac: np.ndarray, q_cardiac: np.ndarray) -> np.ndarray:
    """Quality-weighted mean of the available modalities' p(stress) (NaN where neither is available)."""
    w_e = np.where(np.isfinite(p_eda), q_eda, 0.0)
    w_c = np.where(np.isfinite(p_cardiac), q_cardiac, 0.0)
    total = w_e + w_c
    with np.errstate(invalid="ignore", divide="ignore"):
        fused = (np.nan_to_num(p_eda) * w_e + np.nan_to_num(p_cardiac) * w_c) / total
    return np.where(total > 0, fused, np.nan)


def score(tables: dict[str, dict[str, np.ndarray]], preds: dict[str, np.ndarray],
          window_s: float = sp.EDA_WINDOW_S) -> dict[str, float]:
    """Pooled stress metrics over every scored window, plus the median per-subject AUROC and the
    AUROC over complete windows only: the loader also makes shorter windows at each recording's
    start (ends from 60 s), which the daemon never publishes and which are all rest in this study."""
    sids = sorted(preds)
    y = np.concatenate([tables[s]["y"] for s in sids])
    cov = np.concatenate([tables[s]["coverage"] for s in sids])
    p = np.concatenate([preds[s] for s in sids])
    complete = np.concatenate([sp.complete_windows(tables[s]["ends"], window_s) for s in sids])
    ok = np.isfinite(p) & (cov >= COVERAGE_MIN)
    result = metrics.stress_metrics(y[ok], p[ok])
    result["auroc_complete_windows"] = metrics.auroc(y[ok & complete], p[ok & complete])
    per = []
    for s in sids:
        m = np.isfinite(preds[s]) & (tables[s]["coverage"] >= COVERAGE_MIN)
        if m.any():
            per.append(metrics.auroc(tables[s]["y"][m], preds[s][m]))
    result["median_subject_auroc"] = float(np.nanmedian(per)) if per else float("nan")
    result["windows_scored_share"] = float(ok.sum() / max((cov >= COVERAGE_MIN).sum(), 1))
    result["subjects"] = len(sids)
    return result


def cv_report(tables: dict[str, dict[str, np.ndarray]], n_folds: int, seed: int, epochs: int, span_s: float,
              cache: Path | None = None,
              ibi_tables: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Cross-validated figures for eda, cardiac and fused stress (float and int8), cached in ``cache``.

    ``tables`` carry cardiac features from BVP beats; ``ibi_tables`` (optional) from the E4's
    IBI.csv. The cardiac model trains on both; "cardiac"/"stress" are scored on BVP beats (every
    window has them), "cardiac_ibi"/"stress_ibi" on IBI.csv beats.
    """
    key = f"{sorted(tables)}|{n_folds}|{seed}|{epochs}|{span_s:g}|{ibi_tables is not None}|{sp._feature_code_version()}"
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["report"]
    cardiac_sources = {"bvp": tables} if ibi_tables is None else {"bvp": tables, "ibi": ibi_tables}
    oof_eda = cross_validate({"eda": tables}, "eda", n_folds, seed, epochs, span_s)["eda"]
    oof_card = cross_validate(cardiac_sources, "cardiac", n_folds, seed, epochs, span_s)
    report: dict[str, Any] = {"folds": subject_folds(sorted(tables), n_folds)}
    for variant in ("float", "int8"):
        report.setdefault("eda", {})[variant] = score(tables, oof_eda[variant])
        for source, suffix in (("bvp", ""), ("ibi", "_ibi")):
            if source not in oof_card:
                continue
            src_tables = cardiac_sources[source]
            p_card = oof_card[source][variant]
            report.setdefault(f"cardiac{suffix}", {})[variant] = score(tables, p_card)
            fused = {s: fuse(oof_eda[variant][s], tables[s]["q_eda"], p_card[s], src_tables[s]["q_cardiac"])
                     for s in tables}
            report.setdefault(f"stress{suffix}", {})[variant] = score(tables, fused)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "report": report}, indent=2))
    return report


def _train(modality: str, kind: str, path: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    if kind != "stress-predict":
        raise DatasetError(f"train {modality}: dataset kind {kind!r} not supported (known: stress-predict)")
    from edge.tools.quantize import save_training_bundle, write_bundle

    seed = int(getattr(args, "seed", 0) or 0)
    epochs = int(getattr(args, "epochs", None) or DEFAULT_EPOCHS)
    n_folds = int(getattr(args, "folds", None) or DEFAULT_FOLDS)
    span_s = getattr(args, "baseline_span", None)
    span_s = TRAILING_SPAN_S if span_s is None else float(span_s)
    if span_s < 0:
        raise DatasetError(f"train {modality}: --baseline-span must be >= 0 s (0 = absolute features only), "
                           f"got {span_s:g}")
    tables = sp.load_dataset(path, progress=True)
    ibi_tables = sp.load_dataset(path, cardiac_source="ibi")
    sids = sorted(tables)
    if len(sids) < 2:
        raise DatasetError(f"stress-predict {path}: subject-wise validation needs at least 2 labelled subjects, found {len(sids)}")
    report = cv_report(tables, n_folds, seed, epochs, span_s, Path(out_dir) / "physio_cv.json", ibi_tables=ibi_tables)
    for m in ("eda", "cardiac", "stress", "cardiac_ibi", "stress_ibi"):
        f, q = report[m]["float"], report[m]["int8"]
        log.info("cross-validated %s: AUROC float %.3f int8 %.3f, balanced accuracy float %.3f int8 %.3f (n=%d)",
                 m, f["auroc"], q["auroc"], f["balanced_accuracy"], q["balanced_accuracy"], f["n"])

    spec = MODALITIES[modality]
    x, y = stack([tables, ibi_tables] if modality == "cardiac" else [tables], sids, modality, span_s)
    model, mean, std = fit(x, y, seed, epochs)
    folds = report["folds"]
    draft: dict[str, Any] = {
        "name": modality,
        "version": MODEL_VERSION if span_s else "1.0.0",
        "task": "stress",
        "input": {"features": input_names(spec["names"]) if span_s else list(spec["names"])},
        "outputs": [{"name": "stress", "index": 0, "range": [0.0, 1.0],
                     "meaning": "probability that the wearer is under acute stress (study's task periods)"}],
        "preprocessing": {
            "features": spec["function"],
            "feature_names": list(spec["names"]),
            "window_s": spec["window_s"],
            "recent_s": 60.0,
            "hop_s": sp.HOP_S,
            "rate_hz": spec["rate_hz"],
            "streams": spec["streams"],
            **({"beats": BEAT_SOURCES} if modality == "cardiac" else {}),
            "quality": spec["quality"],
            "quality_min": QUALITY_MIN,
            **({"trailing_baseline": {
                "function": "edge.features.baseline.TrailingBaseline",
                "span_s": span_s,
                "joins": "windows with finite features and quality >= quality_min, one baseline per stream",
                "input_names": input_names(spec["names"]),
            }} if span_s else {}),
            "standardize": {"mean": mean.tolist(), "std": std.tolist()},
        },
        "training": {
            "data": "Stress-Predict (Iqbal et al., Sensors 22(21):8135, 2022; MIT licence), Empatica E4 wrist",
            "labels": "Processed_data/Improved_All_Combined_hr_rsp_binary.csv, per-second 0/1, "
                      "majority over each window's last 60 s",
            "split": f"shipped model: all {len(sids)} labelled subjects; reported metrics: "
                     f"{len(folds)}-fold subject-wise cross-validation (out-of-fold predictions only)",
            "subjects_train": sids,
            "subjects_test": [],
            "cv_folds": folds,
            "cardiac_beats": ("windows twice: beats from bvp_beats on the E4 BVP (64 Hz) and the E4's own "
                              "IBI.csv beats" if modality == "cardiac" else None),
            "epochs": epochs, "seed": seed,
            "model": "MLP 16-8-1 (ReLU, L2 1e-3, dropout 0.3), balanced class weights",
        },
        "metrics": {"cv_subject_wise": {m: report[m] for m in ("eda", "cardiac", "stress", "cardiac_ibi", "stress_ibi")
                                        if m in report}},
    }
    out_dir = Path(out_dir)
    save_training_bundle(out_dir, modality, model, draft, x, x[:0], y[:0])
    manifest = write_bundle(out_dir, modality, model, draft, x, report=log.info)
    print(f"wrote {out_dir / (modality + '.tflite')} (int8) and {modality}.json; "
          f"subject-wise CV AUROC float {report[modality]['float']['auroc']:.3f} "
          f"int8 {report[modality]['int8']['auroc']:.3f}; fused stress int8 {report['stress']['int8']['auroc']:.3f}")
    return manifest


def train_eda(kind: str, path: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    return _train("eda", kind, path, out_dir, args)


def train_cardiac(kind: str, path: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    return _train("cardiac", kind, path, out_dir, args)
