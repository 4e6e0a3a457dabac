"""``emotion-edge bench``'s comparison with the obvious way (neurokit2) runs on the shipped models,
and the figures name the CPU they were measured on (installs issue, item 6)."""

from __future__ import annotations

import argparse

import pytest

from edge.models import TFLiteModel
from edge.tools import bench

# eda/cardiac windows are 300 s: one window each (neurokit2 takes ~1.5 s per ECG window); 149 EEG windows
MINUTES = 5.0


def test_the_comparison_runs_on_the_shipped_models(mqtt_broker):
    """Both sides over the same simulated minutes; the neurokit2 side feeds each model what it was
    trained on (eda/cardiac 1.1.0 take 46/44 inputs: features beside their trailing-baseline deviation)."""
    pytest.importorskip("neurokit2")
    pytest.importorskip("scipy")
    args = argparse.Namespace(minutes=MINUTES, baseline_minutes=MINUTES, seed=3, broker=mqtt_broker.url)
    pipeline = bench.worker_pipeline(args)
    baseline = bench.worker_baseline(args)
    assert baseline["windows"] == {"eda": 1, "cardiac": 1, "eeg": 149}, baseline["windows"]
    assert pipeline["states"] > 0 and set(pipeline["compute_by_modality_s_per_hour"]) >= {"eda", "cardiac", "eeg"}
    figures = bench.compare({"pipeline": pipeline, "baseline": baseline})
    ratios = figures["ratios"]
    assert figures["speedup_vs_obvious"] == ratios["neurokit2_over_pipeline_compute"]
    # neurokit2's ecg_process per window costs far more than the pipeline's incremental beats
    assert ratios["neurokit2_over_pipeline_compute"] > 1.0, (pipeline, baseline)
    assert all(ratios[f"neurokit2_over_pipeline_{m}"] > 0 for m in ("eda", "cardiac", "eeg")), ratios


def test_trained_input_matches_each_models_input_width():
    for name in ("eda", "cardiac", "eeg"):
        model = TFLiteModel(name, variant="float")
        n_features = len(model.manifest["preprocessing"]["feature_names"])
        x = bench._trained_input(model.manifest)(300.0, [0.0] * n_features)
        assert len(x) == model.input_shape[-1], name
        model.predict(x)


def test_cpu_info_names_the_cpu_and_the_flags_that_change_int8_speed():
    x86 = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
           "flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n\nprocessor\t: 1\nmodel name\t: same\n")
    assert bench.cpu_info(x86) == {"model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                                   "speed_flags": ["avx2", "fma", "avx512f", "avx512_vnni"]}
    pi4 = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
           "CPU part\t: 0xd08\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert bench.cpu_info(pi4) == {"model": "Raspberry Pi 4 Model B Rev 1.4", "speed_flags": ["asimd"]}
    here = bench.cpu_info()
    assert here["model"] and isinstance(here["speed_flags"], list)


def test_the_camera_worker_measures_frames_with_and_without_a_face():
    pytest.importorskip("cv2")
    c = bench.worker_camera(argparse.Namespace(video=None))
    assert c["detector"] == "blazeface" and c["frames"] == 90
    assert c["frames_with_face"] == c["frames"]  # the synthetic video's drawn face is found in every frame
    empty = c["no_face_frame_cpu_ms"]
    assert empty["zoom_tiles"] is True and empty["face_found"] is False  # the textured frame holds no face
    assert empty["mean"] > 0 and c["frame_cpu_ms"]["mean"] > 0


def test_a_worker_runs_when_bench_is_started_from_the_source_checkout(monkeypatch):
    """`make bench` runs in the repository root, whose edge/ has no edge.tools: the worker must not import it."""
    pytest.importorskip("cv2")
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert (root / "edge" / "__init__.py").exists() and not (root / "edge" / "tools").exists()
    monkeypatch.chdir(root)
    args = argparse.Namespace(minutes=MINUTES, seed=0, baseline_minutes=MINUTES, video=None)
    figures = bench._run_worker("camera", args, "mqtt://127.0.0.1:1")  # the camera worker needs no broker
    assert figures["frames"] == 90 and figures["detector"] == "blazeface"
