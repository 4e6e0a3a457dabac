"""``emotion-edge train MODALITY --dataset KIND:PATH --out DIR``.

Each trainer is ``train(kind, path, out_dir, args) -> manifest`` in its own module; it
writes a training bundle and the int8 model through ``edge.tools.quantize``.
"""

from __future__ import annotations

import argparse
import importlib
import math
from pathlib import Path

from edge.errors import DatasetError
from edge.tools.tensorflow_import import require_tensorflow

TRAINERS = {
    "face": "edge.tools.train_face:train",
    "eda": "edge.tools.train_physio:train_eda",
    "cardiac": "edge.tools.train_physio:train_cardiac",
    "eeg": "edge.tools.train_eeg:train",
}


def parse_dataset(spec: str) -> tuple[str, Path]:
    """``KIND:PATH`` -> (kind, path); the path must exist."""
    kind, sep, path = spec.partition(":")
    if not sep or not kind or not path:
        raise DatasetError(f"--dataset {spec!r}: expected KIND:PATH, e.g. fer2013:../data/fer2013/train")
    if not Path(path).exists():
        raise DatasetError(f"--dataset {spec!r}: {path} does not exist")
    return kind, Path(path)


def resolve(table: dict[str, str], key: str, what: str):
    if key not in table:
        raise DatasetError(f"unknown {what} {key!r} (known: {', '.join(table)})")
    module_name, func = table[key].split(":")
    return getattr(importlib.import_module(module_name), func)


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected channel counts like 16,48,96,160")
    return widths


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1e-8 <= value <= 1.0:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r}: expected a learning rate between 1e-8 and 1, like 5e-4")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modality", choices=sorted(TRAINERS), help="which model to train")
    parser.add_argument("--dataset", required=True, metavar="KIND:PATH",
                        help="fer2013:DIR (face), stress-predict:DIR (eda, cardiac), deap:DIR (eeg)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where the bundle and int8 model go")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (trainer default if absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit-min", type=float, default=None, dest="time_limit_min",
                        help="stop training after this many minutes (face; trainer default if absent)")
    parser.add_argument("--init-from", type=Path, default=None, dest="init_from", metavar="FACE.keras",
                        help="face: start from a previous run's net (its face.keras, or a shipped face.float.tflite) for one warm restart "
                             "at a single resolution instead of training from scratch")
    parser.add_argument("--teacher", type=Path, action="append", default=None, dest="teachers", metavar="FACE.keras",
                        help="face: distil from this net (repeat for an ensemble): the training targets mix each "
                             "image's label with the teachers' mirror-averaged probabilities")
    parser.add_argument("--widths", type=_widths, default=None, metavar="W1,W2,...",
                        help="face: channels of each conv stage (default 24,48,96,192, or --init-from's); narrower "
                             "than --init-from's cuts that net down to its strongest channels before the restart")
    parser.add_argument("--mirror-px", type=int, action="append", default=None, dest="mirror_px", metavar="PX",
                        help="face: allow mirror averaging (two passes per face) at this net input size (repeatable); "
                             "check 'emotion-edge models bench face' against your latency budget")
    parser.add_argument("--restart-px", type=int, default=None, dest="restart_px", metavar="PX",
                        help="face: the input size of an --init-from restart and of its teachers (default 40); "
                             "train at the size the net will be deployed at")
    parser.add_argument("--peak-lr", type=_learning_rate, default=None, dest="peak_lr", metavar="LR",
                        help="face: the learning rate after the warm-up epoch (default 1.5e-3 from scratch, "
                             "5e-4 for an --init-from restart)")
    parser.add_argument("--camera-crops", action="store_true", dest="camera_crops",
                        help="face: also train on each face as the daemon's camera path crops it (pasted into a "
                             "camera-like frame, found and cut by the detector), with lighting, blur and occlusion")
    parser.add_argument("--baseline-span", type=float, default=None, dest="baseline_span", metavar="SECONDS",
                        help="eda, cardiac: beside each window's features, give the model their deviation from the "
                             "mean of the trailing SECONDS (default 1200); 0 = absolute features only")


def main(args: argparse.Namespace) -> int:
    require_tensorflow()
    kind, path = parse_dataset(args.dataset)
    trainer = resolve(TRAINERS, args.modality, "modality")
    trainer(kind, path, args.out, args)
    return 0
