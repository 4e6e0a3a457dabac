"""``emotion-edge models {list,inspect,quantize,evaluate,bench}``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edge.errors import ModelIntegrityError
from edge.models import TFLiteModel, interpreter_class, list_models, models_dir, open_interpreter
from edge.tools.train import parse_dataset, resolve

# evaluate KIND -> evaluate(model_name_or_path, dataset_path, args) -> {metric: value, "n": int}
EVALUATORS = {
    "fer2013": "edge.tools.evaluate_face:evaluate_fer2013",
    "stress-predict": "edge.tools.evaluate_physio:evaluate_stress_predict",
    "deap": "edge.tools.train_eeg:evaluate_deap",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="shipped models, their versions and sha256 check")
    p = sub.add_parser("inspect", help="tensors, quantization and ops of a .tflite file")
    p.add_argument("file", help="a .tflite file or a model name")
    p = sub.add_parser("quantize", help="a trained .keras model + calibration data -> int8 .tflite + manifest")
    p.add_argument("model", type=Path, help="DIR/<name>.keras as written by 'emotion-edge train'")
    p.add_argument("--calibration", type=Path, help="npz with x_calib (and x_eval, y_eval); default DIR/<name>.calib.npz")
    p.add_argument("--out", type=Path, help="output folder (default: beside the model)")
    p = sub.add_parser("evaluate", help="score a model on a dataset")
    p.add_argument("name", help="model name (face, eda, cardiac, eeg) or path to a .tflite")
    p.add_argument("--dataset", required=True, metavar="KIND:PATH", help=f"KIND one of {', '.join(EVALUATORS)}")
    p.add_argument("--json", action="store_true", help="one JSON object instead of one line per metric")
    p.add_argument("--variant", choices=["int8", "float"], default="int8")
    p.add_argument("--split", choices=["all", "test", "val"], default="all",
                   help="fer2013: every image (default), or the face trainer's held-out test/val part of its "
                        "training folder, without pixel copies of the images trained on")
    p.add_argument("--detector-path", action="store_true",
                   help="fer2013: also paste each face into a camera-like frame and score it through the "
                        "daemon's detector and crop path")
    p = sub.add_parser("bench", help="latency per inference, float vs int8, one thread")
    p.add_argument("name")
    p.add_argument("--runs", type=int, default=500)


def _list(_args) -> int:
    for m in list_models():
        size = Path(m["_path"]).stat().st_size if Path(m["_path"]).exists() else 0
        print(f"{m['name']:<13} {m.get('version', '?'):<7} {m.get('task', '?'):<16} {size / 1024:7.1f} KiB  {m['_status']}")
    print(f"(models folder: {models_dir()}; runtime: {interpreter_class()[1]})")
    return 0


def _inspect(args) -> int:
    path = Path(args.file)
    if not path.suffix:
        path = models_dir() / f"{args.file}.tflite"
    if not path.is_file():
        raise ModelIntegrityError(f"models inspect {args.file}: no such model file ({path})")
    interp, runtime = open_interpreter(path, label="models inspect")
    print(f"{path} ({path.stat().st_size} bytes, runtime {runtime})")
    for kind, details in (("input", interp.get_input_details()), ("output", interp.get_output_details())):
        for d in details:
            scale, zp = d["quantization"]
            print(f"  {kind:<6} {d['name']:<40} shape={[int(n) for n in d['shape']]} dtype={np.dtype(d['dtype']).name} "
                  f"scale={scale:.6g} zero_point={zp}")
    ops: dict[str, int] = {}
    try:
        for op in interp._get_ops_details():  # noqa: SLF001 - the runtimes expose op names only here
            ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    except AttributeError:
        pass
    if ops:
        print("  ops: " + ", ".join(f"{k}×{v}" for k, v in sorted(ops.items())))
    tensor_types = {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    print(f"  tensor dtypes: {', '.join(sorted(tensor_types))}")
    return 0


def _quantize(args) -> int:
    from edge.tools.quantize import quantize_saved
    from edge.tools.tensorflow_import import require_tensorflow

    require_tensorflow()
    manifest = quantize_saved(args.model, args.out, args.calibration)
    print(f"wrote {manifest['file']} and {manifest['name']}.json (sha256 {manifest['sha256'][:12]}…)")
    return 0


def _evaluate(args) -> int:
    from edge.tools.progress import Progress  # noqa: PLC0415

    kind, path = parse_dataset(args.dataset)
    evaluator = resolve(EVALUATORS, kind, "dataset kind")
    unit = "images" if kind == "fer2013" else "subjects"
    args.progress = Progress(f"models evaluate {args.name}", unit,
                             say=lambda line: print(line, file=sys.stderr, flush=True))
    result = evaluator(args.name, path, args)
    warning = overlap_warning(args.name, result.get("training_overlap"))
    if warning:  # on stderr, so --json output stays one object
        print(warning, file=sys.stderr, flush=True)
    if args.json:  # strict JSON: a figure that cannot be computed (one class only) is null, not NaN
        print(json.dumps({k: None if isinstance(v, float) and v != v else v for k, v in result.items()}))
    else:
        for key, value in result.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def overlap_warning(name: str, overlap: dict | None) -> str | None:
    """One line when the evaluated data includes what the model was trained on (its figures are then not held-out)."""
    if not overlap or not overlap.get("n"):
        return None
    what, n, of = overlap["what"], overlap["n"], overlap["of"]
    return (f"warning: {n} of {of} {what} here were in {name}'s training data (its manifest's training record); "
            f"figures on them are not held-out{' (all of them)' if n == of else ''}")


def bench_latency(model: TFLiteModel, runs: int) -> dict[str, float]:
    """Median and p99 latency of one inference, in ms, after warm-up."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(model.input_shape[1:]).astype(np.float32)
    for _ in range(10):
        model.predict(x)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        model.predict(x)
        times[i] = time.perf_counter() - t0
    return {"p50_ms": float(np.median(times) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}


def _bench(args) -> int:
    results = {}
    for variant in ("float", "int8"):
        model = TFLiteModel(args.name, num_threads=1, variant=variant)
        results[variant] = bench_latency(model, args.runs)
        print(f"{args.name} {variant:<5} p50 {results[variant]['p50_ms']:.3f} ms  p99 {results[variant]['p99_ms']:.3f} ms"
              f"  ({model.runtime}, 1 thread, {model.tflite_path.stat().st_size / 1024:.1f} KiB)")
    print(f"int8 speed-up over float: {results['float']['p50_ms'] / results['int8']['p50_ms']:.2f}x")
    return 0


def main(args: argparse.Namespace) -> int:
    return {"list": _list, "inspect": _inspect, "quantize": _quantize, "evaluate": _evaluate,
            "bench": _bench}[args.models_command](args)
