"""Keras model + calibration data -> full-integer int8 .tflite + manifest.

The one place where models become shipped artefacts; ``emotion-edge train`` ends here and
``emotion-edge models quantize`` calls it on a saved model. A bundle in DIR is:

    DIR/<name>.keras        the trained float model
    DIR/<name>.calib.npz    x_calib (raw features for the int8 calibration), x_eval, y_eval
                            (held-out, subject-wise), all *before* standardisation
    DIR/<name>.draft.json   the manifest's fields that training knows (task, labels, outputs,
                            preprocessing incl. standardize mean/std, training data and split)
    DIR/<name>.tflite       written here: the int8 model
    DIR/<name>.float.tflite written here: its float twin (for evaluation and benchmarks)
    DIR/<name>.json         written here: the manifest (draft + tensors + quantization + sha256)

A model made here is not the shipped one, so it does not carry the shipped version: its version is
the trainer's (the shipped one it descends from) with a PEP 440 local label naming its own bytes,
``<shipped>+local.<first 8 hex of its int8 sha256>`` (e.g. ``1.1.0+local.3f2a9c01``): states and
``models list`` then tell it apart, and the same bytes always get the same version. Shipping it
means giving it a version of its own in its manifest (a manifest edit; the sha256 does not change).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edge.models import TFLiteModel, sha256_of
from edge.native_output import native_output_filtered
from edge.tools import metrics
from edge.tools.tensorflow_import import import_tensorflow


def _standardize(x: np.ndarray, draft: dict[str, Any]) -> np.ndarray:
    std = draft.get("preprocessing", {}).get("standardize")
    x = np.asarray(x, dtype=np.float32)
    if std:
        x = (x - np.asarray(std["mean"], np.float32)) / np.asarray(std["std"], np.float32)
    return x


def convert(keras_model: Any, x_calib_std: np.ndarray | None) -> bytes:
    """Convert with TensorFlow Lite: float if ``x_calib_std`` is None, else full-integer int8."""
    tf = import_tensorflow()

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    if x_calib_std is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        sample = x_calib_std[: min(len(x_calib_std), 500)]

        def representative():
            for row in sample:
                yield [row[None, ...].astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with native_output_filtered(stdout=True), warnings.catch_warnings():
        # the converter lists every TensorSpec on stdout, and warns that our int8 inputs carry no
        # statistics: the manifest records their scale and zero point, read from the converted model
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        return converter.convert()


def _tensor_manifest(model: TFLiteModel) -> dict[str, Any]:
    interp = model._interpreter
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    scale, zp = inp["quantization"]
    return {
        "input_tensor": {"shape": [int(d) for d in inp["shape"]], "dtype": np.dtype(inp["dtype"]).name,
                          "scale": float(scale), "zero_point": int(zp)},
        "output_tensors": [{"shape": [int(d) for d in o["shape"]], "dtype": np.dtype(o["dtype"]).name,
                            "scale": float(o["quantization"][0]), "zero_point": int(o["quantization"][1])}
                           for o in outs],
    }


def evaluate_model(model: TFLiteModel, x: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    """Score a model on raw (unstandardised) features with the task's metrics."""
    out = model.predict_batch(x)
    if task == "classification":
        return metrics.classification_metrics(y, out)
    if task == "stress":
        return metrics.stress_metrics(y, out[:, 0])
    if task == "valence_arousal":
        err = out[:, :2] - np.asarray(y, np.float32)[:, :2]
        return {"rmse_valence": float(np.sqrt(np.mean(err[:, 0] ** 2))),
                "rmse_arousal": float(np.sqrt(np.mean(err[:, 1] ** 2))), "n": int(len(y))}
    raise ValueError(f"unknown task {task!r}")


def local_version(base: str, sha256: str) -> str:
    """``1.1.0`` -> ``1.1.0+local.<sha256[:8]>`` (a local label after an existing one joins it with a dot)."""
    label = f"local.{sha256[:8]}"
    return f"{base}.{label}" if "+" in base else f"{base}+{label}"


def write_bundle(out_dir: Path, name: str, keras_model: Any, draft: dict[str, Any],
                 x_calib: np.ndarray, x_eval: np.ndarray | None = None, y_eval: np.ndarray | None = None,
                 report: Any = print) -> dict[str, Any]:
    """Write ``<name>.tflite`` (int8), ``<name>.float.tflite`` and ``<name>.json``; return the manifest.

    Float and int8 are scored on the same held-out data when given, and the comparison is
    reported (``report`` gets one line per figure).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    int8_path = out_dir / f"{name}.tflite"
    float_path = out_dir / f"{name}.float.tflite"
    float_path.write_bytes(convert(keras_model, None))
    int8_path.write_bytes(convert(keras_model, _standardize(x_calib, draft)))

    manifest: dict[str, Any] = {"name": name, "version": draft.get("version", "1.0.0")}
    manifest.update(draft)
    manifest["file"] = int8_path.name
    manifest["float_file"] = float_path.name
    manifest.setdefault("input", {"features": draft.get("preprocessing", {}).get("feature_names")})
    manifest["size_bytes"] = {"int8": int8_path.stat().st_size, "float": float_path.stat().st_size}
    manifest["sha256"] = sha256_of(int8_path)
    manifest["float_sha256"] = sha256_of(float_path)
    manifest["version"] = local_version(str(manifest["version"]), manifest["sha256"])
    # tensors and quantization, read back from the converted model itself
    manifest_path = out_dir / f"{name}.json"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    int8_model = TFLiteModel(int8_path)
    manifest.update(_tensor_manifest(int8_model))

    report(f"size float {manifest['size_bytes']['float'] / 1024:.1f} KiB, int8 {manifest['size_bytes']['int8'] / 1024:.1f} KiB")
    if x_eval is not None and y_eval is not None and len(x_eval):
        float_model = TFLiteModel(int8_path, variant="float")
        task = draft["task"]
        m_float = evaluate_model(float_model, x_eval, y_eval, task)
        m_int8 = evaluate_model(int8_model, x_eval, y_eval, task)
        manifest.setdefault("metrics", {})["quantize_check"] = {"float": m_float, "int8": m_int8}
        for key in m_float:
            if key != "n":
                report(f"{key}: float {m_float[key]:.4f}  int8 {m_int8[key]:.4f}  (n={m_float['n']})")
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return manifest


def quantize_saved(keras_path: Path, out_dir: Path | None = None, calibration: Path | None = None,
                   report: Any = print) -> dict[str, Any]:
    """``emotion-edge models quantize``: a saved bundle (see module doc) to int8 + manifest."""
    tf = import_tensorflow()

    keras_path = Path(keras_path)
    name = keras_path.name.removesuffix(".keras")
    calibration = calibration or keras_path.with_name(f"{name}.calib.npz")
    draft_path = keras_path.with_name(f"{name}.draft.json")
    draft = json.loads(draft_path.read_text())
    data = np.load(calibration)
    keras_model = tf.keras.models.load_model(keras_path, compile=False)
    return write_bundle(out_dir or keras_path.parent, draft.get("name", name), keras_model, draft,
                        data["x_calib"], data.get("x_eval"), data.get("y_eval"), report=report)


def save_training_bundle(out_dir: Path, name: str, keras_model: Any, draft: dict[str, Any],
                         x_calib: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray) -> None:
    """What ``train`` leaves behind so ``models quantize`` can redo the int8 step alone."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_model.save(out_dir / f"{name}.keras")
    np.savez_compressed(out_dir / f"{name}.calib.npz", x_calib=x_calib, x_eval=x_eval, y_eval=y_eval)
    (out_dir / f"{name}.draft.json").write_text(json.dumps(draft, indent=2))
