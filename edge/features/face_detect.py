"""Faces and their landmarks in camera frames with BlazeFace (MediaPipe's short-range face detector).

``models/face_detector.tflite`` is Google's BlazeFace short-range model, shipped as is (Apache-2.0;
``models/face_detector.md`` has its provenance and our measurements). It takes a 128x128 RGB
image in [-1, 1] and scores 896 fixed anchors; each anchor regresses a box and six keypoints.
The post-processing here is MediaPipe's own for this model (``face_detection_short_range.pbtxt``):
sigmoid of the clipped logits, a score threshold, then weighted non-maximum suppression
(overlapping candidates are averaged, weighted by score, instead of dropped). The threshold is
0.6 here, not MediaPipe's 0.5: fewer false faces for a few more missed ones (measured below).

A grey frame is replicated to three channels and letterboxed (centred, zero border) to a square
before it is shrunk to 128 px, so a face keeps its aspect ratio.

numpy at import; cv2 and the TFLite runtime are loaded when a detector is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ModelIntegrityError

DETECTOR_MODEL_NAME = "face_detector"
INPUT_PX = 128
NUM_ANCHORS = 896
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear_tragion", "left_ear_tragion")
# Score threshold: MediaPipe uses 0.5 for this model. Measured on the face model's 1,346 framed
# validation faces and on face-free frames (min_face_px 48), 0.5 / 0.55 / 0.6 / 0.65:
#   faces found 94.1 / 93.1 / 90.6 / 87.7 %, detector-path accuracy 62.0 / 61.4 / 60.3 / 58.9 %;
#   false faces on 1,000 textured backgrounds 0.7 / 0.3 / 0.1 / 0.1 %, and on 300 pasted
#   48-px noise squares (upscaled, blob-like) 11 / 5.3 / 1.3 / 0.3 %.
# A false face publishes a confident expression nobody made; a missed one says "no face in view".
# 0.6 gives up 1.7 points of path accuracy for 7-8x fewer false faces.
MEDIAPIPE_SCORE_THRESHOLD = 0.5
SCORE_THRESHOLD = 0.6
SCORE_CLIP = 100.0  # logits are clipped to +-100 before the sigmoid (MediaPipe's score_clipping_thresh)
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold (weighted NMS)
# Boxes wider or taller than this fraction of the frame's shorter side are dropped. On textured
# backgrounds with no face (edge.tools.face_framing.background, 2,000 frames, score >= 0.5)
# BlazeFace fires on the whole frame in 8.4 % of them, with this cap in 0.8 %, while it still
# finds 94.1 % of the framed validation faces (95.3 % without; min_face_px 48). A face that close
# would not fit its FER crop (1.16 box widths) in the frame anyway.
MAX_FACE_FRAC = 0.8

# Second look for small faces (BlazeFace short range is made for faces filling much of its 128-px
# input): 3 x 2 overlapping tiles of 3/4 of the frame's shorter side, only when the whole frame gave
# none. In a 320x240 frame the tiles are 180 px and overlap by 110 px, so any face up to 110 px
# wide lies whole inside one; a face of 80 px is ~32 px of the whole frame's 128-px input but ~57 px
# of a tile's. A tile's faces must score ZOOM_SCORE_THRESHOLD (above SCORE_THRESHOLD): chosen on the
# face model's 1,346 deduplicated validation faces framed as a camera frames them (seed 0) and on
# 1,000 frames with a pasted noise square / 1,000 face-free backgrounds (seed 11), shipped int8
# face model, `models evaluate face --split val --detector-path`:
#   no tiles: found 90.6 %, detector path 60.7 % (direct crop 64.6 %), noise squares called a face 3.3 %
#   tiles, 0.6: found 97.5 %, 64.6 %, noise 9.1 %;  0.7: 96.2 %, 63.8 %, 3.9 %;  0.8: 93.3 %, 62.0 %, 3.3 %
#   (no face-free background was called a face in any of them).
ZOOM_TILE_FRAC = 0.75
ZOOM_TILES = (3, 2)  # columns, rows of a landscape frame (rows, columns of a portrait one)
ZOOM_SCORE_THRESHOLD = 0.7

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(frozen=True)
class FaceDetection:
    """One face: box (x, y, w, h) and keypoints (6, 2) as (x, y), both in frame pixels (floats); score in (0, 1)."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float

    @property
    def int_box(self) -> Box:
        x, y, w, h = self.box
        return int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h)))

    def keypoint(self, name: str) -> tuple[float, float]:
        x, y = self.keypoints[KEYPOINT_NAMES.index(name)]
        return float(x), float(y)

    def scaled(self, factor: float) -> "FaceDetection":
        """The same face in a frame ``factor`` times as large."""
        return FaceDetection(tuple(v * factor for v in self.box), self.keypoints * factor, self.score)  # type: ignore[arg-type]


def blazeface_anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1]: stride 8 -> 16x16 cells x 2 anchors, stride 16 -> 8x8 cells x 6.

    MediaPipe's SsdAnchorsCalculator with this model's options (4 layers, strides 8/16/16/16, one
    aspect ratio, fixed anchor size): the three stride-16 layers share their cells.
    """
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        grid = INPUT_PX // stride
        yy, xx = np.mgrid[0:grid, 0:grid]
        cells = np.stack([(xx.ravel() + 0.5) / grid, (yy.ravel() + 0.5) / grid], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of each of ``boxes`` (n, 4) with ``box`` (4,), all as x0, y0, x1, y1."""
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(areas + (box[2] - box[0]) * (box[3] - box[1]) - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = NMS_IOU) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    ``boxes`` (n, 4) as x0, y0, x1, y1; ``keypoints`` (n, k, 2); ``scores`` (n,). Best first: each
    kept face is the score-weighted mean of every remaining candidate overlapping the best one by
    more than ``iou_threshold`` (the best one's score is kept); those candidates are then removed.
    """
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        best = order[0]
        group = order[box_iou(boxes[order], boxes[best]) > iou_threshold]
        if group.size == 0:  # a degenerate (zero-area) best box overlaps nothing, not even itself
            group = order[:1]
        w = scores[group] / scores[group].sum()
        out.append(((boxes[group] * w[:, None]).sum(0), (keypoints[group] * w[:, None, None]).sum(0),
                    float(scores[best])))
        order = order[~np.isin(order, group)]
    return out


class BlazeFaceDetector:
    """Faces in a frame with BlazeFace short range; ``detect`` gives boxes largest first like ``FaceDetector``.

    ``model_path``: a .tflite; default: ``face_detector`` in the models folder, checked against its
    manifest's sha256 (a wrong or corrupt file raises one-line ``ModelIntegrityError``).
    ``min_face_px``: faces whose box side is smaller are dropped (a FER crop is ~1.16 box sides);
    ``max_face_frac``: so are boxes larger than that fraction of the frame's shorter side.
    ``zoom_tiles``: search a frame with no face again in zoomed tiles, keeping the faces that score
    ``zoom_score_threshold`` (``detect_faces``).
    """

    def __init__(self, model_path: str | Path | None = None, min_face_px: int = 40, num_threads: int = 1,
                 score_threshold: float = SCORE_THRESHOLD, max_face_frac: float = MAX_FACE_FRAC,
                 zoom_tiles: bool = True, zoom_score_threshold: float = ZOOM_SCORE_THRESHOLD):
        from edge.features.face import _cv2  # noqa: PLC0415 - OpenCV is the [camera] extra
        from edge.models import load_manifest, open_interpreter, resolve_model_paths, verify_model_file  # noqa: PLC0415

        self._cv2 = _cv2()
        tflite_path, manifest_path = resolve_model_paths(model_path or DETECTOR_MODEL_NAME)
        if model_path is None or manifest_path.exists():
            verify_model_file(tflite_path, load_manifest(manifest_path))
        elif not tflite_path.exists():
            raise ModelIntegrityError(f"face detector: {tflite_path} not found")
        self.model_path = tflite_path
        self._interpreter, self.runtime = open_interpreter(tflite_path, num_threads, "face detector")
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        shapes = sorted(tuple(int(n) for n in d["shape"]) for d in outputs)
        if (len(inputs) != 1 or tuple(int(n) for n in inputs[0]["shape"]) != (1, INPUT_PX, INPUT_PX, 3)
                or shapes != [(1, NUM_ANCHORS, 1), (1, NUM_ANCHORS, 16)]):
            raise ModelIntegrityError(
                f"face detector: {tflite_path} is not BlazeFace short range (input 1x128x128x3, outputs "
                f"1x896x16 and 1x896x1); got input {[list(d['shape']) for d in inputs]}, outputs {[list(s) for s in shapes]}")
        self._input_index = int(inputs[0]["index"])
        by_shape = {tuple(int(n) for n in d["shape"]): int(d["index"]) for d in outputs}
        self._regressors_index = by_shape[(1, NUM_ANCHORS, 16)]
        self._scores_index = by_shape[(1, NUM_ANCHORS, 1)]
        self._anchors = blazeface_anchors()
        self.min_face_px = int(min_face_px)
        self.score_threshold = float(score_threshold)
        self.max_face_frac = float(max_face_frac)
        self.zoom_tiles = bool(zoom_tiles)
        self.zoom_score_threshold = float(zoom_score_threshold)

    def _input(self, gray: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """(1x128x128x3 float32 in [-1, 1], letterbox side, x pad, y pad): the frame centred on a square."""
        cv2 = self._cv2
        h, w = gray.shape
        side = max(h, w)
        pad_x, pad_y = (side - w) // 2, (side - h) // 2
        square = np.zeros((side, side), np.uint8)
        square[pad_y:pad_y + h, pad_x:pad_x + w] = gray
        small = cv2.resize(square, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32) / 127.5 - 1.0
        return np.repeat(x[None, :, :, None], 3, axis=3), float(side), float(pad_x), float(pad_y)

    def detect_faces(self, gray: np.ndarray) -> list[FaceDetection]:
        """Every face with its keypoints, in frame pixels, the largest first; [] when there is none.

        When the whole frame shows no face and ``zoom_tiles`` is on, the frame is searched again in
        ``ZOOM_TILES`` overlapping square tiles (``ZOOM_TILE_FRAC`` of its shorter side): the short-range
        model sees each at 1/ZOOM_TILE_FRAC the scale, so a face too small for it in the whole frame
        can be found (the extra passes cost only frames without a face found).
        """
        from edge.features.face import _as_gray_u8  # noqa: PLC0415

        gray = _as_gray_u8(gray)
        if min(gray.shape) < 8:
            return []
        faces = self._detect_once(gray)
        if faces or not self.zoom_tiles:
            return faces
        return self._detect_in_tiles(gray)

    def _detect_in_tiles(self, gray: np.ndarray) -> list[FaceDetection]:
        h, w = gray.shape
        tile = int(round(ZOOM_TILE_FRAC * min(h, w)))
        if tile < 8:
            return []
        columns, rows = ZOOM_TILES if w >= h else ZOOM_TILES[::-1]  # a portrait frame: 2 columns, 3 rows
        found: list[FaceDetection] = []
        for y0 in np.linspace(0, h - tile, rows).round().astype(int):
            for x0 in np.linspace(0, w - tile, columns).round().astype(int):
                for f in self._detect_once(gray[y0:y0 + tile, x0:x0 + tile]):
                    if f.score < self.zoom_score_threshold:
                        continue
                    bx, by, bw, bh = f.box
                    found.append(FaceDetection((bx + x0, by + y0, bw, bh), f.keypoints + [x0, y0], f.score))
        kept: list[FaceDetection] = []  # one face seen in two overlapping tiles: keep its best-scored sighting
        for f in sorted(found, key=lambda f: -f.score):
            if not kept or box_iou(np.array([_corners(k.box) for k in kept]), _corners(f.box)).max() <= NMS_IOU:
                kept.append(f)
        kept.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return kept

    def _detect_once(self, gray: np.ndarray) -> list[FaceDetection]:
        """One pass of the model over the whole of ``gray`` (grey uint8)."""
        x, side, pad_x, pad_y = self._input(gray)
        self._interpreter.set_tensor(self._input_index, x)
        self._interpreter.invoke()
        reg = self._interpreter.get_tensor(self._regressors_index)[0]
        logits = self._interpreter.get_tensor(self._scores_index)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        reg, anchors, scores = reg[keep] / INPUT_PX, self._anchors[keep], scores[keep]
        centre = reg[:, 0:2] + anchors
        half = reg[:, 2:4] / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        faces = []
        offset = np.array([pad_x, pad_y], np.float32)
        max_side = self.max_face_frac * min(gray.shape)
        for box, kps, score in weighted_nms(boxes, keypoints, scores):
            x0, y0 = box[:2] * side - offset
            x1, y1 = box[2:] * side - offset
            if min(x1 - x0, y1 - y0) < self.min_face_px or max(x1 - x0, y1 - y0) > max_side:
                continue
            faces.append(FaceDetection((float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                                       (kps * side - offset).astype(np.float64), score))
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces as (x, y, w, h) boxes in pixels, the largest first; [] when there is none."""
        return [f.int_box for f in self.detect_faces(gray)]


def _corners(box: tuple[float, float, float, float]) -> np.ndarray:
    """An (x, y, w, h) box as x0, y0, x1, y1."""
    x, y, w, h = box
    return np.array([x, y, x + w, y + h])

