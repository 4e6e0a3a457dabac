"""The face modality: detector, FER2013-style crops, the FER2013 loader/split, and the shipped model."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from conftest import run_cli  # noqa: E402
from edge.errors import DatasetError, ModelIntegrityError  # noqa: E402
from edge.features.face import FER_LABELS, FaceDetector, face_crop_box, face_input, face_quality  # noqa: E402
from edge.models import TFLiteModel  # noqa: E402
from edge.tools.train_face import list_fer2013, load_fer2013, read_faces, stratified_split  # noqa: E402

PER_CLASS = 3


def _write_fer_fixture(root: Path, per_class: int = PER_CLASS) -> Path:
    """A tiny FER2013 image folder: ``root/<class>/*.jpg``, grayscale 48x48 (one odd-sized image)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:48, 0:48]
    for c, label in enumerate(FER_LABELS):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            img = (40 + 3 * c * xx + 2 * i * yy + rng.integers(0, 30, (48, 48))).clip(0, 255).astype(np.uint8)
            if c == 0 and i == 0:
                img = cv2.resize(img, (60, 50))  # not a 48x48 crop: face_input must resize it
            assert cv2.imwrite(str(root / label / f"{i:05d}.jpg"), img)
    return root


@pytest.fixture
def fer_fixture(tmp_path: Path) -> Path:
    return _write_fer_fixture(tmp_path / "train")


def _sample_face_image() -> Path | None:
    """A photograph with one frontal face that ships inside an installed package (matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return path if path.exists() else None


# ------------------------------------------------------------------ loader, split, crops

def test_fer2013_loader_reads_every_image_with_its_class(fer_fixture: Path) -> None:
    paths, labels = list_fer2013(fer_fixture)
    assert len(paths) == 7 * PER_CLASS
    assert np.array_equal(np.bincount(labels), [PER_CLASS] * 7)
    assert all(p.parent.name == FER_LABELS[y] for p, y in zip(paths, labels))
    x, y, _ = load_fer2013(fer_fixture)
    assert x.shape == (7 * PER_CLASS, 48, 48, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # a 48x48 image is the crop itself: the model input is its pixels / 255, exactly
    raw = cv2.imread(str(paths[1]), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(x[1, :, :, 0], raw.astype(np.float32) / 255.0)


def test_fer2013_cache_gives_the_same_inputs(fer_fixture: Path, tmp_path: Path) -> None:
    first, y1, _ = load_fer2013(fer_fixture, cache_dir=tmp_path / "cache")
    again, y2, _ = load_fer2013(fer_fixture, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert np.array_equal(y1, y2) and np.allclose(first, again, atol=1e-6)



def test_a_damaged_cache_is_rebuilt_not_fatal(fer_fixture: Path, tmp_path: Path, caplog) -> None:
    """A cache cut short (a full disk, a killed run) or overwritten is read again from the images."""
    first, y1, _ = load_fer2013(fer_fixture, cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("*.npz")
    for damage in (cache.read_bytes()[:100], b"not a numpy file"):
        cache.write_bytes(damage)
        with caplog.at_level("WARNING"):
            again, y2, _ = load_fer2013(fer_fixture, cache_dir=tmp_path / "cache")
        assert "unreadable" in caplog.text and "rebuilding" in caplog.text
        assert np.array_equal(y1, y2) and np.allclose(first, again, atol=1e-6)
        caplog.clear()
    assert not list((tmp_path / "cache").glob("*.part"))  # written whole, then renamed


@pytest.mark.train
def test_bad_layout_is_refused_in_one_line(tmp_path: Path, fer_fixture: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "happy").mkdir()
    with pytest.raises(DatasetError, match="missing class folder"):
        list_fer2013(tmp_path / "half")
    (fer_fixture / "contempt").mkdir()
    with pytest.raises(DatasetError, match="unknown class folder.*contempt"):
        list_fer2013(fer_fixture)
    proc = run_cli("train", "face", "--dataset", f"fer2013:{tmp_path / 'half'}", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing class folder" in proc.stderr
    proc = run_cli("train", "face", "--dataset", f"deap:{fer_fixture}", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "fer2013" in proc.stderr and not (tmp_path / "out").exists()


def test_stratified_split_is_disjoint_complete_and_fixed() -> None:
    labels = np.repeat(np.arange(7), [400, 44, 410, 720, 500, 480, 320])
    train, val, test = stratified_split(labels, seed=0)
    assert len(np.intersect1d(train, test)) == len(np.intersect1d(val, test)) == len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) + len(test) == len(labels)
    # every class keeps its share in the held-out part (disgust too)
    assert np.array_equal(np.bincount(labels[test], minlength=7), np.round(np.bincount(labels) * 0.1).astype(int))
    again = stratified_split(labels, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(test, stratified_split(labels, seed=1)[2])


def test_face_input_geometry() -> None:
    frame = np.zeros((240, 320), np.uint8)
    frame[100:140, 150:190] = 200  # a bright 40x40 "face"
    patch = face_input(frame, (150, 100, 40, 40))
    assert patch.shape == (48, 48, 1) and patch.dtype == np.float32
    assert 0.0 <= patch.min() and patch.max() <= 200 / 255 + 1e-6
    # the box grows by a (small: FER crops are tight) margin on each side: centred, a dark rim around a bright centre
    assert patch[24, 24, 0] == pytest.approx(200 / 255, abs=1e-3) and patch[0, 0, 0] == 0.0 and patch[0, 24, 0] == 0.0
    x, y, w, h = face_crop_box(frame.shape, (150, 100, 40, 40))
    assert w == h and w > 40 and abs((x + w / 2) - 170) <= 1 and abs((y + h / 2) - 120) <= 1
    # a box at the frame's corner is clipped to the frame, never padded with garbage
    assert face_crop_box(frame.shape, (0, 0, 50, 50))[:2] == (0, 0)
    assert face_input(frame, (280, 200, 40, 40)).shape == (48, 48, 1)
    # colour frames are accepted (BGR, as cameras deliver them)
    bgr = np.dstack([frame] * 3)
    assert np.allclose(face_input(bgr, (150, 100, 40, 40)), patch, atol=1 / 255)
    with pytest.raises(ValueError):
        face_input(frame, (400, 300, 40, 40))


# --------------------------------------------------------------------------- detector

def test_detector_finds_no_face_in_a_frame_without_one() -> None:
    detector = FaceDetector()
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((240, 320), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (240, 320), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((20, 20), np.uint8)) == []  # smaller than the smallest face


def test_detector_refuses_a_missing_cascade(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="cascade .*not found"):
        FaceDetector(cascade_path=tmp_path / "nope.xml")


def test_detector_finds_the_face_in_a_real_photograph() -> None:
    path = _sample_face_image()
    if path is None:
        pytest.skip("matplotlib's sample photograph (grace_hopper.jpg) is not installed")
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    boxes = FaceDetector().detect(gray)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    # the face of Grace Hopper's portrait: upper middle of the 512x600 picture, about 200 px wide
    assert 180 <= w <= 280 and 220 <= x + w / 2 <= 310 and 160 <= y + h / 2 <= 270
    good = face_quality(gray, boxes[0])
    assert good > 0.6
    # sigma 10 px on a ~280 px crop is ~1.7 px at the model's 48 px scale: the detail the model needs is gone
    blurred = face_quality(cv2.GaussianBlur(gray, (0, 0), 10), boxes[0])
    dark = face_quality((gray // 8).astype(np.uint8), boxes[0])
    small = face_quality(gray, (x + w // 2 - 15, y + h // 2 - 15, 30, 30))
    assert blurred < good / 2 and dark < good / 2 and small < good / 2
    assert all(0.0 <= q <= 1.0 for q in (good, blurred, dark, small))


# ----------------------------------------------------------------------- shipped model

def test_shipped_face_model_gives_a_probability_vector() -> None:
    model = TFLiteModel("face")  # refuses bytes that do not match the manifest's sha256
    assert model.is_int8 and model.input_shape == (1, 48, 48, 1)
    assert tuple(model.labels) == FER_LABELS and model.manifest["task"] == "classification"
    assert model.tflite_path.stat().st_size <= 1_000_000
    rng = np.random.default_rng(0)
    for x in (np.zeros((48, 48, 1), np.float32), rng.random((48, 48, 1), dtype=np.float32)):
        probs = model.predict(x)
        assert probs.shape == (7,) and np.all(probs >= 0) and abs(float(probs.sum()) - 1.0) < 0.03
    path = _sample_face_image()
    if path is not None:  # a real face, detected and cropped as the daemon does, gives a peaked answer
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        probs = model.predict(face_input(gray, FaceDetector().detect(gray)[0]))
        assert probs.max() > 0.25  # uniform would be 1/7 = 0.14


def test_evaluate_cli_scores_every_image_of_a_folder(fer_fixture: Path) -> None:
    proc = run_cli("models", "evaluate", "face", "--dataset", f"fer2013:{fer_fixture}", "--json", check=True)
    result = json.loads(proc.stdout)
    assert result["n"] == 7 * PER_CLASS
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["macro_f1"] <= 1.0
    # the CLI's figure is the model's own answers on these images, not a constant
    paths, labels = list_fer2013(fer_fixture)
    pred = np.argmax(TFLiteModel("face").predict_batch(read_faces(paths)), axis=1)
    assert result["accuracy"] == pytest.approx(float(np.mean(pred == labels)))
    assert set(result["per_class_recall"]) == set(FER_LABELS)
    # none of these made-up images is among the shipped model's training images
    assert result["training_overlap"] == {"what": "images", "n": 0, "of": 7 * PER_CLASS}
    assert "warning" not in proc.stderr


def test_evaluate_detector_path_scores_each_face_through_the_daemons_estimator(tmp_path: Path) -> None:
    """`models evaluate face --detector-path`: a real face (found) and noise pictures (never found) per class."""
    from conftest import load_test_module

    from edge.config import load_config
    from edge.daemon import estimator_for
    from edge.tools.evaluate_states import read_face
    from edge.tools.face_framing import framed_face

    face = load_test_module("test_evaluate_states")._grace_hopper_crop()
    if face is None:
        pytest.skip("matplotlib's sample photograph (grace_hopper.jpg) is not installed")
    root = tmp_path / "faces"
    rng = np.random.default_rng(5)
    for label in FER_LABELS:
        (root / label).mkdir(parents=True)
        cv2.imwrite(str(root / label / "a.png"), face)
        cv2.imwrite(str(root / label / "b.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    proc = run_cli("models", "evaluate", "face", "--dataset", f"fer2013:{root}", "--json", "--detector-path", check=True)
    result = json.loads(proc.stdout)
    path = result["detector_path"]
    assert "320x240" in path["framing"] and result["n"] == 14
    # the same frames (seed 0, folder order) through the daemon's own estimator give the same answers
    paths, labels = list_fer2013(root)
    estimator = estimator_for(load_config(None), "face", TFLiteModel("face"))
    frame_rng = np.random.default_rng(0)
    found = []
    for p in paths:
        frame, _ = framed_face(read_face(p), frame_rng)
        scored = estimator.score_frame(frame)
        found.append(-1 if scored is None else int(np.argmax(scored[0])))
    found = np.array(found)
    assert path["detector_found_share"] == pytest.approx(float(np.mean(found >= 0)))
    assert path["accuracy_detector_path"] == pytest.approx(float(np.mean(found == labels)))  # a miss counts wrong
    assert all(found[i] < 0 for i, p in enumerate(paths) if p.name == "b.png")  # noise is no face
    assert sum(found[i] >= 0 for i, p in enumerate(paths) if p.name == "a.png") >= 6
    assert path["per_class_found_share"]["happy"] in (0.0, 0.5)  # one of its two pictures can be a face


def test_evaluate_split_scores_the_held_out_part_only(fer_fixture: Path) -> None:
    proc = run_cli("models", "evaluate", "face", "--dataset", f"fer2013:{fer_fixture}", "--json", "--split", "val",
                   check=True)
    result = json.loads(proc.stdout)
    _, labels = list_fer2013(fer_fixture)
    _, val, _ = stratified_split(labels)
    assert result["n"] == len(val) and "held-out val part" in result["faces"]


def test_evaluate_says_how_many_images_the_model_was_trained_on(fer_fixture: Path, tmp_path: Path) -> None:
    """A manifest's training.seen_images (what `train face` records) against the evaluated folder."""
    from edge.models import models_dir
    from edge.tools.seen_images import write_seen

    models = tmp_path / "models"
    models.mkdir()
    for f in ("face.tflite", "face.float.tflite", "face.json"):
        shutil.copy(models_dir() / f, models / f)
    paths, _ = list_fer2013(fer_fixture)
    manifest = json.loads((models / "face.json").read_text())
    manifest["training"]["seen_images"] = write_seen(models, "face", paths[::3])
    (models / "face.json").write_text(json.dumps(manifest))
    proc = run_cli("models", "evaluate", str(models / "face.tflite"), "--dataset", f"fer2013:{fer_fixture}", "--json",
                   check=True)
    n_seen = len(paths[::3])
    assert json.loads(proc.stdout)["training_overlap"] == {"what": "images", "n": n_seen, "of": len(paths)}
    assert proc.stderr.strip().splitlines() == [
        f"warning: {n_seen} of {len(paths)} images here were in {models / 'face.tflite'}'s training data "
        "(its manifest's training record); figures on them are not held-out"], proc.stderr


def test_shipped_face_model_on_held_out_fer2013(shared_data: Path) -> None:
    train_dir = shared_data / "fer2013" / "train"
    if not train_dir.exists():
        pytest.skip(f"{train_dir} not found")
    paths, labels = list_fer2013(train_dir)
    _, _, test_idx = stratified_split(labels)  # the held-out part the model never trained on
    sample = np.random.default_rng(0).choice(test_idx, size=500, replace=False)
    x = read_faces([paths[i] for i in sample])
    pred = np.argmax(TFLiteModel("face").predict_batch(x), axis=1)
    accuracy = float(np.mean(pred == labels[sample]))
    # A regression guard at the shipped model's level (67.1% on the whole held-out part, 67.4% on this sample; 7 classes,
    # chance 14-25%), a few points under it so that a runtime's rounding does not fail it; the product
    # target (issue 2: >= 66% on the whole part) is measured in models/face.md. Raise it when a better model ships.
    assert accuracy >= 0.63, f"int8 accuracy {accuracy:.3f} on 500 held-out FER2013 images"


# ---------------------------------------------------------------------------- trainer

def test_resolution_schedule_spends_every_epoch_and_ends_at_the_deployed_size() -> None:
    from edge.tools.train_face import resolution_phases

    for epochs in (1, 2, 3, 5, 43, 100):
        phases = resolution_phases(epochs)
        assert sum(n for _, n in phases) == epochs and all(n > 0 for _, n in phases)
        assert phases[-1][0] == 48 and [size for size, _ in phases] == sorted(size for size, _ in phases)
    assert resolution_phases(43) == [(32, 28), (40, 10), (48, 5)]  # the shipped model's schedule


@pytest.mark.train
def test_mirror_averaged_graph_is_the_mean_of_face_and_mirror() -> None:
    tf = pytest.importorskip("tensorflow")
    from edge.tools.train_face import build_model, mirror_averaged

    tf.keras.utils.set_random_seed(3)
    base = build_model(widths=(4, 8))
    x = np.random.default_rng(3).random((1, 48, 48, 1)).astype(np.float32)
    expected = (base(x).numpy() + base(x[:, :, ::-1]).numpy()) / 2
    got = mirror_averaged(base)(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(base(x).numpy(), expected, atol=1e-6)  # the mirror really changes the answer


@pytest.mark.train
def test_deployment_choice_is_the_best_single_pass_unless_mirror_averaging_is_allowed() -> None:
    """Mirror averaging runs the net twice (over the 2 ms budget): scored and logged, not chosen by default."""
    tf = pytest.importorskip("tensorflow")
    from edge.tools.train_face import DEPLOY_SIZES, build_model, choose_deployment

    tf.keras.utils.set_random_seed(2)
    net = build_model(widths=(4, 8), input_size=None)
    rng = np.random.default_rng(2)
    x, y = rng.random((80, 48, 48, 1)).astype(np.float32), rng.integers(0, 7, 80)
    px, mirror, scores = choose_deployment(net, x, y)
    single = {k: v for k, v in scores.items() if "mirror" not in k}
    assert len(scores) == 8 and not mirror and scores[f"{px}px"] == max(single.values())
    assert max(scores.values()) > max(single.values())  # here a mirror choice scored best: it was passed over
    px, mirror, _ = choose_deployment(net, x, y, mirror_sizes=DEPLOY_SIZES)
    assert mirror and scores[f"{px}px mirror"] == max(scores.values())
    # mirror averaging allowed at one size only (where two passes fit the budget): the best of what is allowed
    allowed = {k: v for k, v in scores.items() if "mirror" not in k or k == "36px mirror"}
    px, mirror, _ = choose_deployment(net, x, y, mirror_sizes=(36,))
    assert scores[f"{px}px{' mirror' if mirror else ''}"] == max(allowed.values()) and (not mirror or px == 36)


@pytest.mark.train
def test_narrowed_net_keeps_the_channels_with_the_largest_batchnorm_scale() -> None:
    """Channels whose BatchNorm scale and shift are zero output nothing: cutting them changes no output."""
    tf = pytest.importorskip("tensorflow")
    from edge.tools.train_face import build_model, narrowed, widths_of

    tf.keras.utils.set_random_seed(1)
    wide = build_model(widths=(6, 8), input_size=None)
    weights = wide.get_weights()
    rng = np.random.default_rng(0)
    for conv, (width, keep) in enumerate(zip((6, 6, 8, 8), (4, 4, 5, 5))):
        gamma, beta, mean, var = weights[5 * conv + 1:5 * conv + 5]
        gamma[:] = rng.uniform(0.5, 2, width) * rng.choice([-1, 1], width)  # |gamma| ranks, not gamma
        beta[:], mean[:], var[:] = rng.normal(size=width), rng.normal(size=width) * 0.1, rng.uniform(0.5, 2, width)
        dead = rng.choice(width, width - keep, replace=False)
        gamma[dead], beta[dead] = 0.0, 0.0
    wide.set_weights(weights)
    cut = narrowed(weights, (4, 5))
    assert widths_of(weights) == (6, 8) and widths_of(cut) == (4, 5)
    narrow = build_model(widths=(4, 5), input_size=None)
    narrow.set_weights(cut)
    x = rng.random((3, 40, 40, 1)).astype(np.float32)
    np.testing.assert_allclose(narrow(x, training=False).numpy(), wide(x, training=False).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="cannot narrow"):
        narrowed(weights, (8, 8))


@pytest.mark.train
def test_teacher_probabilities_are_the_ensembles_mirror_averaged_mean(tmp_path: Path) -> None:
    """Distillation targets: each teacher scores face and mirror; the ensemble is the mean of its members."""
    tf = pytest.importorskip("tensorflow")
    from edge.tools.train_face import _trained_weights, build_model, teacher_probabilities

    files = []
    for seed in (4, 5):
        tf.keras.utils.set_random_seed(seed)
        files.append(tmp_path / f"teacher{seed}.keras")
        build_model(input_size=None).save(files[-1])
    teachers = [_trained_weights(f) for f in files]  # as train() reads them
    rng = np.random.default_rng(4)
    x, x_bn = rng.random((6, 48, 48, 1)).astype(np.float32), rng.random((128, 48, 48, 1)).astype(np.float32)
    (both,) = teacher_probabilities(teachers, [x], x_bn, seed=0)
    (first,), (second,) = (teacher_probabilities([t], [x], x_bn, seed=0) for t in teachers)
    np.testing.assert_allclose(both, (first + second) / 2, atol=1e-5)
    assert not np.allclose(first, second, atol=1e-3)  # two different teachers, so the mean is no copy of one
    np.testing.assert_allclose(both.sum(axis=1), 1.0, atol=1e-5)
    (mirrored,) = teacher_probabilities(teachers, [x[:, :, ::-1]], x_bn, seed=0)
    np.testing.assert_allclose(mirrored, both, atol=1e-5)  # face and mirror image get the same target


def test_provenance_keeps_one_level_of_sources() -> None:
    """A start's or teacher's record names its own sources by file and sha256 only: no nesting per generation."""
    from edge.tools.train_face import one_level

    grand = {"file": "g.keras", "sha256": "0" * 64, "training": {"epochs": 43}}
    record = {"epochs": 12, "init_from": dict(grand), "distillation": {"weight": 0.5, "teachers": [dict(grand)]}}
    shallow = one_level(record)
    assert shallow["init_from"] == {"file": "g.keras", "sha256": "0" * 64} and shallow["epochs"] == 12
    assert shallow["distillation"] == {"weight": 0.5, "teachers": [{"file": "g.keras", "sha256": "0" * 64}]}
    assert record["init_from"]["training"] == {"epochs": 43}  # the caller's record is left as it was
    assert one_level(None) is None and one_level({"init_from": None}) == {"init_from": None}
    assert len(json.dumps(TFLiteModel("face").manifest)) < 100_000  # the shipped manifest stays small


@pytest.mark.train
def test_train_face_cli_end_to_end_writes_a_loadable_int8_model(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    data = _write_fer_fixture(tmp_path / "train", per_class=20)  # enough for a val and a test image per class
    out = tmp_path / "run"
    proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(out), "--epochs", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in (proc.stdout + proc.stderr).splitlines():  # Keras' progress, none of TensorFlow's banners
        assert not any(w in line for w in ("TensorSpec", "Captures:", "oneDNN", "absl::", "XNNPACK")), line
    manifest = json.loads((out / "face.json").read_text())
    assert manifest["training"]["resolution_phases"] == [[32, 1], [48, 1]]
    assert manifest["training"]["n_test"] == 14 and manifest["input"]["shape"] == [1, 48, 48, 1]
    model = TFLiteModel(out / "face.tflite")  # the sha256 in the manifest matches the file
    probs = model.predict_batch(read_faces(list_fer2013(data)[0][:3]))
    assert probs.shape == (3, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=0.05)
    assert set(manifest["metrics"]["heldout_test"]) == {"float", "int8"}
    # its own version (not the shipped one's), and the images it trained on (train and val parts) recorded,
    # so evaluating it on its own training folder says how many it has seen
    assert manifest["version"].endswith(f"+local.{manifest['sha256'][:8]}"), manifest["version"]
    assert manifest["training"]["seen_images"]["n"] == 7 * 20 - 14
    ev = run_cli("models", "evaluate", str(out / "face.tflite"), "--dataset", f"fer2013:{data}", "--json", check=True)
    assert json.loads(ev.stdout)["training_overlap"] == {"what": "images", "n": 7 * 20 - 14, "of": 7 * 20}

    # a warm restart from that run: one resolution, its source named by sha256, the same split
    again = tmp_path / "restart"
    proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(again), "--epochs", "1",
                   "--init-from", str(out / "face.keras"), "--teacher", str(out / "face.keras"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    restarted = json.loads((again / "face.json").read_text())["training"]
    distilled = restarted["distillation"]  # the teacher named by sha256, its val accuracy measured
    assert distilled["teachers"][0]["sha256"] == restarted["init_from"]["sha256"]
    assert 0.0 <= distilled["teacher_val_accuracy"] <= 1.0 and distilled["weight"] == 0.5
    assert restarted["resolution_phases"] == [[40, 1]]
    assert restarted["init_from"]["sha256"] == hashlib.sha256((out / "face.keras").read_bytes()).hexdigest()
    assert restarted["init_from"]["training"]["resolution_phases"] == [[32, 1], [48, 1]]
    assert restarted["n_test"] == manifest["training"]["n_test"]
    assert len(restarted["snapshot_averaging"]["val_accuracy_by_choice_before"]) == 8  # the restart's end, scored
    assert restarted["snapshot_averaging"]["snapshots"] == 2  # the start and the one epoch's end, averaged
    assert restarted["widths"] == [24, 48, 96, 192] and restarted["narrowed_from_widths"] is None

    # a narrower restart: the net cut down to its strongest channels, the cut start left out of the mean
    slim = tmp_path / "slim"
    proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(slim), "--epochs", "3",
                   "--init-from", str(out / "face.keras"), "--widths", "16,32,64,128", "--mirror-px", "36",
                   "--restart-px", "36", "--teacher", str(out / "face.keras"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    narrowed = json.loads((slim / "face.json").read_text())["training"]
    assert narrowed["widths"] == [16, 32, 64, 128] and narrowed["narrowed_from_widths"] == [24, 48, 96, 192]
    assert narrowed["snapshot_averaging"]["snapshots"] == 1  # epochs 1-2 recover from the cut; only the 3rd counts
    assert narrowed["resolution_phases"] == [[36, 3]] and narrowed["snapshot_averaging"]["batchnorm_recalibrated_at_px"] == 36
    assert "at 36 px" in narrowed["distillation"]["targets"]
    assert not narrowed["mirror_average"] or narrowed["net_px"] == 36
    assert (slim / "face.tflite").stat().st_size < 0.7 * (out / "face.tflite").stat().st_size
    assert TFLiteModel(slim / "face.tflite").predict_batch(read_faces(list_fer2013(data)[0][:2])).shape == (2, 7)
    # widths wider than --init-from's net: one line; no widths at all: argparse's usage and one error line
    for widths in ("32,48,96,192", "16,x"):
        proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(tmp_path / "wide"),
                       "--init-from", str(out / "face.keras"), "--widths", widths, timeout=600)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "--widths" in lines[-1], proc.stderr[-2000:]
        assert len(lines) == 1 or lines[0].startswith("usage:")
        assert not (tmp_path / "wide" / "face.tflite").exists()
    # a file that is not a face net: one line, nothing written
    (tmp_path / "notes.keras").write_text("not a model")
    proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(tmp_path / "bad"),
                   "--init-from", str(tmp_path / "notes.keras"), timeout=600)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert "--init-from" in proc.stderr and not (tmp_path / "bad" / "face.tflite").exists()
    proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(tmp_path / "bad"),
                   "--teacher", str(tmp_path / "notes.keras"), timeout=600)  # the line names the flag that gave it
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert "--teacher" in proc.stderr and "--init-from" not in proc.stderr


# ------------------------------------------------------------- faces as a camera frames them

def _fer_like_crop() -> np.ndarray:
    """A real face cut as FER2013 cuts faces (tight, centred, 48x48 grey): Grace Hopper's, via the daemon's crop."""
    path = _sample_face_image()
    if path is None:
        pytest.skip("matplotlib's sample photograph (grace_hopper.jpg) is not installed")
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return np.round(face_input(gray, FaceDetector().detect(gray)[0])[:, :, 0] * 255).astype(np.uint8)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_framing_is_seeded_and_keeps_the_face_whole_inside_the_frame() -> None:
    from edge.tools.face_framing import FACE_SIDE_RANGE_PX, FRAME_PX, framed_face

    face = _fer_like_crop()
    a, box_a = framed_face(face, np.random.default_rng(4))
    b, box_b = framed_face(face, np.random.default_rng(4))
    c, box_c = framed_face(face, np.random.default_rng(5))
    assert np.array_equal(a, b) and box_a == box_b and (box_a != box_c or not np.array_equal(a, c))
    assert a.shape == (FRAME_PX[1], FRAME_PX[0]) and a.dtype == np.uint8
    x, y, side = box_a
    assert FACE_SIDE_RANGE_PX[0] <= side <= FACE_SIDE_RANGE_PX[1]
    assert 0 <= x and x + side <= FRAME_PX[0] and 0 <= y and y + side <= FRAME_PX[1]
    # the face is there, enlarged; around it is not a flat card
    back = cv2.resize(a[y:y + side, x:x + side], (48, 48), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(back - face.astype(int)).mean() < 4
    outside = np.ones(a.shape, bool)
    outside[y:y + side, x:x + side] = False
    assert a[outside].std() > 5


def test_a_face_pasted_into_a_frame_is_found_and_cut_as_fer_frames_it() -> None:
    """The daemon's detector finds the face in the frame, and its crop is the pasted FER square, not a looser cut."""
    from edge.features.face import FACE_MARGIN_FRAC
    from edge.tools.face_framing import framed_face

    face = _fer_like_crop()
    detector = FaceDetector(min_face_px=48)
    found, ours, old = 0, [], []
    for seed in range(8):
        frame, (x, y, side) = framed_face(face, np.random.default_rng(seed))
        boxes = detector.detect(frame)
        if not boxes:
            continue
        found += 1
        ours.append(_overlap(face_crop_box(frame.shape, boxes[0]), (x, y, side, side)))
        old.append(_overlap(face_crop_box(frame.shape, boxes[0], 0.12), (x, y, side, side)))  # the margin before
    assert found >= 7, found
    assert min(ours) >= 0.8 and np.mean(ours) >= 0.88, ours
    assert np.mean(ours) > np.mean(old) + 0.05 and FACE_MARGIN_FRAC < 0.05


def test_detector_path_matches_the_direct_crop_on_held_out_faces(shared_data: Path) -> None:
    """Validation faces pasted into frames: the detector path's accuracy on the faces it finds is the FER crop's."""
    from edge.daemon import load_estimators
    from edge.config import load_config, replace_dotted
    from edge.tools.face_framing import framed_face

    train_dir = shared_data / "fer2013" / "train"
    if not train_dir.exists():
        pytest.skip(f"{train_dir} not found")
    paths, labels = list_fer2013(train_dir)
    _, val_idx, _ = stratified_split(labels)
    sample = np.random.default_rng(1).choice(val_idx, size=300, replace=False)
    est = load_estimators(replace_dotted(load_config(None), "daemon.modalities", ("face",)))[0]["face"]
    rng = np.random.default_rng(0)
    direct, path = [], []
    for i in sample:
        face = cv2.imread(str(paths[i]), cv2.IMREAD_GRAYSCALE)
        scored = est.score_frame(framed_face(face, rng)[0])
        direct.append(int(np.argmax(est.model.predict(face_input(face, (0, 0, 48, 48))))))
        path.append(-1 if scored is None else int(np.argmax(scored[0])))
    direct, path, y = np.array(direct), np.array(path), labels[sample]
    found = path >= 0
    # measured on all 1,346 deduplicated validation faces (BlazeFace): found 0.906, 67.0 % vs 65.6 % on
    # the faces found (Haar: found 0.71, 64.7 % vs 64.7 %)
    assert found.mean() >= 0.85, found.mean()
    gap = np.mean(path[found] == y[found]) - np.mean(direct[found] == y[found])
    assert gap >= -0.03, f"detector path {gap:+.3f} against the direct crop on {found.sum()} faces found"


# ------------------------------------------------------------- training on the camera's crops

@pytest.mark.train
def test_a_shipped_float_model_is_read_back_as_a_trainable_net() -> None:
    """face.float.tflite -> Keras weights: the same answers, and BatchNorm that can be re-measured without harm."""
    tf = pytest.importorskip("tensorflow")
    from edge.tools.train_face import (build_model, deployable, recalibrate_batchnorm, unfold_batchnorm,
                                       weights_from_tflite, widths_of)

    shipped = TFLiteModel("face")
    from edge.models import models_dir

    float_file = models_dir() / "face.float.tflite"
    weights = weights_from_tflite(float_file)
    # smooth images (TFLite's and TensorFlow's bilinear resize part ways on pixel noise) and a real face
    coarse = np.random.default_rng(3).random((300, 8, 8)).astype(np.float32)
    x = np.stack([cv2.resize(c, (48, 48), interpolation=cv2.INTER_CUBIC) for c in coarse]).clip(0, 1)[..., None]
    x[0] = _fer_like_crop()[..., None] / 255.0
    net_px = int(shipped.manifest["training"]["net_px"])
    net = build_model(widths=widths_of(weights), input_size=None)
    answers = []
    for ws in (weights, unfold_batchnorm(weights, x, net_px, seed=0)):
        net.set_weights(ws)
        graph = deployable(net, net_px, mirror=bool(shipped.manifest["training"]["mirror_average"]))
        answers.append(np.concatenate([graph(x[i:i + 1], training=False).numpy() for i in range(4)]))
    reference = TFLiteModel("face", variant="float").predict_batch(x[:4])
    np.testing.assert_allclose(answers[0], reference, atol=1e-3)  # folded BatchNorm: exact in inference
    np.testing.assert_allclose(answers[1], answers[0], atol=1e-4)  # unfolded: still the same net
    # unfolded, the BatchNorms hold their convs' statistics, so re-measuring them (what snapshot
    # averaging and the teachers do) leaves the net where it was; the folded identity would not survive it
    before = net(tf.image.resize(x, (net_px, net_px), method="area"), training=False).numpy()
    recalibrate_batchnorm(net, x, seed=0, px=net_px)
    after = net(tf.image.resize(x, (net_px, net_px), method="area"), training=False).numpy()
    assert np.abs(after - before).max() < 0.02
    folded = build_model(widths=widths_of(weights), input_size=None)
    folded.set_weights(weights)
    recalibrate_batchnorm(folded, x, seed=0, px=net_px)
    assert np.abs(folded(tf.image.resize(x, (net_px, net_px), method="area"), training=False).numpy() - before).max() > 0.1


@pytest.mark.train
def test_an_int8_or_foreign_tflite_is_refused_as_a_start_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from edge.tools.train_face import _trained_weights

    with pytest.raises(DatasetError, match=r"--init-from .*face\.tflite: not a float face model \(an int8 model"):
        _trained_weights(TFLiteModel("face").tflite_path)
    with pytest.raises(DatasetError, match="--teacher .*face_detector.tflite: not a"):
        _trained_weights(TFLiteModel("face").tflite_path.parent / "face_detector.tflite", "--teacher")
    (tmp_path / "junk.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(DatasetError, match="junk.tflite: not a float face model"):
        _trained_weights(tmp_path / "junk.tflite")


def test_training_copies_of_held_out_images_are_dropped() -> None:
    from edge.tools.train_face import drop_copies

    x = np.random.default_rng(0).integers(0, 256, (10, 48, 48, 1)).astype(np.float32) / 255.0
    x[3] = x[8]  # a training image that is a copy of a held-out one
    x[5] = np.clip(x[9] + 2.0 / 255.0, 0, 1)  # near, but not a copy: kept
    kept, dropped = drop_copies(x, np.arange(8), np.array([8, 9]))
    assert dropped == 1 and kept.tolist() == [0, 1, 2, 4, 5, 6, 7]


@pytest.mark.train
def test_camera_crops_are_the_daemons_crops_of_framed_faces(tmp_path: Path) -> None:
    """Each face pasted into a frame and cut by the daemon's own path; misses left out; the cache gives the same."""
    from edge.config import load_config
    from edge.daemon import estimator_for
    from edge.tools.face_framing import framed_face
    from edge.tools.train_face import camera_crops

    face = _fer_like_crop().astype(np.float32)[None, :, :, None] / 255.0
    x = np.concatenate([face, face, face, np.full_like(face, 0.5)])  # the last is a blank card: no face
    crops, index = camera_crops(x, seed=11, cache_dir=tmp_path)
    assert 3 not in index.tolist() and len(index) >= 2 and crops.shape == (len(index), 48, 48, 1)
    estimator = estimator_for(load_config(None), "face", TFLiteModel("face"))
    rng = np.random.default_rng(11)
    framed = [framed_face(np.round(f[..., 0] * 255).astype(np.uint8), rng) for f in x]
    for crop, i in zip(crops, index):
        expected, box, _ = estimator.face_crop(framed[i][0])
        np.testing.assert_allclose(crop, expected, atol=0.5 / 255 + 1e-6)  # the cache keeps grey levels
        x0, y0, side = framed[i][1]
        assert _overlap(box, (x0, y0, side, side)) > 0.6  # the face again, framed a little differently
    again, index_again = camera_crops(x, seed=11, cache_dir=tmp_path)
    assert np.array_equal(again, crops) and np.array_equal(index_again, index)
    assert len(list(tmp_path.glob("camera-crops-*.npz"))) == 1


@pytest.mark.train
def test_camera_augmentation_stays_in_range_and_hides_or_blurs_part_of_some_faces() -> None:
    pytest.importorskip("tensorflow")
    from edge.tools.train_face import _augment_fn

    x = np.tile(np.linspace(0.35, 0.65, 48, dtype=np.float32)[None, None, :, None], (64, 48, 1, 1))
    y = np.zeros(64, np.int64)
    plain, _ = _augment_fn(3, 48)(x, y)
    camera, labels = _augment_fn(3, 48, camera=True)(x, y)
    plain, camera = plain.numpy(), camera.numpy()
    assert camera.shape == x.shape and labels.shape == (64, 7)
    assert camera.min() >= 0.0 and camera.max() <= 1.0
    # a flat run of 6+ pixels (an occluder) is absent from a smooth ramp unless the camera augmentation put it there

    def occluded(img: np.ndarray) -> bool:
        flat = np.abs(np.diff(img[:, :, 0], axis=1)) < 1e-6
        runs = np.apply_along_axis(lambda r: np.convolve(r, np.ones(6), "valid").max(), 1, flat.astype(float))
        return bool(runs.max() >= 6)

    assert not any(occluded(img) for img in plain)
    assert 5 <= sum(occluded(img) for img in camera) <= 35, sum(occluded(img) for img in camera)
    assert not np.allclose(camera, plain)


@pytest.mark.train
def test_train_face_restarts_from_the_shipped_float_model_with_camera_crops(tmp_path: Path) -> None:
    """`--init-from face.float.tflite --camera-crops`: the shipped net restarted, the camera path recorded."""
    pytest.importorskip("tensorflow")
    from edge.models import models_dir

    data = _write_fer_fixture(tmp_path / "train", per_class=20)
    shutil.copy(_sample_face_image() or pytest.skip("no sample photograph"), data / "happy" / "hopper.jpg")
    paths, labels = list_fer2013(data)
    train, _, test = stratified_split(labels)
    paths[train[0]].write_bytes(paths[test[0]].read_bytes())  # a training image that is a copy of a test image
    out = tmp_path / "run"
    shipped = models_dir() / "face.float.tflite"
    proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(out), "--epochs", "1",
                   "--init-from", str(shipped), "--teacher", str(shipped), "--restart-px", "36", "--mirror-px", "36",
                   "--camera-crops", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    training = json.loads((out / "face.json").read_text())["training"]
    assert training["init_from"]["sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert training["widths"] == TFLiteModel("face").manifest["training"]["widths"]
    camera = training["camera_crops"]
    assert camera["of_faces"] == training["n_train"] and 0 <= camera["crops"] <= camera["of_faces"]
    assert "occluding" in training["augmentation"] and training["duplicates_dropped_from_train"] == 1
    assert training["n_train"] == len(train) - 1
    assert TFLiteModel(out / "face.tflite").predict_batch(read_faces(list_fer2013(data)[0][:2])).shape == (2, 7)
    # a learning rate that is not one (nan, inf, negative, 1e-300): argparse's usage and one error line
    for lr in ("nan", "inf", "-1", "1e-300", "fast"):
        proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(tmp_path / "lr"),
                       "--peak-lr", lr, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "--peak-lr" in lines[-1] and lines[0].startswith("usage:"), proc.stderr
        assert not (tmp_path / "lr").exists()
    # a narrower restart needs BatchNorm scales to rank channels by, which a .tflite no longer has: one line
    proc = run_cli("train", "face", "--dataset", f"fer2013:{data}", "--out", str(tmp_path / "slim"),
                   "--init-from", str(shipped), "--widths", "8,16,32,64", timeout=600)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and ".tflite" in proc.stderr, proc.stderr
