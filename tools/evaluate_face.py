"""``emotion-edge models evaluate face --dataset fer2013:DIR``: score the face model on an image folder.

Every image of ``DIR/<class>/*.jpg`` goes through ``edge.features.face.face_input`` (full-image
box, as in training) and the shipped model (int8 by default, ``--variant float`` for its twin),
through the same ``TFLiteModel`` the daemon uses.

``--split test|val`` scores only the face trainer's held-out part of its own training folder
(``edge.tools.train_face.stratified_split``, seed 0), without the images pixel-identical to one it
trained on (``edge.tools.evaluate_states.choose_faces``). ``--detector-path`` also pastes each face
into a camera-like frame (``edge.tools.face_framing``, seed 0) and scores that frame through the
daemon's own face estimator (``edge.daemon.estimator_for``: detector, crop, model), as
``evaluate states`` does; a face the detector misses counts as wrong.
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
FRAMING_SEED = 0  # faces' random size, place and background in --detector-path (as evaluate states)


def evaluate_fer2013(name_or_path: str | Path, dataset_path: Path,
                     args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, n and per-class recall of the model on every image of the folder.

    ``training_overlap`` counts the images the model saw in training (its manifest's
    ``training.seen_images``); null when the manifest records none.
    """
    variant = getattr(args, "variant", None) or "int8"
    split = getattr(args, "split", None) or "all"
    progress = getattr(args, "progress", None) or no_progress
    model = TFLiteModel(name_or_path, variant=variant)
    if split == "all":
        paths, y_true = list_fer2013(Path(dataset_path))
        which = "every image of the folder"
    else:
        from edge.tools.evaluate_states import choose_faces  # noqa: PLC0415

        paths, y_true, which, _ = choose_faces(Path(dataset_path), split, None)
    seen = read_seen(model.manifest, model.manifest_path)
    overlap = None if seen is None else {"what": "images", "n": count_seen(paths, seen), "of": len(paths)}
    probs = np.empty((len(paths), len(FER_LABELS)), np.float32)
    for start in range(0, len(paths), CHUNK_IMAGES):
        chunk = paths[start:start + CHUNK_IMAGES]
        probs[start:start + len(chunk)] = model.predict_batch(read_faces(chunk))
        progress(start + len(chunk), len(paths))
    y_pred = np.argmax(probs, axis=1)
    result = {
        "accuracy": metrics.accuracy(y_true, y_pred),
        "macro_f1": metrics.macro_f1(y_true, y_pred, len(FER_LABELS)),
        "n": int(len(y_true)),
        "variant": variant,
        "faces": which,
        "per_class_recall": per_class_recall(y_true, y_pred),
        "training_overlap": overlap,
    }
    if getattr(args, "detector_path", False):
        result["detector_path"] = detector_path_figures(model, paths, y_true, y_pred, progress)
    return result


def detector_path_figures(model: TFLiteModel, paths: list[Path], y_true: np.ndarray, y_direct: np.ndarray,
                          progress: Any = no_progress) -> dict[str, Any]:
    """Each face pasted into a camera-like frame and scored through the daemon's face estimator.

    The figures are ``evaluate states``' (``edge.tools.evaluate_states.path_figures``, same keys):
    ``accuracy_detector_path`` counts a face the detector misses as wrong, so it is comparable with
    ``accuracy_direct``; the ``_found`` pair compares the two paths on the faces found.
    """
    from edge.config import load_config  # noqa: PLC0415
    from edge.daemon import estimator_for  # noqa: PLC0415
    from edge.tools.evaluate_states import path_figures, read_face  # noqa: PLC0415
    from edge.tools.face_framing import framed_face, framing_description  # noqa: PLC0415

    estimator = estimator_for(load_config(None), "face", model)
    rng = np.random.default_rng(FRAMING_SEED)
    y_path = np.full(len(paths), -1, np.int64)
    for i, path in enumerate(paths):
        frame, _ = framed_face(read_face(path), rng)
        scored = estimator.score_frame(frame)
        if scored is not None:
            y_path[i] = int(np.argmax(scored[0]))
        if (i + 1) % CHUNK_IMAGES == 0 or i + 1 == len(paths):
            progress(i + 1, len(paths))
    found = y_path >= 0
    return {
        "framing": framing_description(),
        **path_figures(y_true, y_direct, y_path),
        "per_class_recall": per_class_recall(y_true, y_path),
        "per_class_found_share": {label: float(found[y_true == c].mean()) if np.any(y_true == c) else None
                                  for c, label in enumerate(FER_LABELS)},
    }
