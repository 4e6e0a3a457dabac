"""``emotion-edge evaluate states --dataset stress-predict:DIR|fer2013:DIR [--json]``: do the states mean what they say?

The published *states* (not the per-modality models) are scored against real labels. Everything
runs through the daemon's own code: its sources (``replay:e4:``, ``camera:``), model loading
(``edge.daemon.load_estimators``) and ``edge.daemon.Pipeline`` (windows, estimators, fusion,
smoothing, labels), fed block by block as fast as the CPU allows; only the MQTT publisher is left
out. Labels and values are read from the state payloads as a subscriber receives them; a null
value counts as missing.

Stress-Predict (``stress-predict:DIR``, the study's layout, see ``edge.tools.stress_predict``):
each subject under ``Raw_data`` is replayed on its own clock with fresh estimators (a new wearer),
and every state is matched with the study's per-second label (0 rest, 1 stress task) of the
second it was published for. Per subject and overall:

- ``rest_negative``: share of the states in rest seconds labelled ``stressed``, ``tense`` or ``sad``;
- ``stress_hit``: share of the states in stress seconds labelled ``stressed`` or ``tense``;
- ``uncertain_share``: share of the states in labelled seconds labelled ``uncertain``;
- ``flips_per_10min``: label changes between consecutive states, per 10 minutes of states;
- ``stress_auroc``: AUROC of the states' ``stress`` against the labels, within one subject
  (overall: the mean over subjects).

Overall shares and flips pool every subject's states (each subject weighs by its duration).

Models: the shipped eda and cardiac models were trained on S02-S27. A subject a shipped model was
trained on is scored with a *fold model* that never saw it: the fold of the shipped model's own
subject-wise cross-validation (manifest ``training.cv_folds``) holding that subject out, trained
by the shipped trainer's code (``edge.tools.train_physio``: same features, inputs, network,
epochs and seed) on the other subjects, quantized int8 as shipped, and cached (``--cache``).
Other subjects use the shipped models. ``--models shipped`` uses the shipped models throughout
(flattered figures where they trained on the subject; the output says so).

FER2013 (``fer2013:DIR``, ``DIR/<class>/*.jpg``): faces are drawn into a video, each pasted into
a 320x240 camera-like frame at a seeded random size (80-160 px), place and background
(``edge.tools.face_framing``) and held ``--hold-s`` seconds, long enough for the smoothing to
settle; the daemon's camera source plays it into the pipeline: detector, crop, face model,
fusion, smoothing. Each face's settled label (the last state before the next face) is compared
with the expression's place on the circumplex (``AGREEING_LABELS``). The same decoded frames also
go through the daemon's detector-and-crop path alone (``FaceEstimator.score_frame``), beside the
model on the FER crop itself: the detector's hit rate and the accuracy of both paths. On the face
model's own training folder only its held-out test part is used (``--split auto``), without the
images that are pixel-identical to one of its training or validation images; any other folder is
used whole.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from edge.errors import DatasetError

log = logging.getLogger(__name__)

NEGATIVE_LABELS = frozenset({"stressed", "tense", "sad"})  # rest_negative counts these in rest seconds
STRESS_LABELS = frozenset({"stressed", "tense"})  # stress_hit counts these in stress seconds
UNCERTAIN_LABEL = "uncertain"
# Where each FER2013 expression sits on the circumplex, as the labels that agree with it.
AGREEING_LABELS: dict[str, frozenset[str]] = {
    "happy": frozenset({"happy", "excited"}),
    "sad": frozenset({"sad"}),
    "angry": frozenset({"tense", "stressed"}),
    "fear": frozenset({"tense", "stressed"}),
    "disgust": frozenset({"tense", "stressed"}),
    "surprise": frozenset({"excited", "tense"}),
    "neutral": frozenset({"neutral", "calm"}),
}
FIGURES = ("rest_negative", "stress_hit", "uncertain_share", "flips_per_10min", "stress_auroc")
CONTIGUOUS_HOPS = 2.5  # consecutive states further apart than this many fusion hops: a gap, not a flip
FACE_T0_UNIX = 1_700_000_000.0  # the face video's clock (any fixed time: states are matched by it)
FACE_FRAMING_SEED = 0  # the faces' random size, place and background (edge.tools.face_framing)
DEFAULT_HOLD_S = 60.0
DEFAULT_FPS = 1.0  # a face window (1 s) then holds one or two frames: identical frames add cost, not information
PHYSIO = ("eda", "cardiac")
# The stress threshold sweep: how the states' fused `stress` alone separates rest from task seconds.
SWEEP_BINS = 100  # histogram of stress values in [0, 1], bins of 0.01
SWEEP_STEP = 0.05  # thresholds listed in the JSON's threshold_sweep
REST_NEGATIVE_TARGET = 0.15  # issue 14's rest_negative target: the sweep's best threshold stays within it
# label_confidence bands of the calibration tables: does a surer label agree more often?
CONFIDENCE_BANDS = (0.0, 0.15, 0.3, 0.45, 0.6, 1.0)


# ------------------------------------------------------------------------------------ the CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["states"], help="states: score the published states against real labels")
    parser.add_argument("--dataset", required=True, metavar="KIND:DIR",
                        help="stress-predict:DIR (Raw_data/SXX + Processed_data labels) or fer2013:DIR (DIR/<class>/*.jpg)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (null where not computable)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="daemon config whose [fusion], [windows], [face] ... are evaluated (default: built-in)")
    parser.add_argument("--subjects", default=None, metavar="S02,S03",
                        help="stress-predict: only these subjects (default: every labelled subject)")
    parser.add_argument("--models", choices=["auto", "shipped"], default="auto",
                        help="stress-predict: auto = fold models for subjects the shipped models trained on, "
                             "shipped = the shipped models throughout (flattered on their training subjects)")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="where fold models and features are kept (default: ~/.cache/emotion-edge/evaluate-states)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="stress-predict: fold models' training epochs (default: the shipped model's)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="fer2013: at most N faces per class")
    parser.add_argument("--split", choices=["auto", "test", "val", "all"], default="auto",
                        help="fer2013: which faces (auto: the held-out test part of the face model's own training "
                             "folder, else all)")
    parser.add_argument("--hold-s", type=float, default=DEFAULT_HOLD_S, dest="hold_s", metavar="SECONDS",
                        help=f"fer2013: how long each face is held in the video (default {DEFAULT_HOLD_S:g})")


def main(args: argparse.Namespace) -> int:
    from edge.tools.train import parse_dataset  # noqa: PLC0415

    kind, path = parse_dataset(args.dataset)
    if not getattr(args, "verbose", 0):  # per-stream, per-model and "no face in view" lines, once per subject or face: noise here
        for name, level in (("edge.daemon", logging.ERROR), ("firmware_bridge", logging.WARNING),
                            ("edge.tools.stress_predict", logging.WARNING)):
            logging.getLogger(name).setLevel(level)
    config = evaluation_config(args.config)
    if kind == "stress-predict":
        subjects = [s.strip() for s in args.subjects.split(",") if s.strip()] if args.subjects else None
        report = evaluate_stress_predict(path, config, subjects=subjects, models=args.models,
                                         cache_dir=args.cache or default_cache_dir(), epochs=args.epochs)
        print(json.dumps(report, indent=2, allow_nan=False) if args.json else format_stress_report(report))
    elif kind == "fer2013":
        if args.limit is not None and args.limit < 1:
            raise DatasetError(f"--limit {args.limit}: must be at least 1 face per class")
        if not args.hold_s > 0:
            raise DatasetError(f"--hold-s {args.hold_s:g}: must be > 0 s")
        report = evaluate_faces(path, config, limit=args.limit, split=args.split, hold_s=args.hold_s)
        print(json.dumps(report, indent=2, allow_nan=False) if args.json else format_face_report(report))
    else:
        raise DatasetError(f"evaluate states: dataset kind {kind!r} not supported (known: stress-predict, fer2013)")
    return 0


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emotion-edge" / "evaluate-states"


def evaluation_config(path: Path | None) -> Any:
    from edge.config import load_config  # noqa: PLC0415

    return load_config(path)  # the daemon's own (defaults, or the file whose [fusion] etc. is evaluated)


# ------------------------------------------------------------------------ driving the pipeline

async def _play(pipeline: Any, source: Any) -> list[dict[str, Any]]:
    """Feed one source's blocks into the pipeline as the daemon's pump does; the state payloads."""
    payloads: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        async for block in source.blocks():
            seen.add(block.stream)
            payloads.extend(item.payload for item in pipeline.ingest(block))
    finally:
        await source.close()
    payloads.extend(item.payload for item in pipeline.end_streams(sorted(seen | set(getattr(source, "streams", ())))))
    payloads.extend(item.payload for item in pipeline.finish())
    return payloads


def run_pipeline(config: Any, spec: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Replay one source spec through a fresh daemon pipeline as fast as possible: (state payloads, model versions).

    The daemon's own model loading (``config.models.dir``, sha256 checks) and source opening; no
    broker. Raises DatasetError naming the spec when it cannot run.
    """
    from edge.daemon import Pipeline, load_estimators, open_sources  # noqa: PLC0415
    from edge.stream import STREAM_TO_MODALITY  # noqa: PLC0415

    estimators, reasons = load_estimators(config)
    if not estimators:
        raise DatasetError(f"evaluate states: no model could be loaded ({'; '.join(f'{k}: {v}' for k, v in reasons.items())})")
    sources, failed = open_sources((spec,), None)
    if failed:
        raise DatasetError(f"evaluate states: {next(iter(failed.values()))}")
    source = sources[0]
    expected = {STREAM_TO_MODALITY[s] for s in source.streams if s in STREAM_TO_MODALITY} & set(config.daemon.modalities)
    pipeline = Pipeline(config, estimators, expected, reasons)
    payloads = asyncio.run(_play(pipeline, source))
    return payloads, pipeline.models()


def _number(value: Any) -> float | None:
    """A payload value as a float, or None where it is null/absent/not finite (missing)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------------------- figures

def second_labels(ts_unix: np.ndarray, label_times_unix: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The study's label of the second each time falls in (-1 where that second is not labelled)."""
    idx = np.searchsorted(label_times_unix, ts_unix, side="right") - 1
    ok = (idx >= 0) & (ts_unix - label_times_unix[np.clip(idx, 0, None)] < 1.0) if len(label_times_unix) else \
        np.zeros(len(ts_unix), bool)
    out = np.full(len(ts_unix), -1, np.int8)
    out[ok] = labels[idx[ok]]
    return out


def state_counts(states: Iterable[Mapping[str, Any]], label_times_unix: np.ndarray, labels: np.ndarray,
                 hop_s: float) -> dict[str, Any]:
    """The counts behind the figures for one subject's states (time-ordered payloads)."""
    states = sorted(states, key=lambda s: float(s["ts"]))
    ts = np.array([float(s["ts"]) for s in states], np.float64)
    names = [s.get("label") for s in states]
    stress = np.array([np.nan if _number(s.get("stress")) is None else _number(s.get("stress")) for s in states],
                      np.float64)
    y = second_labels(ts, np.asarray(label_times_unix, np.float64), np.asarray(labels))
    rest, task = y == 0, y == 1
    scored = rest | task
    flips, span_s = 0, 0.0
    kept = np.flatnonzero(scored)
    for a, b in zip(kept[:-1], kept[1:]):
        gap = ts[b] - ts[a]
        if b == a + 1 and gap <= CONTIGUOUS_HOPS * hop_s:
            span_s += gap
            flips += names[a] != names[b]
    has_stress = scored & np.isfinite(stress)
    # label_confidence against the study's labels: a label agrees when it says stress (stressed/tense)
    # in a task second, or anything else but uncertain in a rest second
    labelled = [i for i in kept if names[i] not in (None, UNCERTAIN_LABEL)]
    confidence = band_counts((_number(states[i].get("label_confidence")) or 0.0 for i in labelled),
                             ((names[i] in STRESS_LABELS) == bool(task[i]) for i in labelled))
    from edge.tools.metrics import auroc  # noqa: PLC0415

    auc = auroc(y[has_stress] == 1, stress[has_stress]) if has_stress.any() else float("nan")
    histogram = {name: np.histogram(np.clip(stress[has_stress & mask], 0.0, 1.0), bins=SWEEP_BINS, range=(0.0, 1.0))[0]
                 .astype(int).tolist() for name, mask in (("rest", rest), ("stress", task))}
    return {
        "states": int(len(states)),
        "states_labelled": int(scored.sum()),
        "rest_states": int(rest.sum()),
        "rest_negative_states": int(sum(1 for i in np.flatnonzero(rest) if names[i] in NEGATIVE_LABELS)),
        "stress_states": int(task.sum()),
        "stress_hit_states": int(sum(1 for i in np.flatnonzero(task) if names[i] in STRESS_LABELS)),
        "uncertain_states": int(sum(1 for i in kept if names[i] == UNCERTAIN_LABEL)),
        "stress_missing_states": int((scored & ~np.isfinite(stress)).sum()),
        "flips": int(flips),
        "span_s": float(span_s),
        "stress_auroc": None if not math.isfinite(auc) else float(auc),
        "labels": _tally(names[i] for i in kept),
        "stress_histogram": histogram,
        "label_confidence_bands": confidence,
    }


def _tally(names: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        key = str(n)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _share(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def figures_of(counts: Mapping[str, Any]) -> dict[str, Any]:
    """The five figures from (summed) counts; None where the data cannot give one."""
    return {
        "rest_negative": _share(counts["rest_negative_states"], counts["rest_states"]),
        "stress_hit": _share(counts["stress_hit_states"], counts["stress_states"]),
        "uncertain_share": _share(counts["uncertain_states"], counts["states_labelled"]),
        "flips_per_10min": None if counts["span_s"] <= 0 else 600.0 * counts["flips"] / counts["span_s"],
        "stress_auroc": counts["stress_auroc"],
    }


def overall_of(per_subject: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Pooled shares and flips over every subject's states; stress_auroc = mean of the subjects' AUROCs."""
    keys = ("states", "states_labelled", "rest_states", "rest_negative_states", "stress_states",
            "stress_hit_states", "uncertain_states", "stress_missing_states", "flips")
    total: dict[str, Any] = {k: sum(int(c[k]) for c in per_subject.values()) for k in keys}
    total["span_s"] = sum(float(c["span_s"]) for c in per_subject.values())
    aucs = [c["stress_auroc"] for c in per_subject.values() if c["stress_auroc"] is not None]
    total["stress_auroc"] = float(np.mean(aucs)) if aucs else None
    total["stress_auroc_subjects"] = len(aucs)
    labels: dict[str, int] = {}
    for c in per_subject.values():
        for k, v in c["labels"].items():
            labels[k] = labels.get(k, 0) + v
    total["labels"] = dict(sorted(labels.items()))
    total["stress_histogram"] = {k: np.sum([c["stress_histogram"][k] for c in per_subject.values()], axis=0).tolist()
                                 for k in ("rest", "stress")}
    bands = {k: np.sum([c["label_confidence_bands"][k] for c in per_subject.values()], axis=0).astype(int).tolist()
             for k in ("n", "agree")} if per_subject else band_counts((), ())
    total["label_confidence_calibration"] = calibration_rows(bands, "states")
    return {**figures_of(total), **total, "threshold_sweep": threshold_sweep(total["stress_histogram"])}


def threshold_sweep(histogram: Mapping[str, list[int]]) -> dict[str, Any]:
    """How far a label read off the fused ``stress`` alone, at one threshold, could go on these states.

    For each threshold t: the share of rest states with stress >= t (what ``rest_negative`` would be
    if ``stressed`` meant exactly that) and the share of task states with stress >= t (``stress_hit``
    likewise). ``best`` is the lowest threshold that keeps the rest share within the
    ``rest_negative`` target, so its stress share is the most any instantaneous threshold on these
    states' stress can give there: a ceiling set by the models, which hysteresis and dwell trade
    against flips rather than raise.
    """
    rest, task = (np.asarray(histogram[k], np.int64) for k in ("rest", "stress"))
    if rest.sum() == 0 or task.sum() == 0:
        return {"thresholds": [], "best": None, "rest_negative_target": REST_NEGATIVE_TARGET}
    at_or_above = {k: np.cumsum(h[::-1])[::-1] / h.sum() for k, h in (("rest", rest), ("stress", task))}

    def point(i: int) -> dict[str, float]:
        return {"threshold": round(i / SWEEP_BINS, 4), "rest_share": float(at_or_above["rest"][i]),
                "stress_share": float(at_or_above["stress"][i])}

    step = int(round(SWEEP_STEP * SWEEP_BINS))
    within = [i for i in range(SWEEP_BINS) if at_or_above["rest"][i] <= REST_NEGATIVE_TARGET]
    return {"thresholds": [point(i) for i in range(0, SWEEP_BINS, step)],
            "best": point(within[0]) if within else None, "rest_negative_target": REST_NEGATIVE_TARGET}


# ------------------------------------------------------------------------- Stress-Predict

def _shipped_manifests() -> dict[str, dict[str, Any]]:
    from edge.models import load_manifest, models_dir  # noqa: PLC0415

    return {m: load_manifest(models_dir() / f"{m}.json") for m in PHYSIO}


def seen_subjects(manifests: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Subjects any shipped physiological model was trained on."""
    out: set[str] = set()
    for manifest in manifests.values():
        out |= set((manifest.get("training") or {}).get("subjects_train") or ())
    return out


def evaluate_stress_predict(root: Path, config: Any, subjects: list[str] | None = None, models: str = "auto",
                            cache_dir: Path | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Replay every (chosen) labelled subject through the daemon pipeline; figures per subject and overall."""
    from edge.config import replace_dotted  # noqa: PLC0415
    from edge.tools import stress_predict as sp  # noqa: PLC0415

    root = Path(root)
    labels = sp.load_labels(root)
    present = sp.raw_subjects(root)
    chosen = [s for s in present if s in labels]
    if subjects is not None:
        unknown = [s for s in subjects if s not in present]
        if unknown:
            raise DatasetError(f"stress-predict {root}: --subjects {','.join(unknown)}: no such Raw_data folder "
                               f"(present: {', '.join(present)})")
        unlabelled = [s for s in subjects if s not in labels]
        if unlabelled:
            raise DatasetError(f"stress-predict {root}: --subjects {','.join(unlabelled)}: no labels in {sp.LABEL_FILE}")
        chosen = [s for s in present if s in subjects]
    if not chosen:
        raise DatasetError(f"stress-predict {root}: no subject in Raw_data has labels in {sp.LABEL_FILE}")
    manifests = _shipped_manifests()
    seen = seen_subjects(manifests)
    fold_dirs: dict[str, tuple[Path, str]] = {}
    if models == "auto" and seen & set(chosen):
        fold_dirs = fold_models(root, [s for s in chosen if s in seen], labels, manifests,
                                Path(cache_dir or default_cache_dir()), epochs)
    base = replace_dotted(config, "daemon.modalities", tuple(m for m in config.daemon.modalities if m in PHYSIO))
    if not base.daemon.modalities:
        raise DatasetError("evaluate states: the config's daemon.modalities hold neither eda nor cardiac")
    per_subject: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for sid in chosen:
        t0 = time.monotonic()
        folder, which = fold_dirs.get(sid, (None, "shipped"))
        cfg = replace_dotted(base, "models.dir", str(folder)) if folder is not None else base
        previous = os.environ.get("EMOTION_EDGE_MODELS_DIR")
        try:
            payloads, versions = run_pipeline(cfg, f"replay:e4:{root / 'Raw_data' / sid}")
        finally:  # load_estimators points the models dir at the fold's; the next subject may want the shipped ones
            if previous is None:
                os.environ.pop("EMOTION_EDGE_MODELS_DIR", None)
            else:
                os.environ["EMOTION_EDGE_MODELS_DIR"] = previous
        times, y = labels[sid]
        c = state_counts(payloads, times, y, config.fusion.hop_s)
        counts[sid] = c
        if which == "shipped":
            which = "shipped, trained on this subject: flattered" if sid in seen else "shipped (never trained on this subject)"
        row = {k: v for k, v in c.items() if k not in ("stress_histogram", "label_confidence_bands")}  # pooled only
        per_subject[sid] = {**figures_of(c), **row, "models": versions, "models_used": which}
        log.info("%s: %d states in %.0f s (%s)", sid, c["states"], time.monotonic() - t0, which)
    flattered = [s for s in chosen if s in seen and s not in fold_dirs]
    return {
        "dataset": "stress-predict",
        "path": str(root),
        "fusion": {k: getattr(config.fusion, k) for k in ("hop_s", "smoothing_tau_s")},
        "models_used": models_summary(manifests, fold_dirs, chosen, seen),
        "flattered_subjects": flattered,
        "subjects": per_subject,
        "overall": overall_of(counts),
    }


def models_summary(manifests: Mapping[str, Mapping[str, Any]], fold_dirs: Mapping[str, tuple[Path, str]],
                   chosen: list[str], seen: set[str]) -> str:
    shipped = ", ".join(f"{m} {manifests[m].get('version', '?')}" for m in PHYSIO)
    parts = []
    if fold_dirs:
        folders = sorted({str(p.parent) for p, _ in fold_dirs.values()})
        parts.append(f"{len(fold_dirs)} subject(s) scored by subject-wise cross-validated fold models (int8, never "
                     f"trained on the subject scored; the shipped models' cv_folds, cached in {', '.join(folders)})")
    unseen = [s for s in chosen if s not in seen]
    if unseen:
        parts.append(f"{len(unseen)} subject(s) the shipped models never saw, scored by the shipped {shipped}")
    flattered = [s for s in chosen if s in seen and s not in fold_dirs]
    if flattered:
        parts.append(f"{len(flattered)} subject(s) scored by the shipped {shipped}, which were trained on them: "
                     f"those figures are flattered")
    return "; ".join(parts)


def _fold_key(manifests: Mapping[str, Mapping[str, Any]], test: list[str], train: list[str], epochs: int,
              seed: int, root: Path) -> str:
    from edge.tools import stress_predict as sp  # noqa: PLC0415

    text = "|".join([manifests["eda"]["sha256"], manifests["cardiac"]["sha256"], ",".join(test), ",".join(train),
                     str(epochs), str(seed), sp._feature_code_version(), str(Path(root).resolve())])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fold_models(root: Path, scored: list[str], labels: Mapping[str, Any], manifests: Mapping[str, Mapping[str, Any]],
                cache_dir: Path, epochs: int | None = None) -> dict[str, tuple[Path, str]]:
    """{subject: (folder with eda/cardiac fold models that never saw it, description)}; trained and cached as needed.

    Folds are the shipped models' own (manifest ``training.cv_folds``); each fold's models train on
    the other subjects the shipped models trained on that are present here, with the trainer's code.
    """
    training = manifests["eda"].get("training") or {}
    seen = sorted(seen_subjects(manifests))
    folds = [list(f) for f in training.get("cv_folds") or []]
    placed = {s for f in folds for s in f}
    folds += [[s] for s in scored if s not in placed]  # a subject outside every listed fold: a fold of its own
    seed = int(training.get("seed", 0) or 0)
    epochs = int(epochs or training.get("epochs") or 40)
    present = [s for s in seen if s in labels and (Path(root) / "Raw_data" / s).is_dir()]
    out: dict[str, tuple[Path, str]] = {}
    tables = None
    for k, fold in enumerate(folds):
        test = sorted(s for s in fold if s in scored)
        if not test:
            continue
        train = [s for s in present if s not in fold]
        if len(train) < 2:
            raise DatasetError(f"stress-predict {root}: a fold model for {', '.join(test)} needs at least 2 other "
                               f"subjects the shipped models trained on; found {len(train)} "
                               f"(use --models shipped to score with the shipped models, flattered)")
        folder = Path(cache_dir) / "folds" / f"fold{k:02d}-{_fold_key(manifests, sorted(fold), train, epochs, seed, root)}"
        if not _fold_cached(folder):
            if tables is None:
                tables = _feature_tables(root, Path(cache_dir) / "features")
            log.info("training fold %d models (held out: %s) on %d subjects, %d epochs", k, ", ".join(fold),
                     len(train), epochs)
            for m in PHYSIO:
                train_fold_model(m, tables, train, sorted(fold), manifests[m], folder, epochs, seed + k)
        for s in test:
            out[s] = (folder, f"cv fold {k} (held out {'+'.join(sorted(fold))}, {epochs} epochs, int8)")
    return out


def _fold_cached(folder: Path) -> bool:
    """Whether ``folder`` holds every fold model whole: a damaged one (a killed run, a full disk) is trained again.

    Each file is checked against its manifest's sha256, as loading it will check it; without this
    a damaged cached model would leave its modality out of every later evaluation, and the figures
    would describe the other modality alone, with only a log line to say so.
    """
    from edge.models import load_manifest, verify_model_file  # noqa: PLC0415

    if not all((folder / f"{m}.json").exists() for m in PHYSIO):
        return False
    for m in PHYSIO:
        try:
            verify_model_file(folder / f"{m}.tflite", load_manifest(folder / f"{m}.json"))
        except Exception as exc:  # noqa: BLE001 - any unusable cached model is rebuilt
            log.warning("cached fold model %s is unusable (%s); training it again", folder / f"{m}.tflite", exc)
            return False
    return True


def _feature_tables(root: Path, cache_dir: Path) -> dict[str, Any]:
    from edge.tools import stress_predict as sp  # noqa: PLC0415

    return {"bvp": sp.load_dataset(root, cache_dir=cache_dir), "ibi": sp.load_dataset(root, cache_dir=cache_dir,
                                                                                        cardiac_source="ibi")}


def train_fold_model(modality: str, tables: Mapping[str, Any], train: list[str], held_out: list[str],
                     shipped: Mapping[str, Any], folder: Path, epochs: int, seed: int) -> dict[str, Any]:
    """One fold's int8 model, trained exactly as the shipped one (``edge.tools.train_physio``) minus the held-out subjects."""
    from edge.features.baseline import trailing_span_s  # noqa: PLC0415
    from edge.tools import train_physio as tp  # noqa: PLC0415
    from edge.tools.quantize import write_bundle  # noqa: PLC0415

    pre = dict(shipped.get("preprocessing") or {})
    span_s = trailing_span_s(pre)
    sources = [tables["bvp"], tables["ibi"]] if modality == "cardiac" else [tables["bvp"]]
    x, y = tp.stack(sources, train, modality, span_s)
    if len(y) == 0 or len(np.unique(y)) < 2:
        raise DatasetError(f"stress-predict: fold model {modality} (held out {', '.join(held_out)}): the training "
                           f"subjects give no usable windows of both classes")
    model, mean, std = tp.fit(x, y, seed, epochs)
    pre["standardize"] = {"mean": mean.tolist(), "std": std.tolist()}
    dropped = {"sha256", "float_sha256", "file", "float_file", "size_bytes", "input_tensor", "output_tensors", "metrics"}
    draft = {k: v for k, v in shipped.items() if k not in dropped}
    draft.update({
        "version": f"{shipped.get('version', '0')}+cv-{'-'.join(held_out)}",
        "preprocessing": pre,
        "training": {**(shipped.get("training") or {}), "subjects_train": list(train), "subjects_test": list(held_out),
                     "epochs": epochs, "seed": seed, "cv_folds": None,
                     "split": f"evaluate states fold model: trained on {len(train)} subjects, "
                              f"held out {', '.join(held_out)}"},
    })
    return write_bundle(Path(folder), modality, model, draft, x, report=log.debug)


def format_stress_report(report: Mapping[str, Any]) -> str:
    lines = [f"evaluate states: stress-predict {report['path']}",
             f"models: {report['models_used']}",
             f"fusion: hop {report['fusion']['hop_s']:g} s, smoothing tau {report['fusion']['smoothing_tau_s']:g} s", ""]
    head = f"{'subject':<9}{'states':>7}" + "".join(f"{f:>{len(f) + 2}}" for f in FIGURES) + "  models"
    lines.append(head)
    for sid, row in report["subjects"].items():
        lines.append(f"{sid:<9}{row['states']:>7}" + "".join(f"{_fmt(row[f]):>{len(f) + 2}}" for f in FIGURES)
                     + f"  {row['models_used']}")
    o = report["overall"]
    lines.append(f"{'overall':<9}{o['states']:>7}" + "".join(f"{_fmt(o[f]):>{len(f) + 2}}" for f in FIGURES)
                 + f"  (stress_auroc: mean of {o['stress_auroc_subjects']} subjects)")
    lines.append("")
    lines.append("labels in labelled seconds: " + ", ".join(f"{k} {v}" for k, v in o["labels"].items()))
    best = o["threshold_sweep"]["best"]
    if best is not None:
        lines.append(f"stress alone, one threshold: at stress >= {best['threshold']:.2f}, {best['rest_share']:.3f} of rest "
                     f"states and {best['stress_share']:.3f} of task states are at or above it (the most stress_hit any "
                     f"threshold gives with rest_negative <= {REST_NEGATIVE_TARGET:g})")
    lines.append(calibration_line(o["label_confidence_calibration"], "states", "the labelled states (stressed/tense "
                                  "in task seconds, any other label in rest seconds)"))
    if report["flattered_subjects"]:
        lines.append(f"FLATTERED: {', '.join(report['flattered_subjects'])} scored by models trained on them")
    return "\n".join(lines)


def calibration_line(rows: list[Mapping[str, Any]], unit: str, what: str) -> str:
    """One line: the agreement of ``what`` in each ``label_confidence`` band (``calibration_rows``) that has any."""
    return f"agreement of {what} by label_confidence: " + (", ".join(
        f"{r['from']:.2f}-{r['to']:.2f} {_fmt(r['agreement'])} (n {r[unit]})" for r in rows if r[unit])
        or "none labelled")


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# -------------------------------------------------------------------------------- FER2013

def pixel_hashes(paths: list[Path]) -> list[str]:
    """sha256 of each image's decoded grey pixels (and shape): equal for pixel-identical images."""
    import cv2  # noqa: PLC0415

    out = []
    for p in paths:
        gray = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise DatasetError(f"fer2013: {p} is not a readable image")
        out.append(hashlib.sha256(f"{gray.shape}".encode() + gray.tobytes()).hexdigest())
    return out


def drop_duplicates(paths: list[Path], chosen: np.ndarray, trained: np.ndarray) -> tuple[np.ndarray, int]:
    """``chosen`` without the images pixel-identical to one of ``trained`` (indices into ``paths``); (kept, dropped)."""
    hashes = pixel_hashes([paths[i] for i in chosen])
    seen = set(pixel_hashes([paths[i] for i in trained]))
    keep = np.array([h not in seen for h in hashes], bool)
    return chosen[keep], int((~keep).sum())


def choose_faces(root: Path, split: str, limit: int | None) -> tuple[list[Path], np.ndarray, str, int]:
    """(image paths, class indices, which faces, duplicates dropped) in the order they are shown.

    The held-out parts of the face model's own folder lose their images that are pixel-identical
    to an image the model was trained or validated on (FER2013 holds such copies; 219 of the test
    part's 2,872), so the figures are not flattered by faces the model has seen.
    """
    from edge.models import load_manifest, models_dir  # noqa: PLC0415
    from edge.tools.train_face import list_fer2013, stratified_split  # noqa: PLC0415

    paths, labels = list_fer2013(root)
    if split == "auto":
        training = (load_manifest(models_dir() / "face.json").get("training") or {})
        n_folder = sum(int(training.get(k) or 0) for k in ("n_train", "n_val", "n_test"))
        split = "test" if n_folder == len(paths) else "all"
    dropped = 0
    if split == "all":
        chosen, which = np.arange(len(paths)), "every face of the folder"
    else:
        train, val, test = stratified_split(labels)
        chosen, trained = (test, np.concatenate([train, val])) if split == "test" else (val, train)
        chosen, dropped = drop_duplicates(paths, chosen, trained)
        which = (f"the face model's held-out {split} part of its training folder (tools/train_face.py "
                 f"stratified_split, seed 0; never trained on), without {dropped} pixel-identical "
                 f"copies of {'training or validation' if split == 'test' else 'training'} images")
    rng = np.random.default_rng(0)
    picked = []
    for c in np.unique(labels[chosen]):
        idx = chosen[labels[chosen] == c]
        idx = idx[rng.permutation(len(idx))]
        picked.append(idx[:limit] if limit else idx)
    order = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    order = order[np.random.default_rng(1).permutation(len(order))]  # classes interleaved: each face follows another kind
    if limit:
        which += f", at most {limit} per class"
    return [paths[i] for i in order], labels[order], which, dropped


def read_face(path: Path) -> np.ndarray:
    """A FER2013 image as a 48x48 grey uint8 face."""
    import cv2  # noqa: PLC0415

    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise DatasetError(f"fer2013: {path} is not a readable image")
    if gray.shape != (48, 48):
        gray = cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA)
    return gray


def write_face_video(paths: list[Path], path: Path, hold_s: float, fps: float,
                     seed: int = FACE_FRAMING_SEED) -> int:
    """An MJPG video holding each face, framed as a camera sees it, ``hold_s`` seconds at ``fps``; frames per face."""
    import cv2  # noqa: PLC0415

    from edge.tools.face_framing import FRAME_PX, framed_face  # noqa: PLC0415

    per_face = max(1, int(round(hold_s * fps)))
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, FRAME_PX, False)
    if not writer.isOpened():
        raise DatasetError(f"fer2013: cannot write the face video {path}")
    try:
        for p in paths:
            frame, _ = framed_face(read_face(p), rng)
            for _ in range(per_face):
                writer.write(frame)
    finally:
        writer.release()
    return per_face


def detector_path(config: Any, paths: list[Path], video: Path, per_face: int) -> dict[str, np.ndarray]:
    """Each face through the daemon's detector-and-crop path alone, and the model on its FER crop.

    The frame scored is the face's first frame decoded from the video (what the camera source
    hands the pipeline). Returns ``direct`` and ``detector`` predicted class indices (-1: no face
    found) and the faces' ``quality`` (nan where none was found).
    """
    import cv2  # noqa: PLC0415

    from edge.daemon import load_estimators  # noqa: PLC0415
    from edge.features.face import face_input  # noqa: PLC0415
    from firmware_bridge.transports.camera import to_gray  # noqa: PLC0415

    estimators, reasons = load_estimators(config)
    if "face" not in estimators:
        raise DatasetError(f"evaluate states: the face model could not be loaded ({reasons.get('face', '?')})")
    est = estimators["face"]
    direct = np.full(len(paths), -1, np.int64)
    detector = np.full(len(paths), -1, np.int64)
    quality = np.full(len(paths), np.nan)
    cap = cv2.VideoCapture(str(video))
    try:
        for i, p in enumerate(paths):
            face = read_face(p)
            direct[i] = int(np.argmax(est.model.predict(face_input(face, (0, 0, face.shape[1], face.shape[0])))))
            ok, frame = cap.read()
            for _ in range(per_face - 1):
                cap.grab()
            if not ok or frame is None:
                raise DatasetError(f"fer2013: the face video {video} ended at face {i + 1} of {len(paths)}")
            scored = est.score_frame(to_gray(frame, cv2))
            if scored is not None:
                detector[i], quality[i] = int(np.argmax(scored[0])), scored[1]
    finally:
        cap.release()
    return {"direct": direct, "detector": detector, "quality": quality}


def path_figures(y: np.ndarray, direct: np.ndarray, detector: np.ndarray) -> dict[str, Any]:
    """Detector hit rate and accuracy of the direct-crop and detector paths (all faces; and the faces found)."""
    found = detector >= 0
    n = len(y)

    def acc(pred: np.ndarray, mask: np.ndarray) -> float | None:
        return float(np.mean(pred[mask] == y[mask])) if mask.any() else None

    return {"faces": int(n), "detector_found_share": float(found.mean()) if n else None,
            "accuracy_direct": acc(direct, np.ones(n, bool)), "accuracy_detector_path": acc(detector, np.ones(n, bool)),
            "accuracy_direct_found": acc(direct, found), "accuracy_detector_path_found": acc(detector, found)}


def settled_states(states: list[Mapping[str, Any]], n_faces: int, hold_s: float, hop_s: float,
                   t0_unix: float = FACE_T0_UNIX) -> list[Mapping[str, Any] | None]:
    """Each face's settled state: its last state, if that falls in the last two fusion hops of its hold."""
    out: list[Mapping[str, Any] | None] = [None] * n_faces
    for s in sorted(states, key=lambda s: float(s["ts"])):
        t = float(s["ts"]) - t0_unix
        i = int(math.floor(t / hold_s + 1e-9))
        if 0 <= i < n_faces and t >= (i + 1) * hold_s - 2 * hop_s - 1e-6:
            out[i] = s
    return out


def band_counts(confidences: Iterable[float], agrees: Iterable[bool]) -> dict[str, list[int]]:
    """How many labels fall in each ``CONFIDENCE_BANDS`` band of ``label_confidence``, and how many of them agree."""
    n, right = [0] * (len(CONFIDENCE_BANDS) - 1), [0] * (len(CONFIDENCE_BANDS) - 1)
    for c, a in zip(confidences, agrees):
        i = int(np.clip(np.searchsorted(CONFIDENCE_BANDS, c, side="right") - 1, 0, len(n) - 1))
        n[i] += 1
        right[i] += bool(a)
    return {"n": n, "agree": right}


def calibration_rows(counts: Mapping[str, list[int]], unit: str) -> list[dict[str, Any]]:
    """``band_counts`` as rows: each band's bounds, its number of ``unit`` and their agreement."""
    return [{"from": lo, "to": hi, unit: n, "agreement": _share(a, n)}
            for lo, hi, n, a in zip(CONFIDENCE_BANDS[:-1], CONFIDENCE_BANDS[1:], counts["n"], counts["agree"])]


def evaluate_faces(root: Path, config: Any, limit: int | None = None, split: str = "auto",
                   hold_s: float = DEFAULT_HOLD_S, fps: float = DEFAULT_FPS) -> dict[str, Any]:
    """Faces through the camera path as a video; agreement of each face's settled label with its expression."""
    from edge.config import replace_dotted  # noqa: PLC0415
    from edge.features.face import FER_LABELS  # noqa: PLC0415
    from edge.tools.face_framing import framing_description  # noqa: PLC0415

    paths, y, which, dropped = choose_faces(Path(root), split, limit)
    if not paths:
        raise DatasetError(f"fer2013 {root}: no faces in the chosen part ({which})")
    cfg = replace_dotted(config, "daemon.modalities", ("face",))
    with tempfile.TemporaryDirectory(prefix="evaluate-states-") as tmp:
        video = Path(tmp) / "faces.avi"
        t0 = time.monotonic()
        log.info("fer2013: %d faces (%s) into a %.0f-min video; the daemon's camera path plays it", len(paths), which,
                 len(paths) * hold_s / 60.0)
        per_face = write_face_video(paths, video, hold_s, fps)
        payloads, versions = run_pipeline(cfg, f"camera:{video}?fps={fps:g}&start={FACE_T0_UNIX:.0f}")
        scored = detector_path(cfg, paths, video, per_face)
        log.info("%d faces, %d states in %.0f s", len(paths), len(payloads), time.monotonic() - t0)
    settled_payloads = settled_states(payloads, len(paths), hold_s, config.fusion.hop_s)
    settled = [None if s is None else s.get("label") for s in settled_payloads]
    # label_confidence against the expression: the labelled (not uncertain) settled states, as for Stress-Predict
    labelled = [(s, c) for s, c in zip(settled_payloads, y) if s is not None and s.get("label") != UNCERTAIN_LABEL]
    confidence = band_counts((_number(s.get("label_confidence")) or 0.0 for s, _ in labelled),
                             (s.get("label") in AGREEING_LABELS[FER_LABELS[int(c)]] for s, c in labelled))
    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(FER_LABELS):
        got = [settled[i] for i in np.flatnonzero(y == c)]
        if not got:
            continue
        agree = sum(1 for g in got if g in AGREEING_LABELS[name])
        mask = y == c
        per_class[name] = {"faces": len(got), "agreement": agree / len(got),
                           "no_state_share": sum(1 for g in got if g is None) / len(got),
                           "expected": sorted(AGREEING_LABELS[name]), "labels": _tally(got),
                           "recall_direct": float(np.mean(scored["direct"][mask] == c)),
                           "recall_detector_path": float(np.mean(scored["detector"][mask] == c)),
                           "detector_found_share": float(np.mean(scored["detector"][mask] >= 0))}
    n = len(paths)
    agree_all = sum(1 for i, g in enumerate(settled) if g in AGREEING_LABELS[FER_LABELS[int(y[i])]])
    # The most any label rule could agree given this model: the face's top class on its FER crop shares an
    # agreeing label with the expression (angry read as fear, or surprise read as angry, still agrees: tense).
    ceiling = float(np.mean([bool(AGREEING_LABELS[FER_LABELS[int(d)]] & AGREEING_LABELS[FER_LABELS[int(c)]])
                             for c, d in zip(y, scored["direct"])]))
    return {
        "dataset": "fer2013",
        "path": str(root),
        "faces_used": which,
        "duplicates_dropped": dropped,
        "framing": f"{framing_description()}, seed {FACE_FRAMING_SEED} (edge.tools.face_framing)",
        "hold_s": hold_s, "fps": fps,
        "fusion": {k: getattr(config.fusion, k) for k in ("hop_s", "smoothing_tau_s")},
        "models": versions,
        "classes": per_class,
        "overall": {"faces": n, "agreement": agree_all / n,
                    "agreement_class_mean": float(np.mean([r["agreement"] for r in per_class.values()])),
                    "no_state_share": sum(1 for g in settled if g is None) / n,
                    "agreement_with_state": _share(agree_all, sum(1 for g in settled if g is not None)),
                    "agreement_ceiling_direct": ceiling,
                    "labels": _tally(settled)},
        "label_confidence_calibration": calibration_rows(confidence, "faces"),
        "detector_path": path_figures(y, scored["direct"], scored["detector"]),
        "faces": [{"path": str(p), "expression": FER_LABELS[int(c)], "label": g,
                   "label_confidence": None if st is None else st.get("label_confidence"),
                   "direct": FER_LABELS[int(d)], "detector": None if k < 0 else FER_LABELS[int(k)]}
                  for p, c, g, st, d, k in zip(paths, y, settled, settled_payloads, scored["direct"], scored["detector"])],
    }


def format_face_report(report: Mapping[str, Any]) -> str:
    lines = [f"evaluate states: fer2013 {report['path']}",
             f"faces: {report['faces_used']}; each held {report['hold_s']:g} s at {report['fps']:g} fps",
             f"framing: {report['framing']}",
             f"models: {', '.join(f'{k} {v}' for k, v in report['models'].items())}", "",
             f"{'expression':<11}{'faces':>6}{'agreement':>11}{'no state':>10}  expected  -> labels"]
    for name, row in report["classes"].items():
        lines.append(f"{name:<11}{row['faces']:>6}{row['agreement']:>11.3f}{row['no_state_share']:>10.3f}  "
                     f"{'/'.join(row['expected'])} -> " + ", ".join(f"{k} {v}" for k, v in row["labels"].items()))
    o = report["overall"]
    lines.append(f"{'overall':<11}{o['faces']:>6}{o['agreement']:>11.3f}{o['no_state_share']:>10.3f}  "
                 f"(class mean {o['agreement_class_mean']:.3f}; {_fmt(o['agreement_with_state'])} of the faces "
                 f"that gave a state)")
    lines.append(f"{'':<11}{'':>6}{o['agreement_ceiling_direct']:>11.3f}  the model's ceiling: faces whose top class "
                 f"on the FER crop agrees with the expression")
    lines.append(calibration_line(report["label_confidence_calibration"], "faces", "the labelled faces"))
    d = report["detector_path"]
    lines.append("")
    lines.append(f"detector path (the daemon's detector and crop on each framed face): "
                 f"found {_fmt(d['detector_found_share'])}; accuracy {_fmt(d['accuracy_detector_path'])} "
                 f"(misses count wrong) vs {_fmt(d['accuracy_direct'])} on the FER crops; on the faces found "
                 f"{_fmt(d['accuracy_detector_path_found'])} vs {_fmt(d['accuracy_direct_found'])}")
    lines.append("recall, direct / detector path: " + ", ".join(
        f"{name} {row['recall_direct']:.2f}/{row['recall_detector_path']:.2f}"
        for name, row in report["classes"].items()))
    return "\n".join(lines)
