"""``emotion-edge models evaluate eda|cardiac|stress|FILE.tflite --dataset stress-predict:PATH``.

Scores shipped (or given) stress models on every labelled subject under ``PATH/Raw_data``, with
the windows, hop, trailing baseline and quality gate of the model's manifest. ``stress`` is the late fusion of the
``eda`` and ``cardiac`` models: their p(stress) averaged with the windows' signal qualities as
weights (a modality with an unusable window drops out of that window).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DatasetError, ModelIntegrityError
from edge.features.baseline import trailing_span_s
from edge.models import TFLiteModel
from edge.tools import stress_predict as sp
from edge.tools.train_physio import COVERAGE_MIN, QUALITY_MIN, fuse, model_inputs, score, usable

log = logging.getLogger(__name__)

_FEATURES_TO_MODALITY = {
    "edge.features.eda.eda_features": "eda",
    "edge.features.cardiac.hrv_features": "cardiac",
}


def _modality_of(model: TFLiteModel) -> str:
    function = model.manifest.get("preprocessing", {}).get("features", "")
    modality = _FEATURES_TO_MODALITY.get(function)
    if modality is None:
        raise ModelIntegrityError(
            f"model {model.name}: preprocessing.features {function!r} is not a Stress-Predict modality "
            f"(known: {', '.join(_FEATURES_TO_MODALITY)})")
    if model.manifest.get("task") != "stress":
        raise ModelIntegrityError(f"model {model.name}: task {model.manifest.get('task')!r}, expected 'stress'")
    return modality


def _predict(model: TFLiteModel, modality: str, tables: dict[str, dict[str, np.ndarray]],
             window_s: float) -> dict[str, np.ndarray]:
    pre = model.manifest.get("preprocessing", {})
    quality_min = float(pre.get("quality_min", QUALITY_MIN))
    span_s = trailing_span_s(pre)  # as the daemon's estimator reads it
    out = {}
    for sid, table in tables.items():
        ok = usable(table, modality, quality_min)
        p = np.full(len(table["y"]), np.nan, np.float32)
        if ok.any():
            inputs = model_inputs(table, modality, span_s, quality_min, window_s)
            p[ok] = model.predict_batch(inputs[ok])[:, 0]
        out[sid] = p
    return out


def evaluate_stress_predict(name_or_path: str, dataset_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """AUROC, balanced accuracy (threshold 0.5) and n windows of a model (or the fused pair) on Stress-Predict."""
    variant = getattr(args, "variant", "int8") or "int8"
    progress = getattr(args, "progress", None)
    names = ["eda", "cardiac"] if name_or_path == "stress" else [name_or_path]
    models = [TFLiteModel(n, variant=variant) for n in names]
    modalities = [_modality_of(m) for m in models]
    windows = {m: float(model.manifest["preprocessing"].get("window_s", sp.EDA_WINDOW_S))
               for m, model in zip(modalities, models)}
    hops = {float(model.manifest["preprocessing"].get("hop_s", sp.HOP_S)) for model in models}
    if len(hops) != 1:
        raise ModelIntegrityError(f"models {', '.join(names)}: different hops {sorted(hops)}; cannot fuse")
    tables = sp.load_dataset(Path(dataset_path), eda_window_s=windows.get("eda", sp.EDA_WINDOW_S),
                             cardiac_window_s=windows.get("cardiac", sp.CARDIAC_WINDOW_S), hop_s=hops.pop(),
                             on_subject=progress)
    preds = {m: _predict(model, m, tables, windows[m]) for m, model in zip(modalities, models)}
    if len(preds) == 1:
        combined = next(iter(preds.values()))
    else:
        combined = {s: fuse(preds["eda"][s], tables[s]["q_eda"], preds["cardiac"][s], tables[s]["q_cardiac"])
                    for s in tables}
    result = score(tables, combined)
    labelled = sum(int((t["coverage"] >= COVERAGE_MIN).sum()) for t in tables.values())
    if result["n"] == 0:
        raise DatasetError(f"stress-predict {dataset_path}: no window had usable signals for {name_or_path}")
    trained_on = set().union(*((m.manifest.get("training") or {}).get("subjects_train") or () for m in models))
    result.update({"model": name_or_path, "variant": variant, "windows_labelled": labelled,
                   "subject_ids": sorted(tables),
                   "training_overlap": {"what": "subjects", "n": len(trained_on & set(tables)), "of": len(tables),
                                        "ids": sorted(trained_on & set(tables))}})
    return result
