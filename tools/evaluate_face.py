"""``emotion-edge models evaluate face --dataset fer2013:DIR``: score the face model on an image folder.

Every image of ``DIR/<class>/*.jpg`` goes through ``edge.features.face.face_input`` (full-image
box, as in training) and the shipped model (int8 by default, ``--variant float`` for its twin),
through the same ``TFLiteModel`` the daemon uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from edge.features.face import FER_LABELS
from edge.models import TFLiteModel
from edge.tools import metrics
from edge.tools.progress import no_progress
from edge.tools.seen_images import count_seen, read_seen
from edge.tools.train_face import list_fer2013, per_class_recall, read_faces

CHUNK_IMAGES = 256  # read and scored at a time, so progress can be told and memory stays flat


def evaluate_fer2013(name_or_path: str | Path, dataset_path: Path,
                     args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, n and per-class recall of the model on every image of the folder.

    ``training_overlap`` counts the images the model saw in training (its manifest's
    ``training.seen_images``); null when the manifest records none.
    """
    variant = getattr(args, "variant", None) or "int8"
    progress = getattr(args, "progress", None) or no_progress
    model = TFLiteModel(name_or_path, variant=variant)
    paths, y_true = list_fer2013(Path(dataset_path))
    seen = read_seen(model.manifest, model.manifest_path)
    overlap = None if seen is None else {"what": "images", "n": count_seen(paths, seen), "of": len(paths)}
    probs = np.empty((len(paths), len(FER_LABELS)), np.float32)
    for start in range(0, len(paths), CHUNK_IMAGES):
        chunk = paths[start:start + CHUNK_IMAGES]
        probs[start:start + len(chunk)] = model.predict_batch(read_faces(chunk))
        progress(start + len(chunk), len(paths))
    y_pred = np.argmax(probs, axis=1)
    return {
        "accuracy": metrics.accuracy(y_true, y_pred),
        "macro_f1": metrics.macro_f1(y_true, y_pred, len(FER_LABELS)),
        "n": int(len(y_true)),
        "variant": variant,
        "per_class_recall": per_class_recall(y_true, y_pred),
        "training_overlap": overlap,
    }
