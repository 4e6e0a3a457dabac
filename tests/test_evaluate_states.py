"""``emotion-edge evaluate states``: the published states scored against the labels of small datasets
written here in the real layouts (Stress-Predict E4 exports + per-second labels; a FER2013 image folder)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import load_test_module, run_cli

from edge.tools import evaluate_states as es

sp_fixture = load_test_module("test_stress_predict")  # write_subject / write_labels: the study's layout
DURATION_S, STRESS_S = sp_fixture.DURATION_S, sp_fixture.STRESS_S
UNSEEN = {90: 1650000000.0, 91: 1650010000.0}  # participants no shipped model trained on: S90, S91


def write_dataset(root: Path, participants: dict[int, float]) -> Path:
    for k, (p, start) in enumerate(participants.items()):
        sp_fixture.write_subject(root / "Raw_data" / f"S{p:02d}", start, seed=p, level_us=(1.5, 5.0, 3.0)[k % 3])
    sp_fixture.write_labels(root, participants)
    return root


@pytest.fixture(scope="module")
def unseen_dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("stress-predict"), UNSEEN)


def _state(ts: float, label: str, stress: float | None) -> dict:
    return {"ts": ts, "label": label, "stress": stress}


# ----------------------------------------------------------------------------- the figures

def test_figures_of_a_constructed_state_sequence() -> None:
    """Labels rest 0-59 s, task 60-119 s, nothing labelled from 120 s; states every 5 s."""
    t0 = 1000.0
    times = t0 + np.arange(120, dtype=np.float64)
    y = (np.arange(120) >= 60).astype(np.int8)
    rest = ["calm", "sad", "sad", "neutral", "uncertain", "neutral", "tense", "calm", "calm", "calm", "calm", "calm"]
    task = ["stressed", "stressed", "tense", "neutral", "uncertain", "stressed", "stressed", "stressed", "sad",
            "stressed", "stressed", "stressed"]
    stress = [0.1] * 12 + [0.9] * 12
    stress[0] = 0.95  # one rest state above every task state: 10 of the 120 rest/task pairs misordered ...
    stress[13] = None  # ... once a null stress (missing, not 0) is left out
    states = [_state(t0 + 5 * i + 0.5, lab, s) for i, (lab, s) in enumerate(zip(rest + task, stress))]
    states.append(_state(t0 + 150.5, "sad", 0.5))  # an unlabelled second: in no figure
    del states[20]  # a gap of 10 s (2 hops) still counts as contiguous
    c = es.state_counts(states, times, y, hop_s=5.0)
    f = es.figures_of(c)
    assert c["states"] == 24 and c["states_labelled"] == 23 and c["rest_states"] == 12 and c["stress_states"] == 11
    assert f["rest_negative"] == pytest.approx(3 / 12)  # sad, sad, tense
    assert f["stress_hit"] == pytest.approx(9 / 11)  # task states 0,1,2,5,6,7,9,10,11 (8, the sad one, was deleted)
    assert f["uncertain_share"] == pytest.approx(2 / 23)
    assert c["stress_missing_states"] == 1
    # label changes between consecutive labelled states: 6 in rest, rest->task 1, 4 in task (the gap spans none)
    flips = sum(a["label"] != b["label"] for a, b in zip(states[:22], states[1:23]))
    assert c["flips"] == flips == 11 and c["span_s"] == pytest.approx(5.0 * 21 + 10.0)
    assert f["flips_per_10min"] == pytest.approx(600.0 * 11 / 115.0)
    assert f["stress_auroc"] == pytest.approx((12 * 10 - 10) / (12 * 10))  # 10 task states with a stress value
    # pooled over two subjects: shares of the summed counts, AUROC the mean of the subjects'
    other = es.state_counts([_state(t0 + 0.5, "sad", 0.2), _state(t0 + 70.5, "calm", 0.1)], times, y, hop_s=5.0)
    overall = es.overall_of({"A": c, "B": other})
    assert overall["rest_negative"] == pytest.approx(4 / 13) and overall["stress_hit"] == pytest.approx(9 / 12)
    assert overall["stress_auroc"] == pytest.approx((f["stress_auroc"] + 0.0) / 2)
    # a subject with rest only: no stress_hit, no AUROC -> None (JSON null), never NaN
    alone = es.figures_of(es.state_counts(states[:12], times, y, hop_s=5.0))
    assert alone["stress_hit"] is None and alone["stress_auroc"] is None
    json.dumps(alone, allow_nan=False)


def test_label_confidence_calibration_against_the_study_labels() -> None:
    """Each labelled state in the band of its label_confidence; it agrees when it says stress exactly in task seconds."""
    t0 = 1000.0
    times = t0 + np.arange(120, dtype=np.float64)
    y = (np.arange(120) >= 60).astype(np.int8)
    rows = [(5.5, "calm", 0.7), (10.5, "stressed", 0.2), (15.5, "neutral", 0.35), (20.5, "uncertain", 0.05),
            (65.5, "stressed", 0.9), (70.5, "tense", 1.0), (75.5, "calm", 0.2), (80.5, "stressed", 0.62),
            (150.5, "stressed", 0.9)]  # the last in an unlabelled second: not counted
    states = [{**_state(t0 + t, lab, 0.5), "label_confidence": c} for t, lab, c in rows]
    states[2]["label_confidence"] = float("nan")  # an unreadable confidence counts as 0, never as a crash
    c = es.state_counts(states, times, y, hop_s=5.0)
    assert c["label_confidence_bands"] == {"n": [1, 2, 0, 0, 4], "agree": [1, 0, 0, 0, 4]}
    other = es.state_counts([{**_state(t0 + 66.5, "neutral", 0.5), "label_confidence": 0.7}], times, y, hop_s=5.0)
    rows = es.overall_of({"A": c, "B": other})["label_confidence_calibration"]
    assert [r["states"] for r in rows] == [1, 2, 0, 0, 5]
    assert [r["agreement"] for r in rows] == [1.0, 0.0, None, None, pytest.approx(0.8)]
    assert es.overall_of({})["label_confidence_calibration"][0]["agreement"] is None
    json.dumps(rows, allow_nan=False)


# ------------------------------------------------------------------- Stress-Predict, end to end

def _expected_counts(payloads: list[dict], start: float) -> dict:
    """What the fixture's own timeline implies: label 1 in [STRESS_S), labelled from 9 s to DURATION_S."""
    rest = task = neg = hit = 0
    labelled = []
    for s in payloads:
        second = int(np.floor(s["ts"] - start))
        if not 9 <= second < DURATION_S:
            continue
        labelled.append(s["label"])
        if STRESS_S[0] <= second < STRESS_S[1]:
            task += 1
            hit += s["label"] in ("stressed", "tense")
        else:
            rest += 1
            neg += s["label"] in ("stressed", "tense", "sad")
    flips = sum(a != b for a, b in zip(labelled[:-1], labelled[1:]))  # one state every hop: no gaps here
    return {"rest": rest, "task": task, "neg": neg, "hit": hit, "flips": flips, "states": len(labelled)}


def test_threshold_sweep_gives_the_best_stress_hit_within_the_rest_negative_target() -> None:
    """20 rest states at stress 0.05 .. 0.43 (0.02 apart), 10 task states at 0.305 .. 0.755 (0.05 apart)."""
    t0 = 1000.0
    times = t0 + np.arange(300, dtype=np.float64)
    y = (np.arange(300) >= 100).astype(np.int8)
    rest = [_state(t0 + 5 * i + 0.5, "calm", 0.05 + 0.02 * i) for i in range(20)]
    task = [_state(t0 + 100 + 5 * i + 0.5, "stressed", 0.305 + 0.05 * i) for i in range(10)]
    task.append(_state(t0 + 160.5, "stressed", None))  # missing stress: in no histogram bin
    c = es.state_counts(rest + task, times, y, hop_s=5.0)
    assert sum(c["stress_histogram"]["rest"]) == 20 and sum(c["stress_histogram"]["stress"]) == 10
    sweep = es.overall_of({"S90": c})["threshold_sweep"]
    # rest share <= 0.15 needs at most 3 of 20 rest states at or above: 0.39, 0.41, 0.43 -> lowest such threshold 0.38
    best = sweep["best"]
    assert best["threshold"] == pytest.approx(0.38) and best["rest_share"] == pytest.approx(3 / 20)
    assert best["stress_share"] == pytest.approx(8 / 10)  # 0.405 .. 0.755
    by_t = {round(p["threshold"], 2): p for p in sweep["thresholds"]}
    assert by_t[0.0]["rest_share"] == by_t[0.0]["stress_share"] == 1.0
    assert by_t[0.5]["rest_share"] == 0.0 and by_t[0.5]["stress_share"] == pytest.approx(6 / 10)
    # no task state with a stress: no sweep, said as such rather than a number
    assert es.threshold_sweep({"rest": [1] * es.SWEEP_BINS, "stress": [0] * es.SWEEP_BINS})["best"] is None


def test_evaluate_states_on_unseen_subjects_matches_the_fixture(unseen_dataset: Path) -> None:
    proc = run_cli("evaluate", "states", "--dataset", f"stress-predict:{unseen_dataset}", "--json", check=True)
    report = json.loads(proc.stdout)
    assert list(report["subjects"]) == ["S90", "S91"]
    assert "never saw" in report["models_used"] and report["flattered_subjects"] == []
    from edge.config import load_config, replace_dotted

    config = replace_dotted(load_config(None), "daemon.modalities", ("eda", "cardiac"))
    for p, start in UNSEEN.items():
        row = report["subjects"][f"S{p:02d}"]
        assert row["models_used"].startswith("shipped (never trained")
        assert set(row["models"]) == {"eda", "cardiac"}
        # the states the daemon's pipeline publishes for this recording, matched with the fixture's timeline
        payloads, _ = es.run_pipeline(config, f"replay:e4:{unseen_dataset / 'Raw_data' / f'S{p:02d}'}")
        assert row["states"] == len(payloads)
        # states every fusion hop once the first complete 300-s window is in: ~ (720 - 300) / 5 of them
        assert (DURATION_S - 300) / 5 - 2 <= len(payloads) <= (DURATION_S - 300) / 5 + 2
        want = _expected_counts(payloads, start)
        assert row["rest_states"] == want["rest"] > 0 and row["stress_states"] == want["task"] > 0
        assert row["rest_negative"] == pytest.approx(want["neg"] / want["rest"])
        assert row["stress_hit"] == pytest.approx(want["hit"] / want["task"])
        assert row["flips"] == want["flips"] and row["states_labelled"] == want["states"]
        assert row["flips_per_10min"] == pytest.approx(600.0 * want["flips"] / (5.0 * (want["states"] - 1)))
        # the synthetic task (SCR bursts, rising SCL, 95 bpm) reads as stress: stress ranks task above rest
        assert row["stress_auroc"] is not None and row["stress_auroc"] > 0.7
    overall = report["overall"]
    assert overall["states"] == sum(r["states"] for r in report["subjects"].values())
    best = overall["threshold_sweep"]["best"]  # the ceiling of a label read off stress alone, on these states
    assert best is None or best["rest_share"] <= es.REST_NEGATIVE_TARGET
    assert overall["stress_auroc"] == pytest.approx(np.mean([r["stress_auroc"] for r in report["subjects"].values()]))
    # the text form carries the same figures and says which models were used
    text = run_cli("evaluate", "states", "--dataset", f"stress-predict:{unseen_dataset}", "--subjects", "S91",
                   check=True).stdout
    assert "models:" in text and "never saw" in text and "S90" not in text
    line = next(ln for ln in text.splitlines() if ln.startswith("S91"))
    assert f"{report['subjects']['S91']['rest_negative']:.3f}" in line


def test_bad_requests_are_one_line(unseen_dataset: Path, tmp_path: Path) -> None:
    proc = run_cli("evaluate", "states", "--dataset", f"stress-predict:{unseen_dataset}", "--subjects", "S42")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "S42" in proc.stderr
    proc = run_cli("evaluate", "states", "--dataset", f"deap:{unseen_dataset}")
    assert proc.returncode == 2 and "stress-predict, fer2013" in proc.stderr
    proc = run_cli("evaluate", "states", "--dataset", f"stress-predict:{tmp_path}")
    assert proc.returncode == 2 and "label file" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_subjects_the_shipped_models_trained_on_get_fold_models_that_never_saw_them(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    # S02, S03, S04: in the shipped models' training set, in three different cv folds of theirs
    root = write_dataset(tmp_path / "sp", {2: 1644227574.0, 3: 1644237574.0, 4: 1644247574.0})
    cache = tmp_path / "cache"
    proc = run_cli("evaluate", "states", "--dataset", f"stress-predict:{root}", "--json", "--epochs", "2",
                   "--cache", str(cache), "--subjects", "S02,S03", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert proc.stderr.count("training fold") == 2  # S02's fold and S03's
    assert "cross-validated fold models" in report["models_used"] and report["flattered_subjects"] == []
    for sid in ("S02", "S03"):
        row = report["subjects"][sid]
        assert row["models_used"].startswith("cv fold") and sid in row["models_used"]
        assert row["models"]["eda"].startswith("1.1.0+cv-") and sid in row["models"]["eda"]
    folders = sorted((cache / "folds").iterdir())
    assert len(folders) == 2  # S04 is not scored: its fold is not trained
    for folder in folders:
        for m in ("eda", "cardiac"):
            manifest = json.loads((folder / f"{m}.json").read_text())
            held = set(manifest["training"]["subjects_test"])
            assert held & {"S02", "S03"} and not held & set(manifest["training"]["subjects_train"])
            assert set(manifest["training"]["subjects_train"]) <= {"S02", "S03", "S04"}
            assert manifest["input_tensor"]["dtype"] == "int8"  # quantized as shipped
    # a second run takes the cached fold models: nothing is trained again, the figures are the same
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "folds").glob("*/*.tflite")}
    again = run_cli("evaluate", "states", "--dataset", f"stress-predict:{root}", "--json", "--epochs", "2",
                    "--cache", str(cache), "--subjects", "S02,S03", check=True)
    assert "training fold" not in again.stderr and json.loads(again.stdout)["overall"] == report["overall"]
    assert {p: p.stat().st_mtime_ns for p in (cache / "folds").glob("*/*.tflite")} == stamps
    # a cached fold model cut short (a killed run, a full disk) is trained again, with one warning,
    # instead of its modality quietly dropping out of the figures; a damaged feature cache is rebuilt
    damaged = sorted(p for p in stamps if ".float." not in p.name)[0]  # the int8 model the daemon runs
    damaged.write_bytes(damaged.read_bytes()[:100])
    features = sorted((cache / "features").rglob("*.npz"))
    features[0].write_bytes(b"not numpy")
    third = run_cli("evaluate", "states", "--dataset", f"stress-predict:{root}", "--json", "--epochs", "2",
                    "--cache", str(cache), "--subjects", "S02,S03", timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stderr.count("training fold") == 1 and "unusable" in third.stderr, third.stderr[-3000:]
    assert "unreadable" in third.stderr and "rebuilding" in third.stderr
    rows = json.loads(third.stdout)["subjects"]
    assert all(set(rows[sid]["models"]) >= {"eda", "cardiac"} for sid in ("S02", "S03"))
    # shipped models instead: said to be flattered, in the JSON and the text
    proc = run_cli("evaluate", "states", "--dataset", f"stress-predict:{root}", "--models", "shipped",
                   "--subjects", "S04", check=True)
    assert "flattered" in proc.stdout and "FLATTERED: S04" in proc.stdout


# ------------------------------------------------------------------------------ faces

def _grace_hopper_crop() -> np.ndarray | None:
    """A real frontal face as a FER2013-style 48x48 crop (matplotlib's sample photograph)."""
    cv2 = pytest.importorskip("cv2")
    spec = importlib.util.find_spec("matplotlib")
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg" if spec and spec.origin else None
    if path is None or not path.exists():
        return None
    from edge.features.face import FaceDetector, face_input

    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return np.round(face_input(gray, FaceDetector().detect(gray)[0])[:, :, 0] * 255).astype(np.uint8)


def test_faces_through_the_camera_path(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    face = _grace_hopper_crop()
    if face is None:
        pytest.skip("matplotlib's sample photograph (grace_hopper.jpg) is not installed")
    from edge.features.face import FER_LABELS

    root = tmp_path / "faces"
    rng = np.random.default_rng(3)
    for label in FER_LABELS:  # every class: the face and its mirror image; "fear" also a picture with no face
        (root / label).mkdir(parents=True)
        cv2.imwrite(str(root / label / "a.jpg"), face)
        cv2.imwrite(str(root / label / "b.jpg"), face[:, ::-1].copy())
    cv2.imwrite(str(root / "fear" / "c.jpg"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    proc = run_cli("evaluate", "states", "--dataset", f"fer2013:{root}", "--json", "--hold-s", "40", check=True)
    report = json.loads(proc.stdout)
    assert report["faces_used"] == "every face of the folder" and report["overall"]["faces"] == 15
    assert report["duplicates_dropped"] == 0 and "320x240 frame" in report["framing"]
    faces = report["faces"]
    # each face pasted at its own random size and place: the detector finds the real face (nearly) every time,
    # never the noise picture; a face gives a settled state exactly when the detector path finds it
    real = [f for f in faces if Path(f["path"]).name != "c.jpg"]
    assert sum(f["detector"] is not None for f in real) >= 12
    assert all((f["label"] is None) == (f["detector"] is None) for f in faces)
    ceiling = np.mean([bool(es.AGREEING_LABELS[f["direct"]] & es.AGREEING_LABELS[f["expression"]]) for f in faces])
    assert report["overall"]["agreement_ceiling_direct"] == pytest.approx(ceiling)
    noise = next(f for f in faces if Path(f["path"]).name == "c.jpg")
    assert noise["label"] is None and noise["detector"] is None
    # the FER crop itself always goes through the model: one class for the face, one for its mirror image
    assert len({f["direct"] for f in real if Path(f["path"]).name == "a.jpg"}) == 1
    for name, row in report["classes"].items():
        mine = [f for f in faces if f["expression"] == name]
        assert row["faces"] == (3 if name == "fear" else 2) == len(mine)
        assert row["agreement"] == pytest.approx(np.mean([f["label"] in es.AGREEING_LABELS[name] for f in mine]))
        assert row["detector_found_share"] == pytest.approx(np.mean([f["detector"] is not None for f in mine]))
    assert report["classes"]["fear"]["no_state_share"] >= 1 / 3
    hits = sum(f["label"] in es.AGREEING_LABELS[f["expression"]] for f in faces)
    with_state = sum(f["label"] is not None for f in faces)
    assert report["overall"]["agreement"] == pytest.approx(hits / 15)
    assert report["overall"]["agreement_with_state"] == pytest.approx(hits / with_state)
    # the calibration table: every labelled face in the band of its settled state's label_confidence
    labelled = [f for f in faces if f["label"] not in (None, "uncertain")]
    bands = report["label_confidence_calibration"]
    assert sum(b["faces"] for b in bands) == len(labelled)
    for b in bands:
        inside = [f for f in labelled if b["from"] <= f["label_confidence"] < b["to"] or f["label_confidence"] == b["to"] == 1]
        assert b["faces"] == len(inside)
        if inside:
            assert b["agreement"] == pytest.approx(np.mean([f["label"] in es.AGREEING_LABELS[f["expression"]] for f in inside]))
    d = report["detector_path"]
    assert d["detector_found_share"] == pytest.approx(with_state / 15)
    assert d["accuracy_direct"] == pytest.approx(np.mean([f["direct"] == f["expression"] for f in faces]))
    assert d["accuracy_detector_path"] == pytest.approx(np.mean([f["detector"] == f["expression"] for f in faces]))
    # --limit: at most N faces per class
    proc = run_cli("evaluate", "states", "--dataset", f"fer2013:{root}", "--limit", "1", "--hold-s", "20", check=True)
    assert "models: face 1." in proc.stdout
    overall = next(ln for ln in proc.stdout.splitlines() if ln.startswith("overall")).split()
    assert overall[1] == "7" and all(f"{n:<11}     1" in proc.stdout for n in FER_LABELS)


def test_held_out_faces_lose_their_pixel_copies_of_training_images(tmp_path: Path) -> None:
    """Pixel-identical copies (other bytes: another PNG compression) are dropped; a one-pixel change is kept."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3)]
    paths = []
    for i, face in enumerate(faces):  # the training images
        paths.append(tmp_path / f"train{i}.png")
        cv2.imwrite(str(paths[-1]), face, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    copy = tmp_path / "copy.png"
    cv2.imwrite(str(copy), faces[1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    changed = faces[2].copy()
    changed[0, 0] ^= 1
    cv2.imwrite(str(tmp_path / "changed.png"), changed)
    paths += [copy, tmp_path / "changed.png"]
    assert copy.read_bytes() != paths[1].read_bytes()
    kept, dropped = es.drop_duplicates(paths, np.array([3, 4]), np.array([0, 1, 2]))
    assert dropped == 1 and kept.tolist() == [4]
