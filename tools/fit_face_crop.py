"""Fit the BlazeFace-box -> FER-crop mapping on the face model's held-out validation faces.

Each validation face (``evaluate_states.choose_faces(root, 'val', None)``: deduplicated, seed-0
order) is pasted into a 320x240 frame (``face_framing.framed_face``, one generator seeded 0, as
``evaluate states`` frames them) and BlazeFace runs on the frame. The pasted square is the crop a
perfect path would cut, so the geometry of the detector's box and keypoints against it gives the
mapping; the candidates near it are then scored by the shipped face model (int8, as the daemon
runs it) on the faces found, against the model on the FER crop itself.

    python -m edge.tools.fit_face_crop /work/shared/data/fer2013/train

Prints the geometry and one line per candidate; the chosen constants live in
``edge/features/face.py`` (``BLAZEFACE_CROP_*``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge.features.face import Box


def level_eyes(gray: np.ndarray, detection: Any, crop: Box) -> tuple[np.ndarray, Box]:
    """(frame rotated about the crop's centre so the detection's eyes are level, the same crop)."""
    import cv2  # noqa: PLC0415

    from edge.features.face import _as_gray_u8  # noqa: PLC0415

    right_eye, left_eye = detection.keypoints[0], detection.keypoints[1]
    angle_deg = float(np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])))
    x, y, w, h = crop
    matrix = cv2.getRotationMatrix2D((x + w / 2.0, y + h / 2.0), angle_deg, 1.0)
    rotated = cv2.warpAffine(_as_gray_u8(gray), matrix, (gray.shape[1], gray.shape[0]),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return rotated, crop


def main(argv: list[str] | None = None) -> int:
    from edge.features import face as face_mod  # noqa: PLC0415
    from edge.features.face_detect import BlazeFaceDetector  # noqa: PLC0415
    from edge.models import TFLiteModel  # noqa: PLC0415
    from edge.tools.evaluate_states import choose_faces, read_face  # noqa: PLC0415
    from edge.tools.face_framing import framed_face  # noqa: PLC0415

    args = argv if argv is not None else sys.argv[1:]
    root = Path(args[0])
    split = args[1] if len(args) > 1 else "val"
    paths, y, which, _ = choose_faces(root, split, None)
    print(f"{len(paths)} faces: {which}")
    det = BlazeFaceDetector(min_face_px=16)
    model = TFLiteModel("face")
    rng = np.random.default_rng(0)
    frames, truth, dets, direct = [], [], [], []
    for p in paths:
        face = read_face(p)
        frame, square = framed_face(face, rng)
        frames.append(frame)
        truth.append(square)
        found = det.detect_faces(frame)
        dets.append(found[0] if found else None)
        direct.append(int(np.argmax(model.predict(face_mod.face_input(face, (0, 0, 48, 48))))))
    direct = np.array(direct)
    found = np.array([d is not None for d in dets])
    print(f"found {found.mean():.4f}; direct accuracy {np.mean(direct == y):.4f} (all), "
          f"{np.mean(direct[found] == y[found]):.4f} (found)")

    geo = []
    for d, (x, y0, side) in zip(dets, truth):
        if d is None:
            continue
        bx, by, bw, bh = d.box
        eyes = (d.keypoints[0] + d.keypoints[1]) / 2
        iod = float(np.hypot(*(d.keypoints[1] - d.keypoints[0])))
        cx, cy = x + side / 2, y0 + side / 2
        geo.append((side / bw, (cx - bx - bw / 2) / bw, (cy - by - bh / 2) / bw, side / iod,
                    (cx - eyes[0]) / iod, (cy - eyes[1]) / iod))
    geo = np.array(geo)
    names = ("side/box", "dx/box", "dy/box", "side/iod", "dx/iod", "dy/iod")
    for i, n in enumerate(names):
        q = np.percentile(geo[:, i], [10, 50, 90])
        print(f"{n:9s} p10 {q[0]:+.3f} median {q[1]:+.3f} p90 {q[2]:+.3f} (sd {geo[:, i].std():.3f})")

    def score(k: float, dy: float, by_eyes: bool, roll: bool) -> float:
        right = 0
        for frame, d, label in zip(frames, dets, y):
            if d is None:
                continue
            crop = face_mod.blazeface_crop(d, k, dy, by_eyes)
            gray = frame
            if roll:
                gray, crop = level_eyes(frame, d, crop)
            probs = model.predict(face_mod.face_input(gray, crop, margin_frac=0.0))
            right += int(np.argmax(probs)) == label
        return right / int(found.sum())

    med = np.median(geo, axis=0)
    grid = []
    for by_eyes, k0, dy0, step_k, step_dy in ((False, med[0], med[2], 0.04, 0.02), (True, med[3], med[5], 0.1, 0.05)):
        for i in range(-3, 4):
            for j in range(-3, 4):
                grid.append((by_eyes, round(k0 + i * step_k, 3), round(dy0 + j * step_dy, 3)))
    acc = {g: score(g[2 - 1], g[2], g[0], False) for g in grid}
    for by_eyes in (False, True):
        cells = sorted(((a, g) for g, a in acc.items() if g[0] == by_eyes), reverse=True)
        print(("eyes" if by_eyes else "box") + ": best " + "; ".join(f"k {g[1]:.3f} dy {g[2]:+.3f} {a:.4f}" for a, g in cells[:6]))
        ks = sorted({g[1] for g in acc if g[0] == by_eyes})
        dys = sorted({g[2] for g in acc if g[0] == by_eyes})
        print("   dy: " + " ".join(f"{d:+.3f}" for d in dys))
        for k in ks:
            print(f"k {k:.3f} " + " ".join(f"{acc[(by_eyes, k, d)]:.4f}" for d in dys))
    for extra in args[2:]:
        by_eyes, k, dy = extra.split(",")
        for roll in (False, True):
            a = score(float(k), float(dy), by_eyes == "eyes", roll)
            print(f"{extra} roll {roll}: accuracy on found {a:.4f} (all, misses wrong: {a * found.mean():.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
