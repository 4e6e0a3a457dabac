"""Shipped models: find them, check them against their manifests, run them.

Every model is ``<name>.tflite`` beside ``<name>.json`` (its manifest: tensors,
quantization, preprocessing, output semantics, sha256) and ``<name>.md`` (its model card).
A model whose bytes do not hash to the manifest's sha256 is refused with one line.

Runtime: ``ai-edge-litert`` (the maintained TFLite runtime) first, ``tflite-runtime`` as
the fallback import; ``$EMOTION_EDGE_TFLITE_RUNTIME`` names one to use it alone (docs/deploy.md).
TensorFlow is never imported here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelIntegrityError, RuntimeMissingError
from edge.native_output import native_output_filtered

MODEL_NAMES = ("face", "eda", "cardiac", "eeg")
DRAFT_SUFFIX = ".draft.json"  # a training bundle's manifest draft (edge.tools.quantize), not a model


def models_dir() -> Path:
    """Where the shipped models are: $EMOTION_EDGE_MODELS_DIR, the installed package, or ./models."""
    override = os.environ.get("EMOTION_EDGE_MODELS_DIR")
    if override:
        return Path(override)
    try:
        import edge.shipped_models as shipped  # installed (non-editable) layout

        return Path(shipped.__file__).resolve().parent
    except ImportError:
        return Path(__file__).resolve().parent.parent / "models"


RUNTIME_ENV = "EMOTION_EDGE_TFLITE_RUNTIME"  # force one runtime when both are installed
RUNTIMES = ("ai-edge-litert", "tflite-runtime")  # in the order they are tried


def _import_interpreter(runtime: str) -> type:
    if runtime == "ai-edge-litert":
        from ai_edge_litert.interpreter import Interpreter
    else:
        from tflite_runtime.interpreter import Interpreter

        # tflite-runtime (last release 2.14) is built against numpy 1: under numpy 2 it imports,
        # then Interpreter() dies with a SystemError. Say so before that happens.
        if int(np.__version__.split(".")[0]) >= 2:
            raise RuntimeMissingError(
                f"tflite-runtime needs numpy<2 (numpy {np.__version__} is installed): "
                "pip install 'emotion-edge[tflite]' installs a working pair"
            )
    return Interpreter


def interpreter_class() -> tuple[type, str]:
    """Return (Interpreter class, runtime name): ai-edge-litert, else tflite-runtime.

    $EMOTION_EDGE_TFLITE_RUNTIME names one of them to use it and no other (the [tflite] extra
    installs tflite-runtime beside ai-edge-litert, which would otherwise win).
    """
    forced = os.environ.get(RUNTIME_ENV, "").strip()
    if forced and forced not in RUNTIMES:
        raise RuntimeMissingError(f"{RUNTIME_ENV}={forced!r}: not a TFLite runtime (known: {', '.join(RUNTIMES)})")
    for runtime in (forced,) if forced else RUNTIMES:
        try:
            return _import_interpreter(runtime), runtime
        except ImportError:
            continue
    if forced:
        extra = "pip install 'emotion-edge[tflite]'" if forced == "tflite-runtime" else "pip install ai-edge-litert"
        raise RuntimeMissingError(f"{RUNTIME_ENV}={forced}: {forced} is not installed ({extra})")
    raise RuntimeMissingError(
        "no TFLite runtime: pip install ai-edge-litert (or 'emotion-edge[tflite]' for tflite-runtime)"
    )


def open_interpreter(path: Path, num_threads: int = 1, label: str = "model") -> tuple[Any, str]:
    """(allocated interpreter, runtime name) for a .tflite file; one-line ModelIntegrityError if it won't load."""
    interpreter_cls, runtime = interpreter_class()
    try:
        with native_output_filtered():  # the runtime announces its XNNPACK delegate on fd 2
            interpreter = interpreter_cls(model_path=str(path), num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelIntegrityError(f"{label}: {path} is not a TFLite model the runtime can load ({first_line})") from None
    return interpreter, runtime


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_paths(name_or_path: str | Path) -> tuple[Path, Path]:
    """Map a model name (``face``) or a path to a .tflite/.json to (tflite, manifest)."""
    path = Path(name_or_path)
    if path.suffix in (".tflite", ".json"):
        return path.with_suffix(".tflite"), path.with_suffix(".json")
    if path.is_dir():
        raise ModelIntegrityError(f"model {name_or_path}: a folder; give a model name or a .tflite file")
    directory = models_dir()
    return directory / f"{name_or_path}.tflite", directory / f"{name_or_path}.json"


def load_manifest(manifest_path: Path) -> dict[str, Any]:
    if not manifest_path.exists():
        raise ModelIntegrityError(f"model manifest {manifest_path}: not found")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"model manifest {manifest_path}: not valid JSON ({exc})") from exc
    for key in ("name", "sha256", "input", "outputs"):
        if key not in manifest:
            raise ModelIntegrityError(f"model manifest {manifest_path}: missing key '{key}'")
    return manifest


def verify_model_file(tflite_path: Path, manifest: dict[str, Any]) -> None:
    """Refuse a model whose bytes are not the ones its manifest names."""
    if not tflite_path.exists():
        raise ModelIntegrityError(f"model {manifest.get('name', tflite_path.stem)}: {tflite_path} not found")
    actual = sha256_of(tflite_path)
    if actual != manifest["sha256"]:
        raise ModelIntegrityError(
            f"model {manifest.get('name', tflite_path.stem)}: {tflite_path} sha256 {actual[:12]}… "
            f"does not match manifest {manifest['sha256'][:12]}…; refusing to load it"
        )


@dataclass
class _TensorQuant:
    index: int
    dtype: type
    scale: float
    zero_point: int


class TFLiteModel:
    """One verified model: ``predict(features)`` takes float features, returns float outputs.

    Standardisation (manifest ``preprocessing.standardize``), input quantization and output
    dequantization happen here, once, so training, evaluation and the daemon agree.
    """

    def __init__(self, name_or_path: str | Path, num_threads: int = 1, verify: bool = True,
                 variant: str = "int8"):
        self.tflite_path, self.manifest_path = resolve_model_paths(name_or_path)
        self.manifest = load_manifest(self.manifest_path)
        self.variant = variant
        if variant == "float":
            # the float twin, shipped for evaluation and benchmarks; hashed in the same manifest
            if "float_file" not in self.manifest:
                raise ModelIntegrityError(f"model {self.manifest['name']}: manifest names no float twin")
            self.tflite_path = self.manifest_path.with_name(self.manifest["float_file"])
            expected = dict(self.manifest, sha256=self.manifest.get("float_sha256", ""))
        else:
            expected = self.manifest
        if verify:
            verify_model_file(self.tflite_path, expected)
        self.name: str = self.manifest["name"]
        self.version: str = str(self.manifest.get("version", "0"))
        self._interpreter, self.runtime = open_interpreter(self.tflite_path, num_threads, f"model {self.name}")
        inp = self._interpreter.get_input_details()[0]
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self._input = self._quant(inp)
        self._outputs = [self._quant(d) for d in self._interpreter.get_output_details()]
        std = self.manifest.get("preprocessing", {}).get("standardize")
        self._mean = np.asarray(std["mean"], dtype=np.float32) if std else None
        self._std = np.asarray(std["std"], dtype=np.float32) if std else None

    @staticmethod
    def _quant(detail: dict[str, Any]) -> _TensorQuant:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return _TensorQuant(int(detail["index"]), detail["dtype"], float(scale), int(zero_point))

    @property
    def is_int8(self) -> bool:
        return self._input.dtype in (np.int8, np.uint8)

    @property
    def output_names(self) -> list[str]:
        return [str(o.get("name", f"out{i}")) for i, o in enumerate(self.manifest["outputs"])]

    @property
    def labels(self) -> list[str] | None:
        return self.manifest.get("labels")

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self._mean is not None:
            x = (x - self._mean) / self._std
        x = x.reshape(self.input_shape)
        q = self._input
        if q.dtype in (np.int8, np.uint8):
            info = np.iinfo(q.dtype)
            x = np.clip(np.round(x / q.scale + q.zero_point), info.min, info.max).astype(q.dtype)
        else:
            x = x.astype(q.dtype)
        return x

    def predict_raw(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one example (shape = input shape without the batch axis); return every output, dequantized."""
        self._interpreter.set_tensor(self._input.index, self._prepare(x))
        self._interpreter.invoke()
        outs = []
        for q in self._outputs:
            y = self._interpreter.get_tensor(q.index)[0]
            if q.dtype in (np.int8, np.uint8) and q.scale:
                y = (y.astype(np.float32) - q.zero_point) * q.scale
            outs.append(np.asarray(y, dtype=np.float32))
        return outs

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The first output of one example, dequantized (class probabilities, or named values)."""
        return self.predict_raw(x)[0]

    def predict_batch(self, xs: np.ndarray) -> np.ndarray:
        return np.stack([self.predict(x) for x in xs])


def list_models(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every manifest in the models folder, with an ``ok`` flag from the sha256 check.

    ``<name>.draft.json`` (the half-manifest ``train`` leaves beside its ``.keras``) is not a model.
    """
    directory = directory or models_dir()
    rows = []
    for manifest_path in sorted(directory.glob("*.json")):
        if manifest_path.name.endswith(DRAFT_SUFFIX):
            continue
        try:
            manifest = load_manifest(manifest_path)
            verify_model_file(manifest_path.with_suffix(".tflite"), manifest)
            manifest["_status"] = "ok"
        except ModelIntegrityError as exc:
            manifest = {"name": manifest_path.stem, "_status": str(exc)}
        manifest["_path"] = str(manifest_path.with_suffix(".tflite"))
        rows.append(manifest)
    return rows
