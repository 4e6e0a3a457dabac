"""The model runtime: int8 round trip through the real converter and interpreter, sha256 refusal,
TensorFlow kept out of the daemon, shipped models loadable from the installed package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edge.errors import ModelIntegrityError
from edge.models import MODEL_NAMES, TFLiteModel, models_dir


def _tiny_dataset(seed: int = 0):
    """Two Gaussian blobs in 4-D with very different feature scales (standardisation must matter)."""
    rng = np.random.default_rng(seed)
    n = 400
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    x[:, 0] += 2.5 * y
    x *= np.array([1.0, 100.0, 0.01, 5.0], np.float32)
    x += np.array([0.0, 1000.0, -3.0, 0.0], np.float32)
    return x, y


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    from edge.tools.quantize import save_training_bundle

    x, y = _tiny_dataset()
    mean, std = x[:300].mean(0), x[:300].std(0)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation="relu"),
                                 tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    model.fit((x[:300] - mean) / std, y[:300], epochs=30, verbose=0)
    draft = {"name": "tiny", "task": "stress", "version": "0.0.1",
             "outputs": [{"name": "stress", "index": 0, "range": [0, 1], "meaning": "p(stress)"}],
             "preprocessing": {"feature_names": ["a", "b", "c", "d"],
                               "standardize": {"mean": mean.tolist(), "std": std.tolist()}},
             "training": {"data": "synthetic test blobs", "split": "first 300 / last 100"}}
    out = tmp_path_factory.mktemp("tiny")
    save_training_bundle(out, "tiny", model, draft, x[:300], x[300:], y[300:])
    return out, x, y


@pytest.mark.train
def test_quantize_round_trip_keeps_accuracy(tiny_bundle):
    out, x, y = tiny_bundle
    proc = run_cli("models", "quantize", str(out / "tiny.keras"), check=True)
    assert "auroc: float" in proc.stdout and "int8" in proc.stdout
    manifest = json.loads((out / "tiny.json").read_text())
    assert manifest["input_tensor"]["dtype"] == "int8"
    # its own version, not the trainer's: the draft's with a local label naming its bytes
    assert manifest["version"] == f"0.0.1+local.{manifest['sha256'][:8]}"
    assert all(t["dtype"] == "int8" for t in manifest["output_tensors"])
    check = manifest["metrics"]["quantize_check"]
    assert check["int8"]["auroc"] > 0.9
    assert abs(check["int8"]["auroc"] - check["float"]["auroc"]) < 0.02
    int8 = TFLiteModel(out / "tiny.tflite")
    flt = TFLiteModel(out / "tiny.tflite", variant="float")
    assert int8.is_int8 and not flt.is_int8
    p8, pf = int8.predict_batch(x[300:])[:, 0], flt.predict_batch(x[300:])[:, 0]
    assert np.all((p8 >= 0) & (p8 <= 1))
    assert np.mean(np.abs(p8 - pf)) < 0.05  # int8 tracks its float twin


@pytest.mark.train
def test_tampered_model_is_refused_with_one_line(tiny_bundle, tmp_path):
    out, _, _ = tiny_bundle
    for f in ("tiny.tflite", "tiny.json", "tiny.float.tflite"):
        shutil.copy(out / f, tmp_path / f)
    data = bytearray((tmp_path / "tiny.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "tiny.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match manifest"):
        TFLiteModel(tmp_path / "tiny.tflite")
    proc = run_cli("models", "inspect", str(out / "tiny.tflite"))
    assert proc.returncode == 0 and "int8" in proc.stdout


def test_inspect_of_a_missing_or_foreign_file_is_one_line(tmp_path):
    (tmp_path / "notes.tflite").write_text("not a model\n")
    for path, words in ((tmp_path / "absent.tflite", "no such model file"),
                        (tmp_path / "notes.tflite", "not a TFLite model")):
        proc = run_cli("models", "inspect", str(path))
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr, proc.stderr


def test_models_list_flags_tampered_model(tmp_path):
    for f in models_dir().glob("eda*"):
        shutil.copy(f, tmp_path / f.name)
    assert (tmp_path / "eda.tflite").exists(), "the eda model must ship"
    data = bytearray((tmp_path / "eda.tflite").read_bytes())
    data[-10] ^= 0x01
    (tmp_path / "eda.tflite").write_bytes(bytes(data))
    proc = run_cli("models", "list", env={"EMOTION_EDGE_MODELS_DIR": str(tmp_path)})
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("eda")][0]
    assert "does not match manifest" in line


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_model_is_int8_verified_and_documented(name):
    directory = models_dir()
    model = TFLiteModel(name)
    assert model.is_int8
    manifest = model.manifest
    assert manifest["name"] == name
    for key in ("task", "outputs", "preprocessing", "training", "sha256", "input_tensor"):
        assert key in manifest, key
    assert (directory / f"{name}.md").exists(), "model card missing"
    x = np.zeros(model.input_shape[1:], np.float32)
    y = model.predict(x)
    assert np.all(np.isfinite(y))


def test_installed_package_loads_models_outside_the_repo(tmp_path):
    """Models come from the installed package (edge.shipped_models), not from a source checkout."""
    code = ("import edge.models as m, pathlib, sys; d = m.models_dir(); "
            "print(d); sys.exit(0 if d.exists() else 1)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if "PYTHONPATH" not in __import__("os").environ:  # CI: non-editable install
        assert "site-packages" in proc.stdout


DAEMON_MODULES = ["edge.cli", "edge.models", "edge.daemon", "edge.fusion", "edge.publish", "edge.estimators",
                  "edge.features.eda", "edge.features.cardiac", "edge.features.eeg", "edge.features.face",
                  "edge.features.face_detect",
                  "firmware_bridge.devices", "firmware_bridge.simulate", "firmware_bridge.bridges"]


def test_daemon_never_imports_tensorflow_or_heavy_libraries():
    code = (
        "import importlib, importlib.util, sys\n"
        f"for name in {DAEMON_MODULES!r}:\n"
        "    if importlib.util.find_spec(name) is not None:\n"
        "        importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'neurokit2', 'pandas', 'sklearn', 'scipy.signal', 'matplotlib')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"daemon modules pulled in: {proc.stdout.strip()}"


def test_a_local_version_names_the_models_own_bytes():
    from edge.tools.quantize import local_version

    assert local_version("1.1.0", "3f2a9c01deadbeef") == "1.1.0+local.3f2a9c01"
    assert local_version("1.0.0+deap", "3f2a9c01deadbeef") == "1.0.0+deap.local.3f2a9c01"


def test_a_training_draft_in_the_models_folder_breaks_neither_list_nor_doctor(tmp_path):
    """``train`` leaves <name>.draft.json beside its model; it is not a manifest of its own."""
    for f in ("eda.tflite", "eda.float.tflite", "eda.json"):
        shutil.copy(models_dir() / f, tmp_path / f)
    draft = {k: v for k, v in json.loads((tmp_path / "eda.json").read_text()).items()
             if k in ("name", "task", "version", "outputs", "preprocessing", "training")}
    (tmp_path / "eda.draft.json").write_text(json.dumps(draft))
    listed = run_cli("models", "list", env={"EMOTION_EDGE_MODELS_DIR": str(tmp_path)}, check=True)
    rows = [line for line in listed.stdout.splitlines() if not line.startswith("(")]
    assert len(rows) == 1 and rows[0].startswith("eda ") and rows[0].endswith("ok"), listed.stdout
    doctor = run_cli("doctor", "--models-dir", str(tmp_path), "--source", "simulate:streams=eda",
                     "--broker", "mqtt://127.0.0.1:9", "--timeout", "0.5", "--state-dir", str(tmp_path / "state"))
    model_lines = [line for line in doctor.stdout.splitlines() if "model " in line]
    assert any("model eda" in line and "sha256 matches" in line for line in model_lines), doctor.stdout
    assert "eda.draft" not in doctor.stdout and "missing key" not in doctor.stdout, doctor.stdout
