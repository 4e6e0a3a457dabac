"""``emotion-edge train face --dataset fer2013:DIR --out DIR``: the face model on FER2013.

Data: an image folder ``DIR/<class>/*.jpg`` with the seven FER2013 classes (``FER_LABELS``).
Every image goes through ``edge.features.face.face_input`` with its full-image box, the same
function the daemon applies to a detected face.

Split: FER2013 has no subject IDs, so a subject-wise split is impossible. Each class's files
(sorted by name) are shuffled with a fixed seed and cut 85 / 5 / 10 into train / val / test:
val is only watched (the schedule is fixed, no epoch is chosen on it), test is scored once,
at the end, by the float and int8 models. The same person (and near-duplicate images, which
FER2013 is known to hold) may sit on both sides of the cut, so the held-out test figures can
be optimistic; the model card says so.

Network: a VGG-style CNN (four stages of two 3x3 conv + BatchNorm + ReLU and a 2x2 max-pool,
24-48-96-192 channels, global average pooling, softmax over 7 classes), trained with flips,
small shifts, rotations and zooms, label smoothing, AdamW with one warm-up epoch and a cosine
learning rate, and progressive resizing (most epochs at 32 px, then 40 px, the last at the
deployed 48 px) so that a 2-core CPU can afford it. ``--widths`` sets other stage widths; with
``--init-from`` a narrower net starts from the wider one's strongest channels (``narrowed``).
``--init-from`` also takes a shipped float export (``weights_from_tflite``, ``unfold_batchnorm``).

Faces as the camera sees them: ``--camera-crops`` trains on each face a second time as the
daemon's own detector path cuts it out of a camera-like frame (``camera_crops``), with lighting,
blur and occlusion added (``CAMERA_AUGMENTATION``). Training images pixel-identical to a
validation or test image are dropped (``drop_copies``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DatasetError
from edge.features.face import FACE_INPUT_SIZE, FER_LABELS, face_input
from edge.models import sha256_of
from edge.tools.npz_cache import read_npz, write_npz
from edge.tools.tensorflow_import import import_tensorflow

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLIT_SEED = 0
VAL_FRAC = 0.05  # val picks the deployed input size and decides whether a run ships (the schedule is fixed)
TEST_FRAC = 0.10
DEFAULT_EPOCHS = 43
DEFAULT_WIDTHS = (24, 48, 96, 192)  # channels of the four conv stages
# (input px, share of the epochs); the last stage takes what is left
RESOLUTION_SCHEDULE = ((32, 0.65), (40, 0.23), (48, 0.12))
PEAK_LR = 1.5e-3
WEIGHT_DECAY = 1e-2
LABEL_SMOOTHING = 0.1
TIME_LIMIT_MIN = 150.0  # training stops if it runs longer than this
BATCH_SIZE = 64
# a warm restart (--init-from): stochastic weight averaging (Izmailov et al. 2018). One warm-up epoch,
# then a constant learning rate, every epoch at one resolution (the progressive run's net did best at
# 36-40 px); the shipped net is the mean of the start and every epoch's end, BatchNorm re-measured.
RESTART_PX = 40
RESTART_PEAK_LR = 5e-4
RESTART_EPOCHS = 12
# a restart from a wider net (--widths narrower than --init-from's): its first epochs recover from the cut,
# so neither the start nor they enter the snapshot mean
NARROWED_SKIP_EPOCHS = 2
BN_RECALIBRATION_BATCHES = 200  # training batches whose statistics the averaged net's BatchNorm takes
# --teacher: the target is this share of the teachers' probabilities, the rest the (smoothed) label
DISTILL_WEIGHT = 0.5
# --camera-crops: each training face is also pasted into a camera-like frame (edge.tools.face_framing)
# and cut by the daemon's own detector path; evaluation frames its held-out faces with seed 0
CAMERA_CROP_SEED = 1000
MODEL_VERSION = "1.4.0"


# ----------------------------------------------------------------------------------- data

def list_fer2013(path: Path) -> tuple[list[Path], np.ndarray]:
    """Every image of a FER2013 image folder, sorted, with its class index in ``FER_LABELS``."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"fer2013 {path}: not a folder")
    folders = {p.name.lower(): p for p in path.iterdir() if p.is_dir()}
    missing = [label for label in FER_LABELS if label not in folders]
    if missing:
        raise DatasetError(f"fer2013 {path}: missing class folder(s) {', '.join(missing)} "
                           f"(expected {'/'.join(FER_LABELS)} with *.jpg inside)")
    unknown = sorted(set(folders) - set(FER_LABELS))
    if unknown:
        raise DatasetError(f"fer2013 {path}: unknown class folder(s) {', '.join(unknown)} (expected {', '.join(FER_LABELS)})")
    paths: list[Path] = []
    labels: list[int] = []
    for index, label in enumerate(FER_LABELS):
        files = sorted(p for p in folders[label].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths.extend(files)
        labels.extend([index] * len(files))
    if not paths:
        raise DatasetError(f"fer2013 {path}: the class folders hold no .jpg/.png images")
    return paths, np.asarray(labels, dtype=np.int64)


def read_faces(paths: list[Path]) -> np.ndarray:
    """Model inputs (n, 48, 48, 1) float32 in [0, 1]: each image through ``face_input`` with its full box."""
    import cv2  # tools only

    out = np.empty((len(paths), FACE_INPUT_SIZE, FACE_INPUT_SIZE, 1), dtype=np.float32)
    for i, p in enumerate(paths):
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise DatasetError(f"fer2013: {p} is not a readable image")
        out[i] = face_input(gray, (0, 0, gray.shape[1], gray.shape[0]))
    return out


def load_fer2013(path: Path, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """(x (n,48,48,1) float32, y (n,) int, paths); cached as uint8 in ``cache_dir`` when given.

    The cache is keyed by the folder's file list, so a changed folder is read again.
    """
    paths, labels = list_fer2013(path)
    key = hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"fer2013-{key}.npz" if cache_dir else None
    data = read_npz(cache, ("x", "y"))
    if data is not None:
        return data["x"].astype(np.float32)[..., None] / 255.0, data["y"], paths
    t0 = time.monotonic()
    x = read_faces(paths)
    log.info("read %d images from %s in %.1f s", len(paths), path, time.monotonic() - t0)
    if cache is not None:
        # face_input of a 48x48 image is exactly pixel/255, so uint8 holds it without loss
        write_npz(cache, x=np.round(x[..., 0] * 255.0).astype(np.uint8), y=labels)
    return x, labels, paths


def stratified_split(labels: np.ndarray, seed: int = SPLIT_SEED, val_frac: float = VAL_FRAC,
                     test_frac: float = TEST_FRAC) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) index arrays: each class shuffled with ``seed`` and cut by the fractions."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_frac))
        n_val = int(round(len(idx) * val_frac))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def drop_copies(x: np.ndarray, train: np.ndarray, held_out: np.ndarray) -> tuple[np.ndarray, int]:
    """``train`` without the images pixel-identical to a held-out one; (kept indices, how many dropped).

    FER2013 holds exact copies (219 of the test part's 2,872 have one in train or val); a net
    trained on a copy of a held-out face flatters every figure measured on it.
    """
    def digest(i: int) -> bytes:
        return hashlib.sha256(np.round(x[i] * 255.0).astype(np.uint8).tobytes()).digest()

    held = {digest(i) for i in held_out}
    keep = np.array([digest(i) not in held for i in train], bool)
    return train[keep], int((~keep).sum())


def camera_crops(x: np.ndarray, seed: int, cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crops (m, 48, 48, 1) float32, index into ``x`` of each) of the faces the camera path finds.

    Each face is pasted into a camera-like frame (``edge.tools.face_framing``: random size, place
    and background) and cut by the daemon's own detector and crop path
    (``FaceEstimator.face_crop`` with the default config), so the net is trained on the crops it
    will be shown: framed a little looser or tighter than FER2013, resampled twice, with
    background at the edges. Faces the detector misses are left out. Cached in ``cache_dir``.
    """
    from edge.config import load_config  # noqa: PLC0415
    from edge.daemon import estimator_for  # noqa: PLC0415
    from edge.models import TFLiteModel  # noqa: PLC0415
    from edge.tools.face_framing import framed_face  # noqa: PLC0415

    faces = np.round(x[..., 0] * 255.0).astype(np.uint8)
    key = hashlib.sha256(faces.tobytes() + str(seed).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"camera-crops-{key}.npz" if cache_dir else None
    data = read_npz(cache, ("crops", "index"))
    if data is not None:
        return data["crops"].astype(np.float32)[..., None] / 255.0, data["index"]
    estimator = estimator_for(load_config(None), "face", TFLiteModel("face"))
    rng = np.random.default_rng(seed)
    crops, index = [], []
    t0 = time.monotonic()
    for i, face in enumerate(faces):
        frame, _ = framed_face(face, rng)
        cropped = estimator.face_crop(frame)
        if cropped is not None:
            crops.append(cropped[0])
            index.append(i)
        if (i + 1) % 5000 == 0:
            log.info("camera crops: %d of %d faces framed, %d found (%.0f s)", i + 1, len(faces), len(index),
                     time.monotonic() - t0)
    out = np.asarray(crops, np.float32).reshape(-1, FACE_INPUT_SIZE, FACE_INPUT_SIZE, 1)
    index_arr = np.asarray(index, np.int64)
    log.info("camera crops: the detector path found %d of %d faces (%.1f%%)", len(index_arr), len(faces),
             100.0 * len(index_arr) / max(1, len(faces)))
    if cache is not None:
        write_npz(cache, crops=np.round(out[..., 0] * 255.0).astype(np.uint8), index=index_arr)
        return np.round(out * 255.0) / 255.0, index_arr  # what the cache gives back, so a rerun is the same run
    return out, index_arr


# -------------------------------------------------------------------------------- network

def build_model(widths: tuple[int, ...] = DEFAULT_WIDTHS, dropout: float = 0.4,
                input_size: int | None = FACE_INPUT_SIZE) -> Any:
    """VGG-style CNN: per stage two 3x3 conv + BatchNorm + ReLU, then 2x2 max-pool; GAP, softmax over 7.

    Plain 3x3 convolutions, not depthwise-separable ones: on a CPU they train several times
    faster per unit of capacity, and the int8 kernels are fast on ARM too. ``input_size=None``
    builds the resolution-free twin used while training at 32 and 40 px.
    """
    tf = import_tensorflow()

    layers = tf.keras.layers
    inputs = tf.keras.Input((input_size, input_size, 1), name="face")
    x = inputs
    for channels in widths:
        for _ in range(2):
            x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(len(FER_LABELS), activation="softmax", name="emotion")(x)
    return tf.keras.Model(inputs, outputs, name="face_fer2013")


def widths_of(weights: list[np.ndarray]) -> tuple[int, ...]:
    """The stage widths of a ``build_model`` net, read from its weights (two conv kernels per stage)."""
    kernels = [w for w in weights if w.ndim == 4]
    return tuple(int(k.shape[-1]) for k in kernels[1::2])


def narrowed(weights: list[np.ndarray], widths: tuple[int, ...]) -> list[np.ndarray]:
    """``weights`` of a wider net cut down to ``widths``: each conv keeps its channels of largest |BatchNorm gamma|.

    Network slimming (Liu et al. 2017): a channel whose BatchNorm scale is small contributes little
    downstream, so a narrower net starts from the wide net's strongest channels and needs only a
    short restart to recover, instead of training from scratch. The next layer keeps the matching
    input channels; the classifier keeps the last stage's.
    """
    have = widths_of(weights)
    if len(widths) != len(have) or any(w > h for w, h in zip(widths, have)):
        raise ValueError(f"cannot narrow widths {have} to {widths}")
    out: list[np.ndarray] = []
    keep_in = np.arange(weights[0].shape[2])  # the grey input channel
    i = 0
    for stage_width in widths:
        for _ in range(2):
            kernel, gamma, beta, mean, var = weights[i:i + 5]
            keep = np.sort(np.argsort(-np.abs(gamma), kind="stable")[:stage_width])
            out += [kernel[:, :, keep_in][..., keep], gamma[keep], beta[keep], mean[keep], var[keep]]
            keep_in, i = keep, i + 5
    dense_kernel, dense_bias = weights[i:i + 2]
    return out + [dense_kernel[keep_in], dense_bias]


def mirror_averaged(model: Any) -> Any:
    """One graph that scores the face and its mirror image with ``model`` and averages the probabilities.

    Faces are left-right symmetric in meaning, so the average is a steadier estimate (the usual
    flip test-time augmentation); inside the graph, the daemon and ``models evaluate`` get it
    without any code of their own. Both images go through the network as one batch of two.
    """
    tf = import_tensorflow()

    ops = tf.keras.ops
    inputs = tf.keras.Input(model.input_shape[1:], batch_size=1, name="face")
    both = ops.concatenate([inputs, ops.flip(inputs, axis=2)], axis=0)
    probs = model(both)
    face, mirror = ops.split(probs, 2, axis=0)
    outputs = tf.keras.layers.Identity(name="emotion")((face + mirror) * 0.5)
    return tf.keras.Model(inputs, outputs, name=f"{model.name}_mirror_averaged")


DEPLOY_SIZES = (36, 40, 44, 48)  # px the net may see after the in-graph resize (chosen on val)


def choose_deployment(net: Any, x_val: np.ndarray, y_val: np.ndarray,
                      mirror_sizes: tuple[int, ...] = ()) -> tuple[int, bool, dict[str, float]]:
    """(net input px, mirror averaging?, val accuracy of every choice): the best on the validation part.

    After progressive resizing the net is not always best at 48 px (the shipped one did better at
    36); the deployed graph keeps a 48 px input and resizes inside (bilinear: a TFLite builtin).
    Mirror averaging is scored (and logged) at every size but chosen only at ``mirror_sizes``: it
    runs the net twice, 2.3-4.1 ms per face here for the 24-48-96-192 net
    against the 2 ms budget (one pass: 1.0-1.5 ms at 36-44 px); a narrower net fits it at 36 px.

    BatchNorm statistics stay as measured at the training resolution (40 px, area-resized).
    Re-measuring them per deployed size on bilinear-resized images (as the graph resizes) was
    tried and lost validation accuracy (1.2.0 at 36 px: 63.7% -> 62.4%).
    """
    tf = import_tensorflow()

    scores: dict[str, float] = {}
    best = (-1.0, FACE_INPUT_SIZE, False)
    for size in DEPLOY_SIZES:
        xs = x_val if size == FACE_INPUT_SIZE else tf.image.resize(x_val, (size, size), method="bilinear").numpy()
        p = net.predict(xs, verbose=0, batch_size=256)
        pm = net.predict(xs[:, :, ::-1], verbose=0, batch_size=256)
        for mirror, probs in ((False, p), (True, p + pm)):
            acc = float(np.mean(np.argmax(probs, axis=1) == y_val))
            scores[f"{size}px{' mirror' if mirror else ''}"] = round(acc, 4)
            if acc > best[0] + 1e-9 and (not mirror or size in mirror_sizes):
                best = (acc, size, mirror)
    log.info("validation accuracy by deployment choice: %s; chosen %d px%s", scores, best[1],
             " with mirror averaging" if best[2] else "")
    return best[1], best[2], scores


def _snapshot_mean_callback(start_weights: list[np.ndarray], skip_epochs: int = 0) -> Any:
    """A Keras callback holding the running mean of ``start_weights`` and the weights at every epoch's end.

    With ``skip_epochs`` > 0 the start and the first ``skip_epochs`` epoch ends are left out (a
    narrowed start is no point of the basin the restart settles in).
    """
    tf = import_tensorflow()

    class SnapshotMean(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            with_start = not skip_epochs
            self.total = [np.array(w, dtype=np.float64) * with_start for w in start_weights]
            self.count = int(with_start)

        def on_epoch_end(self, epoch, logs=None):  # the restart is one fit from epoch 0
            if epoch < skip_epochs:
                return
            for total, w in zip(self.total, self.model.get_weights()):
                total += w
            self.count += 1

        def mean(self) -> list[np.ndarray]:
            if not self.count:  # the run stopped before any snapshot counted: the net as it is
                return self.model.get_weights()
            return [(total / self.count).astype(np.float32) for total in self.total]

    return SnapshotMean()


def average_snapshots(net: Any, snapshot_mean: list[np.ndarray], x_train: np.ndarray, seed: int,
                      px: int = RESTART_PX) -> None:
    """Set ``net`` to the mean of the warm restart's snapshots, then recompute BatchNorm statistics.

    Stochastic weight averaging (Izmailov et al. 2018): the snapshots lie in one basin, and their
    mean sits nearer its centre, which generalises better than any one of them (1.2.0, the mean of
    two snapshots, gained 2 points of validation accuracy over either). The averaged net's
    BatchNorm statistics belong to no snapshot, so they are measured anew.
    """
    net.set_weights(snapshot_mean)
    recalibrate_batchnorm(net, x_train, seed, px)


def recalibrate_batchnorm(net: Any, x: np.ndarray, seed: int, px: int,
                          batches: int = BN_RECALIBRATION_BATCHES) -> None:
    """BatchNorm moving statistics := the mean over ``batches`` batches of ``x`` (area-resized to ``px``).

    A cumulative mean, not Keras' moving average: at batch k the momentum is 1 - 1/k.
    """
    tf = import_tensorflow()

    norms = [layer for layer in net.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    order = np.random.default_rng(seed).permutation(len(x))
    n = min(batches, max(1, len(x) // BATCH_SIZE))
    try:
        for k in range(1, n + 1):
            for layer in norms:
                layer.momentum = 1.0 - 1.0 / k
            batch = x[order[(k - 1) * BATCH_SIZE:k * BATCH_SIZE]]
            net(tf.image.resize(batch, (px, px), method="area"), training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


def deployable(net: Any, net_px: int, mirror: bool) -> Any:
    """The graph that ships: 48 px input, bilinear resize to ``net_px`` inside, optional mirror averaging."""
    tf = import_tensorflow()

    inputs = tf.keras.Input((FACE_INPUT_SIZE, FACE_INPUT_SIZE, 1), name="face")
    x = inputs if net_px == FACE_INPUT_SIZE else tf.keras.layers.Resizing(net_px, net_px, "bilinear")(inputs)
    weights = net.get_weights()
    fixed = build_model(widths=widths_of(weights), input_size=net_px)
    fixed.set_weights(weights)
    model = tf.keras.Model(inputs, fixed(x), name="face_fer2013")
    return mirror_averaged(model) if mirror else model


CAMERA_AUGMENTATION = ("brightness +-0.15, contrast +-40%, blur (down to 20-36 px and back) on 30%, "
                       "one grey occluding rectangle of 8-20 px on 25%")


def _augment_fn(seed: int, size: int, camera: bool = False) -> Any:
    """Batch augmentation (flip, rotation 10 deg, zoom 10%, shift 10%), resize to ``size``, one-hot labels.

    ``camera`` adds what a camera does to a face that FER2013's tidy crops lack
    (``CAMERA_AUGMENTATION``): other lighting, defocus and motion blur, and part of the face hidden
    by a hand, hair or glasses.
    """
    tf = import_tensorflow()

    layers = tf.keras.layers
    steps = [
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(10 / 360, fill_mode="reflect", seed=seed + 1),
        layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2),
        layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
    ]
    if camera:
        steps += [layers.RandomBrightness(0.15, value_range=(0.0, 1.0), seed=seed + 4),
                  layers.RandomContrast(0.4, seed=seed + 5)]
    augment = tf.keras.Sequential(steps, name="augment")
    resized = _resized(size)

    def blurred_and_occluded(x):
        n, side = tf.shape(x)[0], FACE_INPUT_SIZE
        low = tf.random.uniform((), 20, 37, dtype=tf.int32, seed=seed + 6)
        soft = tf.image.resize(tf.image.resize(x, (low, low), method="area"), (side, side), method="bilinear")
        x = tf.where(tf.random.uniform((n, 1, 1, 1), seed=seed + 7) < 0.3, soft, x)
        sizes = tf.random.uniform((n, 2), 8, 21, dtype=tf.int32, seed=seed + 8)
        corners = tf.cast(tf.random.uniform((n, 2), seed=seed + 9) * tf.cast(side - sizes, tf.float32), tf.int32)
        grid = tf.range(side)
        rows = (grid[None, :] >= corners[:, :1]) & (grid[None, :] < corners[:, :1] + sizes[:, :1])
        cols = (grid[None, :] >= corners[:, 1:]) & (grid[None, :] < corners[:, 1:] + sizes[:, 1:])
        box = (rows[:, :, None] & cols[:, None, :])[..., None] & (tf.random.uniform((n, 1, 1, 1), seed=seed + 10) < 0.25)
        grey = tf.random.uniform((n, 1, 1, 1), seed=seed + 11)
        return tf.where(box, grey, x)

    def fn(x, y):
        x = tf.clip_by_value(augment(x, training=True), 0.0, 1.0)
        return resized(blurred_and_occluded(x) if camera else x, y)
    return fn


def _resized(size: int) -> Any:
    """(x, y) -> (x area-resized to ``size`` px, y one-hot): the training resolution of a phase.

    ``y`` that already holds a probability per class (distillation targets) passes unchanged.
    """
    tf = import_tensorflow()

    def fn(x, y):
        if size != FACE_INPUT_SIZE:
            x = tf.image.resize(x, (size, size), method="area")
        return x, (y if len(y.shape) == 2 else tf.one_hot(y, len(FER_LABELS)))
    return fn


def _datasets(x_train, y_train, x_val, y_val, seed: int, size: int = FACE_INPUT_SIZE,
              camera: bool = False) -> tuple[Any, Any]:
    tf = import_tensorflow()

    train = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
             .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
             .batch(BATCH_SIZE).map(_augment_fn(seed, size, camera), num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    val = (tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(256)
           .map(_resized(size)).cache().prefetch(tf.data.AUTOTUNE))
    return train, val


def resolution_phases(epochs: int) -> list[tuple[int, int]]:
    """[(input px, epochs), ...]: progressive resizing, most epochs at low resolution, the last at 48 px.

    Low-resolution epochs cost a third of full-resolution ones and teach most of what the net
    learns; the final 48 px epochs adapt it (and its BatchNorm statistics) to the deployed input.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    phases = []
    left = epochs
    for size, share in RESOLUTION_SCHEDULE[:-1]:
        n = max(0, min(int(round(epochs * share)), left - 1))  # the 48 px phase always gets one
        phases.append((size, n))
        left -= n
    phases.append((RESOLUTION_SCHEDULE[-1][0], left))
    return [(size, n) for size, n in phases if n > 0]


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {label: float(np.mean(y_pred[y_true == c] == c)) if np.any(y_true == c) else float("nan")
            for c, label in enumerate(FER_LABELS)}


# ---------------------------------------------------------------------------------- train

def _trained_weights(path: Path, flag: str = "--init-from") -> list[np.ndarray]:
    """The net's weights from a previous run's ``face.keras`` (the deployable graph: same weights, any wrapper)
    or a shipped float export (``weights_from_tflite``).

    A bad file is one line naming ``flag``, the option that gave it.
    """
    tf = import_tensorflow()

    if not path.is_file():
        raise DatasetError(f"train face: {flag} {path}: no such file")
    if path.suffix == ".tflite":
        weights = weights_from_tflite(path, flag)  # BatchNorm folded: unfold_batchnorm once the data is loaded
    else:
        try:
            weights = tf.keras.models.load_model(path, compile=False).get_weights()
        except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one line
            raise DatasetError(f"train face: {flag} {path}: not a Keras model ({exc.__class__.__name__})") from exc
    widths = widths_of(weights)
    expected = [w.shape for w in build_model(widths=widths, input_size=None).get_weights()] if widths else None
    if [w.shape for w in weights] != expected:
        raise DatasetError(f"train face: {flag} {path}: not a face net (stages of two 3x3 convs, GAP, 7 classes)")
    return weights


BATCHNORM_EPSILON = 1e-3  # Keras' default, which build_model keeps


def weights_from_tflite(path: Path, flag: str = "--init-from") -> list[np.ndarray]:
    """A face net's weights read back from its float TFLite export (``face.float.tflite``).

    The converter folds each BatchNorm into the conv before it (kernel scaled, a bias added), so
    the net comes back with every BatchNorm an identity plus that bias: exact in inference mode,
    but training-mode BatchNorm would re-normalise the conv outputs at once. ``unfold_batchnorm``
    gives such weights statistics before they are trained. This is how a shipped model is
    restarted when its Keras file was not kept (1.4.0's was not).
    """
    from edge.models import open_interpreter  # noqa: PLC0415

    try:
        interpreter, _ = open_interpreter(Path(path), label=f"train face: {flag} {path}")
        ops = interpreter._get_ops_details()  # noqa: SLF001 - the public API has no op list
        convs = [op for op in ops if op["op_name"] == "CONV_2D"]
        dense = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
        weights: list[np.ndarray] = []
        for op in convs:
            kernel = interpreter.get_tensor(op["inputs"][1])  # (out, h, w, in) -> Keras' (h, w, in, out)
            bias = interpreter.get_tensor(op["inputs"][2])
            if kernel.dtype != np.float32:
                raise ValueError("an int8 model (use the float export, face.float.tflite)")
            weights += [kernel.transpose(1, 2, 3, 0).copy(), np.ones_like(bias), bias.copy(),
                        np.zeros_like(bias), np.full_like(bias, 1.0 - BATCHNORM_EPSILON)]
        weights += [interpreter.get_tensor(dense[-1]["inputs"][1]).T.copy(),
                    interpreter.get_tensor(dense[-1]["inputs"][2]).copy()]
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one line
        detail = str(exc) if isinstance(exc, ValueError) else exc.__class__.__name__
        raise DatasetError(f"train face: {flag} {path}: not a float face model ({detail})") from exc
    return weights


def unfold_batchnorm(weights: list[np.ndarray], x: np.ndarray, px: int, seed: int,
                     n_images: int = 4096) -> list[np.ndarray]:
    """``weights_from_tflite``'s identity BatchNorms given the statistics of their conv outputs.

    Each conv's output z is measured on ``n_images`` of ``x`` (area-resized to ``px``); the
    BatchNorm then holds mean m and variance v of z, scale sqrt(v + eps) and shift m + bias, so
    it still computes z + bias in inference mode and about the same in training mode, where it
    normalises by the batch's own statistics.
    """
    tf = import_tensorflow()

    net = build_model(widths=widths_of(weights), input_size=None)
    net.set_weights(weights)
    convs = [layer.output for layer in net.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    probe = tf.keras.Model(net.input, convs)
    pick = np.random.default_rng(seed).permutation(len(x))[:n_images]
    sums = [np.zeros(int(z.shape[-1])) for z in convs]
    squares = [np.zeros(int(z.shape[-1])) for z in convs]
    pixels = [0] * len(convs)
    for start in range(0, len(pick), 256):
        batch = tf.image.resize(x[np.sort(pick[start:start + 256])], (px, px), method="area")
        for k, z in enumerate(probe(batch, training=False)):
            z = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
            sums[k] += z.sum(axis=0)
            squares[k] += (z * z).sum(axis=0)
            pixels[k] += len(z)
    out = [w.copy() for w in weights]
    for k in range(len(convs)):
        mean = sums[k] / pixels[k]
        var = np.maximum(squares[k] / pixels[k] - mean * mean, 0.0)
        bias = weights[5 * k + 2]
        out[5 * k + 1:5 * k + 5] = [np.sqrt(var + BATCHNORM_EPSILON).astype(np.float32),
                                    (mean + bias).astype(np.float32), mean.astype(np.float32), var.astype(np.float32)]
    return out


def _provenance(init_from: Path | None) -> dict[str, Any] | None:
    """What a warm restart started from: the file, its sha256 and, if beside it, that run's training record."""
    if not init_from:
        return None
    path = Path(init_from)
    record: dict[str, Any] = {"file": path.name, "sha256": sha256_of(path)}
    for name in ("face.json", "face.draft.json"):
        if (path.parent / name).is_file():
            record["training"] = one_level(json.loads((path.parent / name).read_text()).get("training"))
            break
    return record


def one_level(training: dict[str, Any] | None) -> dict[str, Any] | None:
    """A training record whose own sources (start, teachers) keep only file and sha256.

    Each record names its sources with theirs, so nesting them whole grows with every generation
    of distillation (a 3 MB manifest by the seventh); one level and the sha256 chain are enough.
    """
    def named(source: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in source.items() if k != "training"}

    if not training:
        return training
    out = dict(training)
    if isinstance(out.get("init_from"), dict):
        out["init_from"] = named(out["init_from"])
    if isinstance(out.get("distillation"), dict):
        out["distillation"] = dict(out["distillation"],
                                   teachers=[named(t) for t in out["distillation"].get("teachers", [])])
    return out


def teacher_probabilities(teachers: list[list[np.ndarray]], parts: list[np.ndarray], x_bn: np.ndarray, seed: int,
                          px: int = RESTART_PX) -> list[np.ndarray]:
    """The teachers' mean probabilities for each array of images in ``parts``: offline distillation.

    Each teacher (a previous run's net weights, as ``_trained_weights`` reads them; BatchNorm
    re-measured on ``x_bn`` at ``px``) scores every image and its mirror image at ``px``; the
    ensemble's mean probability (Hinton et al. 2015)
    carries what one label cannot: how much a face also looks like the neighbouring classes. The
    teachers run once, on the unaugmented images (the augmentations keep the expression), so
    training costs what it did without them, and the student stays one pass at deployment.
    """
    tf = import_tensorflow()

    resized = [tf.image.resize(x, (px, px), method="area").numpy() for x in parts]
    probs = [np.zeros((len(x), len(FER_LABELS)), dtype=np.float64) for x in parts]
    for weights in teachers:
        net = build_model(widths=widths_of(weights), input_size=None)
        net.set_weights(weights)
        recalibrate_batchnorm(net, x_bn, seed, px)
        for xs, total in zip(resized, probs):
            total += net.predict(xs, verbose=0, batch_size=256) + net.predict(xs[:, :, ::-1], verbose=0, batch_size=256)
    return [(total / (2 * len(teachers))).astype(np.float32) for total in probs]


def _time_limit_callback_class() -> Any:
    tf = import_tensorflow()

    class TimeLimit(tf.keras.callbacks.Callback):
        """Stop after the epoch that crosses ``limit_s`` (a shared CPU must not be held for hours)."""

        def __init__(self, limit_s: float):
            super().__init__()
            self.limit_s = limit_s
            self.t0 = time.monotonic()
            self.stopped = False

        def on_epoch_begin(self, epoch, logs=None):
            self._pace_t0 = None

        def on_train_batch_end(self, batch, logs=None):
            if batch == 20:  # early pace report, so a too-slow run can be cut short
                self._pace_t0 = time.monotonic()
            elif batch == 100 and self._pace_t0 is not None:
                per_step = (time.monotonic() - self._pace_t0) / 80
                log.info("pace: %.0f ms/step, about %.0f s/epoch", per_step * 1e3,
                         per_step * (self.params.get("steps") or 0))

        def on_epoch_end(self, epoch, logs=None):
            if time.monotonic() - self.t0 > self.limit_s:
                log.warning("time limit %.0f min reached after epoch %d; stopping", self.limit_s / 60, epoch + 1)
                self.model.stop_training = True
                self.stopped = True

    return TimeLimit


def _TimeLimit(limit_s: float) -> Any:  # noqa: N802 - reads as the class it builds
    return _time_limit_callback_class()(limit_s)


def train(kind: str, path: Path, out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train, quantize and score the face model; write the bundle and int8 model into ``out_dir``."""
    if kind != "fer2013":
        raise DatasetError(f"train face: dataset kind {kind!r} not supported (use fer2013:DIR)")
    list_fer2013(path)  # a bad layout fails here, in one line, before TensorFlow is loaded
    tf = import_tensorflow()

    from edge.tools import metrics
    from edge.tools.quantize import save_training_bundle, write_bundle
    from edge.tools.seen_images import write_seen

    out_dir = Path(out_dir)
    seed = int(getattr(args, "seed", 0) or 0)
    init_from = getattr(args, "init_from", None)
    epochs = int(getattr(args, "epochs", None) or (RESTART_EPOCHS if init_from else DEFAULT_EPOCHS))
    peak_lr = float(getattr(args, "peak_lr", None) or (RESTART_PEAK_LR if init_from else PEAK_LR))
    tf.keras.utils.set_random_seed(seed)
    t_start = time.monotonic()

    start_weights = _trained_weights(Path(init_from)) if init_from else None  # a bad file fails before the data loads
    start_widths = widths_of(start_weights) if start_weights is not None else None
    widths = tuple(getattr(args, "widths", None) or start_widths or DEFAULT_WIDTHS)
    narrowed_from = None
    if start_widths is not None and widths != start_widths:
        narrowed_from = start_widths
        if Path(init_from).suffix == ".tflite":  # its BatchNorm scales are folded away: nothing to rank channels by
            raise DatasetError(f"train face: --widths cannot narrow a .tflite start ({init_from}); use its face.keras")
        try:
            start_weights = narrowed(start_weights, widths)
        except ValueError as exc:
            raise DatasetError(f"train face: --widths {','.join(map(str, widths))}: {exc} (--init-from {init_from})") from exc
    mirror_px = tuple(getattr(args, "mirror_px", None) or ())
    restart_px = int(getattr(args, "restart_px", None) or RESTART_PX)
    teachers = list(getattr(args, "teachers", None) or [])
    teacher_weights = [_trained_weights(Path(teacher), "--teacher") for teacher in teachers]  # likewise
    x, y, paths = load_fer2013(path, cache_dir=out_dir / "cache")
    i_train, i_val, i_test = stratified_split(y, seed=SPLIT_SEED)
    i_train, copies_dropped = drop_copies(x, i_train, np.concatenate([i_val, i_test]))
    log.info("dropped %d training images pixel-identical to a validation or test image", copies_dropped)
    if init_from and Path(init_from).suffix == ".tflite":
        start_weights = unfold_batchnorm(start_weights, x[i_train], restart_px, seed)
    teacher_weights = [unfold_batchnorm(w, x[i_train], restart_px, seed) if Path(t).suffix == ".tflite" else w
                       for w, t in zip(teacher_weights, teachers)]
    out_dir.mkdir(parents=True, exist_ok=True)
    # what the net saw (train and val parts), so `models evaluate` can say when it is shown them again
    seen_images = write_seen(out_dir, "face", [paths[i] for i in np.concatenate([i_train, i_val])])
    log.info("fer2013 %s: %d images; train %d, val %d, test %d (stratified, seed %d)",
             path, len(y), len(i_train), len(i_val), len(i_test), SPLIT_SEED)

    y_fit = y[i_train]
    teacher_val = None
    if teachers:
        p_train, p_val = teacher_probabilities(teacher_weights, [x[i_train], x[i_val]], x[i_train], seed,
                                               px=restart_px)
        y_fit = DISTILL_WEIGHT * p_train + (1 - DISTILL_WEIGHT) * np.eye(len(FER_LABELS), dtype=np.float32)[y[i_train]]
        teacher_val = round(float(np.mean(np.argmax(p_val, axis=1) == y[i_val])), 4)
        log.info("distilling from %d teacher(s) (weight %.2f); their mirror-averaged val accuracy at %d px: %.4f",
                 len(teachers), DISTILL_WEIGHT, restart_px, teacher_val)

    x_fit = x[i_train]
    camera = bool(getattr(args, "camera_crops", False))
    camera_record = None
    if camera:  # each face once more as the camera path cuts it, with its clean image's target
        crops, source = camera_crops(x[i_train], CAMERA_CROP_SEED + seed, cache_dir=out_dir / "cache")
        x_fit, y_fit = np.concatenate([x_fit, crops]), np.concatenate([y_fit, y_fit[source]])
        camera_record = {"crops": int(len(source)), "of_faces": int(len(i_train)), "framing_seed": CAMERA_CROP_SEED + seed,
                         "path": "edge.tools.face_framing.framed_face, then FaceEstimator.face_crop (default config)",
                         "targets": "the clean image's (label and teachers' probabilities)",
                         "augmentation": CAMERA_AUGMENTATION}

    # trained resolution-free (progressive resizing), exported at 48 px with the same weights
    model = build_model(widths=widths, input_size=None)
    if init_from:
        model.set_weights(start_weights)
        log.info("warm restart from %s%s", init_from,
                 f", narrowed from widths {narrowed_from} to {widths}" if narrowed_from else "")
    steps_per_epoch = int(np.ceil(len(x_fit) / BATCH_SIZE))
    warmup = steps_per_epoch
    # one warm-up epoch, then cosine to 0 (from scratch) or constant (a warm restart: SWA samples the basin)
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        peak_lr / 10, decay_steps=max(1, epochs * steps_per_epoch - warmup),
        warmup_target=peak_lr, warmup_steps=warmup, alpha=1.0 if init_from else 0.0)
    model.compile(optimizer=tf.keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY),
                  loss=tf.keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING),
                  metrics=["accuracy"], jit_compile=True)
    model.summary(print_fn=log.info)
    time_limit_min = float(getattr(args, "time_limit_min", None) or TIME_LIMIT_MIN)
    out_dir.mkdir(parents=True, exist_ok=True)
    time_limit = _TimeLimit(time_limit_min * 60.0)
    csv_log = tf.keras.callbacks.CSVLogger(str(out_dir / "face.history.csv"), append=True)
    (out_dir / "face.history.csv").unlink(missing_ok=True)
    phases = [(restart_px, epochs)] if init_from else resolution_phases(epochs)
    callbacks = [csv_log, time_limit]
    if init_from:
        snapshots = _snapshot_mean_callback(start_weights, NARROWED_SKIP_EPOCHS if narrowed_from else 0)
        callbacks.append(snapshots)
    log.info("schedule: %s epochs at px (%d epochs), %d steps each, AdamW peak %.1e",
             " + ".join(f"{n}@{size}" for size, n in phases), epochs, steps_per_epoch, peak_lr)
    val_accuracy: list[float] = []
    epoch = 0
    for size, n in phases:
        if time_limit.stopped:
            break
        train_ds, val_ds = _datasets(x_fit, y_fit, x[i_val], y[i_val], seed + epoch, size, camera)
        history = model.fit(train_ds, validation_data=val_ds, initial_epoch=epoch, epochs=epoch + n,
                            verbose=2, callbacks=callbacks)
        val_accuracy += list(history.history["val_accuracy"])
        epoch += len(history.history["loss"])
    epochs_run = epoch
    best_epoch = int(np.argmax(val_accuracy)) + 1
    train_minutes = (time.monotonic() - t_start) / 60.0
    restart_val_choices = None
    if init_from:  # the warm restart's end, then the mean of all its snapshots (see average_snapshots)
        restart_val_choices = choose_deployment(model, x[i_val], y[i_val])[2]
        average_snapshots(model, snapshots.mean(), x_fit, seed, px=restart_px)
    net_px, mirror, val_choices = choose_deployment(model, x[i_val], y[i_val], mirror_sizes=mirror_px)
    model = deployable(model, net_px, mirror)

    draft: dict[str, Any] = {
        "name": "face",
        "version": MODEL_VERSION,
        "task": "classification",
        "labels": list(FER_LABELS),
        "input": {"shape": [1, FACE_INPUT_SIZE, FACE_INPUT_SIZE, 1], "range": [0.0, 1.0],
                  "features": "edge.features.face.face_input"},
        "outputs": [{"name": label, "index": i, "range": [0.0, 1.0], "meaning": f"probability of {label}"}
                    for i, label in enumerate(FER_LABELS)],
        "preprocessing": {"features": "edge.features.face.face_input", "input_size": [FACE_INPUT_SIZE, FACE_INPUT_SIZE],
                          "scale": "1/255",
                          "detector": ("face.detector: blazeface (face_detector.tflite, crop "
                                       "edge.features.face.blazeface_crop) or haar (opencv haar "
                                       "frontalface_default, box + FACE_MARGIN_FRAC)"),
                          "in_graph": (f"bilinear resize 48 -> {net_px} px" if net_px != FACE_INPUT_SIZE else "none")
                          + ("; face and mirror image scored, probabilities averaged" if mirror else "")},
        "training": {
            "data": f"FER2013 train folders ({path.name}), {len(y)} images",
            "split": (f"stratified per class, seed {SPLIT_SEED}: {1 - VAL_FRAC - TEST_FRAC:.0%} train / "
                      f"{VAL_FRAC:.0%} val (chooses the deployed input size and whether the run ships) / "
                      f"{TEST_FRAC:.0%} test (scored after those choices; the card counts how often it was read); "
                      "FER2013 has no subject IDs, so identity leakage between parts cannot be excluded"),
            "subjects_train": None, "subjects_test": None, "seen_images": seen_images,
            "duplicates_dropped_from_train": copies_dropped, "camera_crops": camera_record,
            "seed": seed, "n_train": int(len(i_train)), "n_val": int(len(i_val)), "n_test": int(len(i_test)),
            "epochs": epochs_run, "epochs_planned": epochs, "best_epoch": best_epoch,
            "params": int(model.count_params()), "widths": list(widths),
            "narrowed_from_widths": list(narrowed_from) if narrowed_from else None, "batch_size": BATCH_SIZE,
            "resolution_phases": [[size, n] for size, n in phases], "net_px": net_px, "mirror_average": mirror,
            "val_accuracy_by_choice": val_choices, "init_from": _provenance(init_from),
            "distillation": ({"teachers": [_provenance(t) for t in teachers], "weight": DISTILL_WEIGHT,
                              "targets": f"teachers' mean of face and mirror probabilities at {restart_px} px, "
                              "BatchNorm re-measured; mixed with the label",
                              "teacher_val_accuracy": teacher_val} if teachers else None),
            "snapshot_averaging": ({"of": (f"the end of each of epochs {NARROWED_SKIP_EPOCHS + 1}-{epochs_run} of the warm "
                                           "restart (the narrowed start and the recovering epochs left out)"
                                           if narrowed_from else
                                           f"start and the end of each of {epochs_run} epochs of the warm restart"),
                                    "snapshots": snapshots.count,
                                    "batchnorm_recalibrated_at_px": restart_px,
                                    "batchnorm_batches": BN_RECALIBRATION_BATCHES,
                                    "val_accuracy_by_choice_before": restart_val_choices} if init_from else None),
            "optimizer": f"AdamW peak {peak_lr:g}, "
            f"weight decay {WEIGHT_DECAY:g}, 1 warm-up epoch then {'constant' if init_from else 'cosine to 0'}", "label_smoothing": LABEL_SMOOTHING,
            "augmentation": "flip, rotation 10 deg, zoom 10%, shift 10%" + (f"; {CAMERA_AUGMENTATION}" if camera else ""),
            "class_weights": None,
            "time_limit_min": time_limit_min, "stopped_by_time_limit": time_limit.stopped,
            "train_minutes": round(train_minutes, 1),
        },
    }
    rng = np.random.default_rng(seed)
    x_calib = x[i_train][rng.choice(len(i_train), size=min(500, len(i_train)), replace=False)]
    x_test, y_test = x[i_test], y[i_test]
    save_training_bundle(out_dir, "face", model, draft, x_calib, x_test, y_test)
    manifest = write_bundle(out_dir, "face", model, draft, x_calib, x_test, y_test, report=log.info)

    # per-class recall of both variants on the held-out test part, into the manifest and the log
    from edge.models import TFLiteModel

    test_metrics: dict[str, Any] = {}
    for variant in ("float", "int8"):
        probs = TFLiteModel(out_dir / "face.tflite", variant=variant).predict_batch(x_test)
        pred = np.argmax(probs, axis=1)
        test_metrics[variant] = dict(metrics.classification_metrics(y_test, probs),
                                     per_class_recall=per_class_recall(y_test, pred))
        log.info("held-out test, %s: accuracy %.4f, macro-F1 %.4f", variant,
                 test_metrics[variant]["accuracy"], test_metrics[variant]["macro_f1"])
    manifest.setdefault("metrics", {})["heldout_test"] = test_metrics
    manifest["metrics"]["val_accuracy_best"] = float(max(val_accuracy))
    (out_dir / "face.json").write_text(json.dumps(manifest, indent=2))
    return manifest
