"""FER2013 faces as a camera sees them: a tight 48x48 crop pasted into a larger frame, seeded.

FER2013 images are already tight, centred face crops; a camera frame shows a face with its
surroundings, at some size and place, on some background. To score the daemon's own detector and
crop path on held-out faces (issue 18 item 2), each face is pasted onto a ``FRAME_PX`` (320x240)
frame:

- side: uniform in ``FACE_SIDE_RANGE_PX`` (80-160 px, a head at roughly 0.5-1.5 m from a
  typical 60-degree camera), resized with INTER_CUBIC (the crop is enlarged);
- position: uniform over the places where the whole face fits;
- background: a smooth random-gradient plus low-frequency texture plus sensor noise, its mean
  drawn around the face's own mean grey (+-40 grey levels), so the face is neither pasted on a
  flat card nor lit wholly differently from its surroundings.

Everything comes from one ``numpy.random.Generator``; a given seed gives the same frames.
Returns the frame and the pasted square (x, y, side): the box a perfect detector-and-crop path
would cut (the FER framing).
"""

from __future__ import annotations

from typing import Any

import numpy as np

FRAME_PX = (320, 240)  # (width, height): a small camera frame, the daemon's detect_width_px
FACE_SIDE_RANGE_PX = (80, 160)  # side of the pasted 48-px face, px
BACKGROUND_MEAN_SPREAD = 40.0  # grey levels: background mean = face mean +- this (uniform)
NOISE_STD = 3.0  # grey levels of per-pixel sensor noise on the background


def _cv2() -> Any:
    import cv2  # tools only; opencv is the [camera] extra

    return cv2


def framing_description() -> str:
    """The framing in a few words, for reports."""
    (w, h), (lo, hi) = FRAME_PX, FACE_SIDE_RANGE_PX
    return (f"each face pasted into a {w}x{h} frame at a random size of {lo}-{hi} px, a random place and a "
            f"random-texture background")


def background(rng: np.random.Generator, mean_grey: float, frame_px: tuple[int, int] = FRAME_PX) -> np.ndarray:
    """A uint8 (height, width) background: gradient + blurred texture + noise around ``mean_grey``."""
    cv2 = _cv2()
    width, height = frame_px
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gx, gy = rng.uniform(-40.0, 40.0, 2)  # grey levels across the frame
    grad = gx * (xx / width - 0.5) + gy * (yy / height - 0.5)
    coarse = rng.normal(0.0, 25.0, (max(2, height // 30), max(2, width // 30))).astype(np.float32)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    base = mean_grey + rng.uniform(-BACKGROUND_MEAN_SPREAD, BACKGROUND_MEAN_SPREAD)
    out = base + grad + texture + rng.normal(0.0, NOISE_STD, (height, width))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def framed_face(face: np.ndarray, rng: np.random.Generator, frame_px: tuple[int, int] = FRAME_PX,
                side_range_px: tuple[int, int] = FACE_SIDE_RANGE_PX) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(frame uint8 (h, w), (x, y, side) of the pasted face) for one grey FER2013 face (48x48 uint8)."""
    cv2 = _cv2()
    face = np.asarray(face)
    if face.ndim != 2:
        raise ValueError(f"framed_face: expected a 2-D grey face, got shape {face.shape}")
    width, height = frame_px
    lo, hi = side_range_px
    if not 0 < lo <= hi <= min(width, height):
        raise ValueError(f"framed_face: face side range {side_range_px} does not fit a {width}x{height} frame")
    side = int(rng.integers(lo, hi + 1))
    x = int(rng.integers(0, width - side + 1))
    y = int(rng.integers(0, height - side + 1))
    frame = background(rng, float(face.mean()), frame_px)
    frame[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return frame, (x, y, side)
