"""Faces in camera frames: find them, cut them the way FER2013 is cut, and say how usable they are.

The face model was trained on FER2013, whose images are already 48x48 grayscale face crops
(forehead to chin, a little of the cheeks and hair). ``face_input`` is the one function that turns
a grayscale frame plus a face box into the model's input, used by training (with the full-image
box, since a FER image *is* the crop), by evaluation and by the daemon, so the model sees the same
kind of input in all three.

Detectors: BlazeFace (``edge.features.face_detect``, the default: ``face.detector``) finds 91 % of
held-out FER faces framed as a camera sees them, in ~1 ms; its box is mapped to the FER framing
by ``blazeface_crop``. The older one, kept as ``face.detector = "haar"`` and as ``FaceDetector``
here: OpenCV's Haar cascade ``haarcascade_frontalface_default.xml``, shipped with
opencv-python-headless 4.x (``cv2.data.haarcascades``); it finds 71 % of those faces. Its limits: frontal,
upright faces only (about +-20 degrees of yaw/roll), it misses faces in strong side light or
dim light, and it fires on face-like texture now and then (the quality score and the
daemon's smoothing absorb single false hits). OpenCV 5.x dropped ``CascadeClassifier`` and
bundles no cascades, hence the ``<5`` pin in pyproject.toml.

numpy only at import; cv2 is imported when a function that needs it is first called.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import MissingExtraError, ModelIntegrityError

log = logging.getLogger(__name__)

# FER2013 classes in the model's output order (alphabetical, as in the image-folder layout).
FER_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

FACE_INPUT_SIZE = 48  # px, FER2013 crop side
CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Growing the Haar box by this fraction of its side on each side (then squaring it) cuts the FER2013
# framing. Measured on 1,437 held-out validation faces pasted into 320x240 frames
# (edge.tools.face_framing): the Haar box is nearly the whole FER crop (pasted side / box side:
# median 1.05, i.e. a margin of 0.025; centre offsets < 0.01 of the side), and at this margin the
# detector path's accuracy equals the direct crop's (66.3 % vs 66.2 % on the faces found), where
# the earlier 0.12 cut looser than FER and lost 4 points (61.9 %).
FACE_MARGIN_FRAC = 0.025

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


def _cv2() -> Any:
    try:
        import cv2  # lazily: the daemon only pays for it when a camera is configured
    except ImportError:  # OpenCV is the optional [camera] extra
        raise MissingExtraError("OpenCV (cv2)", "camera", what="the face modality") from None
    return cv2


def _as_gray_u8(image: np.ndarray) -> np.ndarray:
    """A grayscale uint8 view of a frame (BGR frames are converted; floats in [0,1] are scaled)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        image = _cv2().cvtColor(image, _cv2().COLOR_BGR2GRAY)
    if image.ndim != 2:
        raise ValueError(f"face image: expected a 2-D grayscale frame, got shape {image.shape}")
    if image.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(image.dtype, np.floating) and image.max(initial=0) <= 1.0 else 1.0
        image = np.clip(np.round(image.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    return image


class FaceDetector:
    """Frontal faces in a grayscale frame with OpenCV's Haar cascade; boxes largest first.

    ``min_face_px`` is the smallest face side searched for: below about 40 px a face carries
    less detail than the 48 px the model was trained on.
    """

    def __init__(self, cascade_path: str | Path | None = None, min_face_px: int = 40,
                 scale_factor: float = 1.1, min_neighbors: int = 5):
        cv2 = _cv2()
        if cascade_path is None:
            haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if not haar_dir:
                raise ModelIntegrityError(
                    f"face detector: this OpenCV ({cv2.__version__}) bundles no Haar cascades; "
                    "install opencv-python-headless>=4.8,<5")
            cascade_path = Path(haar_dir) / CASCADE_FILE
        self.cascade_path = Path(cascade_path)
        if not self.cascade_path.is_file():
            raise ModelIntegrityError(f"face detector: cascade {self.cascade_path} not found")
        if not hasattr(cv2, "CascadeClassifier"):
            raise ModelIntegrityError(
                f"face detector: OpenCV {cv2.__version__} has no CascadeClassifier; install opencv-python-headless<5")
        self._cascade = cv2.CascadeClassifier(str(self.cascade_path))
        if self._cascade.empty():
            raise ModelIntegrityError(f"face detector: cascade {self.cascade_path} could not be loaded")
        self.min_face_px = int(min_face_px)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces as (x, y, w, h) boxes in pixels, the largest first; [] when there is none."""
        gray = _as_gray_u8(gray)
        if min(gray.shape) < self.min_face_px:
            return []
        found = self._cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_face_px, self.min_face_px))
        boxes = [tuple(int(v) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes  # type: ignore[return-value]


def face_crop_box(shape: tuple[int, ...], box: Box, margin_frac: float = FACE_MARGIN_FRAC) -> Box:
    """The square region cut for the model: ``box`` grown by ``margin_frac`` per side, clipped to the frame.

    A box that already covers the whole frame (a FER2013 image) is left as the whole frame.
    """
    height, width = int(shape[0]), int(shape[1])
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"face box {box}: width and height must be positive")
    side = max(w, h) * (1.0 + 2.0 * margin_frac)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = max(0, int(round(cx - side / 2.0)))
    y0 = max(0, int(round(cy - side / 2.0)))
    x1 = min(width, int(round(cx + side / 2.0)))
    y1 = min(height, int(round(cy + side / 2.0)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {box}: outside the {width}x{height} frame")
    return x0, y0, x1 - x0, y1 - y0


def face_input(gray: np.ndarray, box: Box, margin_frac: float = FACE_MARGIN_FRAC) -> np.ndarray:
    """The model's input for one face: (48, 48, 1) float32 in [0, 1].

    Crop = ``face_crop_box`` (square, margin, clipped), resized with INTER_AREA (the right
    filter for shrinking; FER2013 crops were shrunk too), scaled by 1/255. ``margin_frac`` 0 cuts
    ``box`` as it is (a box that is already the FER framing, e.g. ``blazeface_crop``'s).
    """
    gray = _as_gray_u8(gray)
    x, y, w, h = face_crop_box(gray.shape, box, margin_frac)
    crop = gray[y:y + h, x:x + w]
    if crop.shape != (FACE_INPUT_SIZE, FACE_INPUT_SIZE):
        crop = _cv2().resize(crop, (FACE_INPUT_SIZE, FACE_INPUT_SIZE), interpolation=_cv2().INTER_AREA)
    return (crop.astype(np.float32) / 255.0)[:, :, None]


# BlazeFace box -> FER framing, fitted with edge.tools.fit_face_crop on the face model's 1,346
# deduplicated validation faces pasted into 320x240 frames (framed_face, seed 0): the pasted FER
# square is median 1.17 box widths wide (p10-p90 0.94-1.50: FER's own framing varies) and its centre
# 0.10 box widths above the box's. Scored by the shipped int8 face model on the faces found (94.3 %
# at score 0.5), a grid of side 1.05-1.29 x shift -0.16..-0.04 is flat within noise (best cells
# 65.6-66.0 %); side 1.16, shift -0.05 (the crop's centre 0.05 box widths above the box's) gives
# 66.6 %, the FER crop itself 65.1 % on the same faces. Re-checked at the shipped score threshold
# 0.6 (90.6 % found): best cell side 1.17, shift -0.06; 1.16 / -0.05 gives 66.5 % (direct 65.5 %).
# Cutting by the eyes instead (2.5-2.9 inter-ocular distances) scores lower (best 64.7 / 65.7 %),
# and rotating the eyes level loses 0.3-0.8 points (FER faces are not levelled either), so neither
# ships.
BLAZEFACE_CROP_SIDE_PER_BOX = 1.16
BLAZEFACE_CROP_DY_PER_BOX = -0.05


def blazeface_crop(detection: Any, side_per_unit: float = BLAZEFACE_CROP_SIDE_PER_BOX,
                   dy_per_unit: float = BLAZEFACE_CROP_DY_PER_BOX, by_eyes: bool = False) -> Box:
    """The square FER-framed crop (x, y, side, side) for a BlazeFace ``FaceDetection``, unclipped.

    The unit is the box width (``by_eyes`` False: centred on the box centre) or the distance
    between the eyes (``by_eyes``: centred on the midpoint of the eyes); the crop's side is
    ``side_per_unit`` units and its centre ``dy_per_unit`` units below that point.
    """
    if by_eyes:
        right_eye, left_eye = detection.keypoints[0], detection.keypoints[1]
        unit = float(np.hypot(*(left_eye - right_eye)))
        cx, cy = (float(v) for v in (right_eye + left_eye) / 2.0)
    else:
        bx, by, bw, bh = detection.box
        unit, cx, cy = float(bw), bx + bw / 2.0, by + bh / 2.0
    side = max(1.0, side_per_unit * unit)
    cy += dy_per_unit * unit
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    return x0, y0, int(round(side)), int(round(side))


# Quality anchors, measured on FER2013 train crops (pixel units 0..1): the 48x48 input's Laplacian
# variance has 5th/50th percentiles 0.012/0.033; blurred with a 1.5 px Gaussian it drops to ~0.0007.
# Their intensity std has a 5th percentile of 0.13.
_SIZE_FULL_PX = 96.0  # face side at and above which size is not a concern
_SHARP_HALF = 0.003  # Laplacian variance of the model input at which the sharpness score is 0.5


def face_quality(gray: np.ndarray, box: Box, margin_frac: float = FACE_MARGIN_FRAC,
                 model_input: np.ndarray | None = None) -> float:
    """How usable a face is for the model, in [0, 1]: the product of size, sharpness and exposure scores.

    - size: 0 below 24 px, 1 from 96 px up (the model sees 48 px; smaller faces are upsampled).
    - sharpness: Laplacian variance of the model's own 48x48 input, v / (v + 0.003).
    - exposure: mean brightness away from black/white clipping, and enough contrast (std).

    ``model_input``: ``face_input(gray, box, margin_frac)`` when the caller has already cut it.
    """
    gray_u8 = _as_gray_u8(gray)
    _, _, w, h = (int(v) for v in box)
    size_score = float(np.clip((min(w, h) - 24.0) / (_SIZE_FULL_PX - 24.0), 0.0, 1.0))
    patch = (face_input(gray_u8, box, margin_frac) if model_input is None else model_input)[:, :, 0]
    lap_var = float(_cv2().Laplacian(patch, _cv2().CV_32F).var())
    sharp_score = lap_var / (lap_var + _SHARP_HALF)
    mean, std = float(patch.mean()), float(patch.std())
    brightness_score = float(np.clip(1.0 - abs(mean - 0.5) / 0.4, 0.0, 1.0) ** 0.5)
    contrast_score = float(np.clip(std / 0.12, 0.0, 1.0))
    return float(np.clip(size_score * sharp_score * brightness_score * contrast_score, 0.0, 1.0))
