"""BlazeFace, the daemon's face detector: the real interpreter on the shipped model file, its
post-processing, the crop it leads to, and what happens when its file is wrong.

``fixtures/face_frame.png`` is a 320x240 grey frame holding Grace Hopper's 1984 U.S. Navy portrait
(public domain; the same photograph matplotlib ships as sample data), shrunk to 192x225 px.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from conftest import REPO_ROOT, run_cli  # noqa: E402
from edge.config import load_config, replace_dotted  # noqa: E402
from edge.errors import ConfigError, ModelIntegrityError  # noqa: E402
from edge.features import face as face_mod  # noqa: E402
from edge.features.face_detect import (  # noqa: E402
    KEYPOINT_NAMES, BlazeFaceDetector, blazeface_anchors, weighted_nms)
from edge.models import models_dir  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "face_frame.png"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    gray = cv2.imread(str(FIXTURE), cv2.IMREAD_GRAYSCALE)
    assert gray is not None and gray.shape == (240, 320)
    return gray


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


def _inside(point, box, slack: float = 0.0) -> bool:
    x, y, w, h = box
    return x - slack * w <= point[0] <= x + w * (1 + slack) and y - slack * h <= point[1] <= y + h * (1 + slack)


def test_the_shipped_detector_finds_the_face_with_its_landmarks(detector, frame):
    faces = detector.detect_faces(frame)
    assert len(faces) == 1
    f = faces[0]
    x, y, w, h = f.box
    # the portrait's face: 153-225 px across, 71-143 px down (measured by eye on the fixture: ~60-85 px)
    assert 60 <= w <= 90 and abs(w - h) < 0.1 * w
    assert 175 <= x + w / 2 <= 200 and 95 <= y + h / 2 <= 120
    assert f.score > 0.8 and f.keypoints.shape == (6, 2) and len(KEYPOINT_NAMES) == 6
    for name in ("right_eye", "left_eye", "nose_tip", "mouth_centre"):
        assert _inside(f.keypoint(name), f.box), name
    for name in ("right_ear_tragion", "left_ear_tragion"):  # the ears are at the box's sides
        assert _inside(f.keypoint(name), f.box, slack=0.15), name
    (rx, ry), (lx, ly) = f.keypoint("right_eye"), f.keypoint("left_eye")
    mouth_y = f.keypoint("mouth_centre")[1]
    assert rx < lx  # the subject's right eye is on the image's left
    assert max(ry, ly) < f.keypoint("nose_tip")[1] < mouth_y
    assert detector.detect(frame) == [f.int_box]


def test_a_letterboxed_frame_gives_the_same_face_in_its_own_pixels(detector, frame):
    """The frame is centred on a square before it is shrunk: a face moved into a wider or taller frame moves by the offset."""
    # (the face shrinks with the square: in a much wider frame it is too small to be placed well)
    wide = np.full((240, 400), 96, np.uint8)
    wide[:, 80:] = frame
    tall = np.full((320, 320), 96, np.uint8)
    tall[40:280] = frame
    (ref,), (a,), (b,) = detector.detect_faces(frame), detector.detect_faces(wide), detector.detect_faces(tall)
    side = ref.box[2]
    assert np.allclose(np.array(a.box[:2]) - ref.box[:2], (80, 0), atol=0.1 * side)
    assert np.allclose(np.array(b.box[:2]) - ref.box[:2], (0, 40), atol=0.1 * side)
    assert np.allclose(a.keypoints - (80, 0), ref.keypoints, atol=0.1 * side)


def test_no_face_in_frames_without_one(detector):
    from edge.tools.face_framing import background

    rng = np.random.default_rng(0)
    assert detector.detect(np.full((240, 320), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (240, 320), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((6, 6), np.uint8)) == []
    # the textured backgrounds faces are framed on (false hits on 0.1 % of 1,000 such frames)
    hits = sum(bool(detector.detect(background(rng, float(rng.uniform(40, 215))))) for _ in range(40))
    assert hits == 0


def test_anchors_are_mediapipes_short_range_grid():
    a = blazeface_anchors()
    assert a.shape == (896, 2)
    assert np.allclose(a[0], a[1]) and np.allclose(a[0], (1 / 32, 1 / 32))  # 2 anchors a stride-8 cell
    assert np.allclose(a[511], (31 / 32, 31 / 32)) and np.allclose(a[512], (1 / 16, 1 / 16))
    assert np.allclose(a[-6:], (15 / 16, 15 / 16))  # 6 anchors a stride-16 cell


def test_weighted_nms_averages_overlapping_candidates_and_keeps_separate_faces():
    boxes = np.array([[0.10, 0.10, 0.30, 0.30], [0.12, 0.10, 0.32, 0.30], [0.60, 0.60, 0.80, 0.80]], np.float32)
    keypoints = np.zeros((3, 6, 2), np.float32)
    keypoints[1] += 0.02
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    kept = weighted_nms(boxes, keypoints, scores)
    assert [round(s, 2) for _, _, s in kept] == [0.9, 0.7]
    merged, merged_kp, _ = kept[0]
    assert merged[0] == pytest.approx(0.10 * 0.6 + 0.12 * 0.4)  # score-weighted: 0.9 / 1.5 and 0.6 / 1.5
    assert merged_kp[0, 0] == pytest.approx(0.02 * 0.4)
    assert np.allclose(kept[1][0], boxes[2])


def test_the_crop_is_the_fer_framing_of_the_box(detector, frame):
    (f,) = detector.detect_faces(frame)
    x, y, w, h = face_mod.blazeface_crop(f)
    bx, by, bw, bh = f.box
    assert w == h and w == pytest.approx(face_mod.BLAZEFACE_CROP_SIDE_PER_BOX * bw, abs=1)
    assert x + w / 2 == pytest.approx(bx + bw / 2, abs=1)
    assert y + h / 2 == pytest.approx(by + bh / 2 + face_mod.BLAZEFACE_CROP_DY_PER_BOX * bw, abs=1)
    patch = face_mod.face_input(frame, (x, y, w, h), margin_frac=0.0)
    assert patch.shape == (48, 48, 1) and 0 <= patch.min() < patch.max() <= 1


@pytest.mark.parametrize("detector_name", ["blazeface", "haar"])
def test_the_face_estimator_scores_the_fixture_with_either_detector(frame, detector_name):
    from edge.daemon import load_estimators

    config = replace_dotted(replace_dotted(load_config(None), "daemon.modalities", ("face",)), "face.detector", detector_name)
    estimators, reasons = load_estimators(config)
    assert not reasons, reasons
    est = estimators["face"]
    assert est.detector_name == detector_name
    probs, quality = est.score_frame(frame)
    assert probs.shape == (7,) and probs.sum() == pytest.approx(1.0, abs=0.02)
    assert 0.2 < quality <= 1.0
    big = cv2.resize(frame, (640, 480), interpolation=cv2.INTER_CUBIC)  # detected on a 320-px copy, cut at full size
    probs_big, _ = est.score_frame(big)
    assert np.argmax(probs_big) == np.argmax(probs)
    assert est.score_frame(np.full((240, 320), 128, np.uint8)) is None


def test_an_unknown_detector_is_refused_in_one_line_naming_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[face]\ndetector = "dlib"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith("config: face.detector: must be one of blazeface, haar")
    assert "'dlib'" in message
    assert load_config(None).face.detector == "blazeface"


def _models_copy(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(models_dir(), models, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return models


def test_a_wrong_or_corrupt_detector_file_is_one_readable_line(tmp_path, monkeypatch):
    models = _models_copy(tmp_path)
    monkeypatch.setenv("EMOTION_EDGE_MODELS_DIR", str(models))
    data = bytearray((models / "face_detector.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / "face_detector.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="face_detector.*does not match manifest") as info:
        BlazeFaceDetector()
    assert "\n" not in str(info.value)
    # the right bytes of the wrong model: a TFLite file that is not BlazeFace
    with pytest.raises(ModelIntegrityError, match="not BlazeFace short range") as info:
        BlazeFaceDetector(model_path=models / "face.tflite")
    assert "\n" not in str(info.value)
    (tmp_path / "junk.tflite").write_text("not a model\n")
    with pytest.raises(ModelIntegrityError, match="not a TFLite model") as info:
        BlazeFaceDetector(model_path=tmp_path / "junk.tflite")
    assert "\n" not in str(info.value)
    (models / "face_detector.tflite").unlink()
    with pytest.raises(ModelIntegrityError, match="not found"):
        BlazeFaceDetector()


def test_a_corrupt_detector_costs_the_face_modality_and_nothing_else(tmp_path, mqtt_broker):
    """The daemon refuses the detector in one line, runs on without faces and says why in each state."""
    from conftest import load_test_module

    models = _models_copy(tmp_path)
    data = bytearray((models / "face_detector.tflite").read_bytes())
    data[-100] ^= 0x01
    (models / "face_detector.tflite").write_bytes(bytes(data))
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240), False)
    frame = cv2.imread(str(FIXTURE), cv2.IMREAD_GRAYSCALE)
    for _ in range(20):
        writer.write(frame)
    writer.release()
    proc, states = load_test_module("test_daemon").run_collecting(mqtt_broker, "baddet", lambda: run_cli(
        "run", "--source", f"camera:{clip}", "--source", "simulate:duration=40,seed=1", "--speed", "max",
        "--broker", mqtt_broker.url, "--device-id", "baddet", "--state-dir", str(tmp_path / "state"), timeout=120,
        env={"EMOTION_EDGE_MODELS_DIR": str(models)}))
    assert "Traceback" not in proc.stderr, proc.stderr
    named = [line for line in proc.stderr.splitlines() if "face_detector" in line]
    assert len(named) == 1 and "does not match manifest" in named[0], proc.stderr
    assert states and all("eeg" in s["modalities"] and "face" not in s["modalities"] for s in states)
    assert "face_detector" in states[-1]["missing_reasons"]["face"], states[-1]


def test_the_detector_model_ships_documented_with_its_licence():
    manifest = (models_dir() / "face_detector.json").read_text()
    card = (REPO_ROOT / "models" / "face_detector.md").read_text()
    assert "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8" in manifest
    assert "Apache License 2.0" in card and "MediaPipe Authors" in card and "not trained by this project" in card.lower()
    licence = models_dir() / "face_detector.LICENSE.txt"  # installed with the models, as the licence asks
    assert "Apache License" in licence.read_text()


def test_a_fer_cut_face_pasted_into_frames_is_cut_back_as_fer_framed_it(detector, frame):
    """The fixture's face cut as FER cuts faces (the Haar box, fitted to FER), pasted as evaluate states does:
    the BlazeFace crop lands on the pasted square."""
    from edge.tools.face_framing import framed_face

    haar_box = face_mod.FaceDetector(min_face_px=48).detect(frame)[0]
    face = np.round(face_mod.face_input(frame, haar_box)[:, :, 0] * 255).astype(np.uint8)
    overlaps = []
    for seed in range(8):
        framed, (x, y, side) = framed_face(face, np.random.default_rng(seed))
        found = detector.detect_faces(framed)
        assert found, seed
        cx, cy, cw, ch = face_mod.blazeface_crop(found[0])
        ix = max(0, min(cx + cw, x + side) - max(cx, x))
        iy = max(0, min(cy + ch, y + side) - max(cy, y))
        overlaps.append(ix * iy / (cw * ch + side * side - ix * iy))
    assert min(overlaps) >= 0.7 and np.mean(overlaps) >= 0.78, overlaps  # measured: 0.81-0.84


def test_a_small_face_missed_by_the_whole_frame_is_found_in_the_zoomed_tiles(frame):
    """The fixture's head shrunk to 60-80 px on a textured background: too small for one short-range pass."""
    from edge.tools.face_framing import background

    whole = BlazeFaceDetector(zoom_tiles=False, min_face_px=16)
    tiled = BlazeFaceDetector(min_face_px=16)
    x, y, w, h = (int(v) for v in whole.detect_faces(frame)[0].box)
    side = int(1.6 * w)
    head = frame[y + h // 2 - side // 2:y + h // 2 + side // 2, x + w // 2 - side // 2:x + w // 2 + side // 2]
    for px in (60, 70, 80):
        scene = background(np.random.default_rng(1), float(head.mean()))
        scene[150:150 + px, 20:20 + px] = cv2.resize(head, (px, px), interpolation=cv2.INTER_AREA)
        assert whole.detect(scene) == [], px
        found = tiled.detect_faces(scene)
        assert len(found) == 1, px  # one face, though up to three overlapping tiles hold it
        bx, by, bw, bh = found[0].box  # in the frame's own pixels, not a tile's
        assert 20 <= bx + bw / 2 <= 20 + px and 150 <= by + bh / 2 <= 150 + px, (px, found[0].box)
        assert all(_inside(found[0].keypoint(k), found[0].box) for k in ("right_eye", "left_eye", "nose_tip"))
    # a portrait frame (240 wide, 320 tall): the tiles run 2 across and 3 down, and find a face near its bottom
    portrait = background(np.random.default_rng(2), float(head.mean()), frame_px=(240, 320))
    portrait[230:300, 150:220] = cv2.resize(head, (70, 70), interpolation=cv2.INTER_AREA)
    assert whole.detect(portrait) == []
    found = tiled.detect_faces(portrait)
    assert len(found) == 1
    bx, by, bw, bh = found[0].box
    assert 150 <= bx + bw / 2 <= 220 and 230 <= by + bh / 2 <= 300, found[0].box
