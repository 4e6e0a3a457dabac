"""Wrist skin temperature and movement (edge.features.wrist) on constructed signals with known answers,
and the streams that carry them: replay:e4 (TEMP.csv, ACC.csv in the E4 layout), the framed
protocol's temp/acc stream types, and the simulator."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edge.features import wrist
from firmware_bridge.protocols.framed import FramedDecoder, encode_frame
from firmware_bridge.simulate import SimulatedWearable, WearableSignals
from test_daemon import collector  # noqa: F401 - the daemon tests' MQTT state collector (a fixture)

GRAVITY = np.array([0.0, 0.6, 0.8])  # a unit vector: 1 g at rest, whatever the wrist's orientation


def test_temperature_level_slope_and_change_against_the_context():
    rate = 4.0
    t = np.arange(0, 300, 1 / rate)
    # 240 s flat at 34.0 °C, then the last 60 s fall linearly by 0.1 °C a minute from 33.5
    temp = np.where(t < 240, 34.0, 33.5 - 0.1 * (t - 240) / 60)
    f = dict(zip(wrist.TEMP_FEATURE_NAMES, wrist.temp_features(temp, rate)))
    assert f["temp_slope_c_per_min"] == pytest.approx(-0.1, abs=1e-4)
    assert f["temp_mean_c"] == pytest.approx(33.5 - 0.05, abs=2e-3)
    assert f["temp_mean_c_delta"] == pytest.approx(33.45 - 34.0, abs=2e-3)
    assert f["temp_std_c"] == pytest.approx(0.1 / np.sqrt(12), rel=0.02)  # a uniform ramp's std
    assert wrist.temp_quality(temp, rate) == 1.0


def test_temperature_without_context_has_no_delta_and_off_skin_lowers_quality():
    rate = 4.0
    f = wrist.temp_features(np.full(240, 33.0), rate)  # 60 s: no context
    assert f[list(wrist.TEMP_FEATURE_NAMES).index("temp_mean_c_delta")] == 0.0
    assert np.all(np.isnan(wrist.temp_features(np.full(8, 33.0), rate)))  # 2 s: too short
    room_air = np.concatenate([np.full(300, 33.0), np.full(100, 15.0)])
    assert wrist.temp_quality(room_air, rate) == pytest.approx(0.75)


def test_a_still_wrist_reads_no_movement_whatever_its_orientation():
    rate = 32.0
    acc = np.tile(GRAVITY, (int(300 * rate), 1))
    f = dict(zip(wrist.ACC_FEATURE_NAMES, wrist.acc_features(acc, rate)))
    assert f["acc_dev_mean_g"] == pytest.approx(0.0, abs=1e-9)
    assert f["acc_jerk_mean_g_per_s"] == pytest.approx(0.0, abs=1e-9)
    assert f["acc_active_share"] == 0.0
    assert wrist.motion_share(acc, rate) == 0.0
    assert wrist.motion_weight(0.0) == 1.0


def test_movement_in_half_of_the_last_minute():
    rate = 32.0
    n = int(300 * rate)
    acc = np.tile(GRAVITY, (n, 1))
    # the last 60 s: the magnitude swings to 1.2 g in alternate whole seconds (a square wave of movement)
    t = np.arange(n) / rate
    moving = (t >= 240) & (np.floor(t) % 2 == 0)
    acc[moving] *= 1.2
    f = dict(zip(wrist.ACC_FEATURE_NAMES, wrist.acc_features(acc, rate)))
    assert f["acc_dev_mean_g"] == pytest.approx(0.1, abs=1e-6)  # 0.2 g half of the time
    assert f["acc_dev_p90_g"] == pytest.approx(0.2, abs=1e-6)
    assert f["acc_active_share"] == pytest.approx(0.5)
    assert f["acc_dev_mean_g_delta"] == pytest.approx(0.1, abs=1e-6)  # the context was still
    # 30 steps of 0.2 g each way (60 edges) in 60 s, spread over the 1919 differences of the minute
    assert f["acc_jerk_mean_g_per_s"] == pytest.approx(59 * 0.2 * rate / (60 * rate - 1), rel=0.05)
    assert wrist.motion_share(acc, rate) == pytest.approx(0.5)
    assert wrist.motion_weight(0.5) == pytest.approx(0.625)
    assert wrist.motion_weight(float("nan")) == 1.0


def test_acc_quality_counts_samples_outside_a_wrist_sensors_range():
    acc = np.tile(GRAVITY, (100, 1))
    acc[:10] = 100.0
    acc[10:15] = np.nan
    assert wrist.acc_quality(acc, 32.0) == pytest.approx(0.85)
    assert wrist.acc_quality(np.zeros((0, 3)), 32.0) == 0.0


def test_framed_protocol_round_trip_of_temp_and_acc():
    dec = FramedDecoder()
    temp = dec.feed(encode_frame("temp", [3312, 3315], 0, 1_000_000, 4.0, "int16", 0.01), 10.0).blocks[0]
    assert (temp.stream, temp.rate_hz, temp.channels) == ("temp", 4.0, ("temp",))
    np.testing.assert_allclose(temp.data[:, 0], [33.12, 33.15], atol=1e-9)
    counts = np.array([[2, 10, 63], [3, 11, 62], [-64, 0, 1]])  # 1/64 g, as the E4 counts
    acc = dec.feed(encode_frame("acc", counts, 0, 1_000_000, 32.0, "int16", 1 / 64), 10.0).blocks[0]
    assert (acc.stream, acc.rate_hz, acc.channels) == ("acc", 32.0, ("x", "y", "z"))
    np.testing.assert_allclose(acc.data, counts / 64.0)


def test_simulator_carries_temp_and_acc_on_request():
    async def run():
        source = SimulatedWearable(seed=3, start_unix=1_700_000_000.0, duration_s=20.0,
                                   streams=("eda", "temp", "acc"), speed=None)
        return [b async for b in source.blocks()]

    blocks = asyncio.run(run())
    by = {s: [b for b in blocks if b.stream == s] for s in ("eda", "temp", "acc")}
    assert sum(b.n for b in by["temp"]) == 80 and sum(b.n for b in by["acc"]) == 640
    assert by["acc"][0].channels == ("X", "Y", "Z") and by["acc"][0].rate_hz == 32.0
    acc = np.concatenate([b.data for b in by["acc"]])
    assert np.median(np.linalg.norm(acc, axis=1)) == pytest.approx(1.0, abs=0.02)  # gravity at rest
    temp = np.concatenate([b.data[:, 0] for b in by["temp"]])
    assert 33.0 < temp.mean() < 34.0
    default = SimulatedWearable(seed=3, speed=None)
    assert default.streams == ("eeg", "ecg", "eda")  # the default wearable is unchanged


def test_simulated_wrist_cools_under_the_scripted_stress():
    sig = WearableSignals(seed=1)
    t = np.arange(0, 330, 0.25)
    temp = np.concatenate([sig.chunk("temp", t[i:i + 40]) for i in range(0, len(t), 40)])[:, 0]
    calm = temp[(t > 120) & (t < 180)].mean()
    stressed = temp[(t > 280) & (t < 330)].mean()
    assert calm - stressed > 0.25


# --- replay:e4 and the daemon, end to end -------------------------------------------------------

E4_START = 1_500_000_000.0


def write_wrist_files(folder, start_unix: float, duration_s: float, moving_from_s: float | None) -> None:
    """TEMP.csv (4 Hz, °C) and ACC.csv (32 Hz, three columns of 1/64-g counts) in the E4 export layout:
    a still wrist, moving (1.5-Hz arm swings) from ``moving_from_s`` on if given."""
    t_temp = np.arange(int(duration_s * 4)) / 4.0
    temp = 33.4 - 0.002 * t_temp / 60.0
    (folder / "TEMP.csv").write_text(f"{start_unix:.6f}\n4.000000\n" + "".join(f"{v:.2f}\n" for v in temp))
    t = np.arange(int(duration_s * 32)) / 32.0
    acc = np.tile(GRAVITY * 64.0, (len(t), 1))
    if moving_from_s is not None:
        swing = 40.0 * np.sin(2 * np.pi * 1.5 * t)[:, None] * np.array([1.0, 0.6, 0.3])
        acc = np.where((t >= moving_from_s)[:, None], acc + swing, acc)
    head = ", ".join([f"{start_unix:.6f}"] * 3) + "\n" + ", ".join(["32.000000"] * 3) + "\n"
    (folder / "ACC.csv").write_text(head + "".join(f"{int(x)},{int(y)},{int(z)}\n" for x, y, z in np.round(acc)))


def test_e4_replay_carries_temp_in_celsius_and_acc_in_g(tmp_path):
    from test_replay import collect, write_e4_folder

    folder = tmp_path / "S95"
    write_e4_folder(folder, seconds=10.0)
    write_wrist_files(folder, 1_600_000_000.0, 10.0, moving_from_s=None)
    source, blocks = collect(f"replay:e4:{folder}")
    acc = [b for b in blocks if b.stream == "acc"]
    temp = [b for b in blocks if b.stream == "temp"]
    assert source.stats.samples["acc"] == 320 and source.stats.samples["temp"] == 40
    assert acc[0].channels == ("X", "Y", "Z") and acc[0].rate_hz == 32.0 and acc[0].ts_unix == 1_600_000_000.0
    values = np.concatenate([b.data for b in acc])
    np.testing.assert_allclose(values, np.tile(np.round(GRAVITY * 64.0) / 64.0, (320, 1)), atol=1e-6)  # counts / 64 = g
    np.testing.assert_allclose(np.concatenate([b.data[:, 0] for b in temp]), 33.4, atol=0.01)
    _, only = collect(f"replay:e4:{folder}?streams=eda+acc")
    assert {b.stream for b in only} == {"eda", "acc"}


def _replay_states(mqtt_broker, collector, tmp_path, name: str, moving_from_s: float | None) -> list[dict]:
    from conftest import run_cli
    from test_daemon import DEVICE, assert_valid_states, write_e4_session

    duration = 400.0
    write_e4_session(tmp_path / name, E4_START, duration)
    write_wrist_files(tmp_path / name, E4_START, duration, moving_from_s)
    before = len(collector.states())
    proc = run_cli("run", "--source", f"replay:e4:{tmp_path / name}", "--speed", "max", "--broker", mqtt_broker.url,
                   "--device-id", DEVICE, "--state-dir", str(tmp_path / f"state-{name}"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "feeds no modality" not in proc.stderr  # temp and acc are taken, not ignored
    assert collector.wait_for(lambda c: sum(s == "offline" for s in c.statuses()) >= (2 if before else 1))
    states = collector.states()[before:]
    assert_valid_states(states)
    return states


def test_daemon_down_weights_eda_and_cardiac_while_the_wrist_moves(mqtt_broker, collector, tmp_path):
    still = _replay_states(mqtt_broker, collector, tmp_path, "still", None)
    moving = _replay_states(mqtt_broker, collector, tmp_path, "moving", 320.0)
    by_ts = {s["ts"]: s for s in still}
    compared = 0
    for s in moving:
        ref = by_ts.get(s["ts"])
        if ref is None:
            continue
        for m in ("eda", "cardiac"):
            if m not in s["modalities"] or m not in ref["modalities"]:
                continue
            now, before = s["modalities"][m], ref["modalities"][m]
            assert before["outputs"]["motion_share"] == 0.0
            assert now["outputs"]["stress"] == before["outputs"]["stress"]  # the model's reading is the same
            if s["ts"] >= E4_START + 390:  # the last minute was all movement
                assert now["outputs"]["motion_share"] > 0.9
                assert now["quality"] == pytest.approx(before["quality"] * wrist.motion_weight(
                    now["outputs"]["motion_share"]), abs=2e-3)
                compared += 1
            elif s["ts"] <= E4_START + 320:
                assert now["quality"] == before["quality"]
    assert compared >= 2


def test_temp_and_acc_are_recorded_and_their_recording_replays_to_the_same_states(mqtt_broker, tmp_path):
    import json

    import pyedflib
    from conftest import run_cli
    from test_daemon import DEVICE, write_e4_session

    write_e4_session(tmp_path / "S01", E4_START, 400.0)
    write_wrist_files(tmp_path / "S01", E4_START, 400.0, moving_from_s=330.0)
    first, second = tmp_path / "first", tmp_path / "second"
    common = ("run", "--speed", "max", "--broker", mqtt_broker.url, "--device-id", DEVICE)
    proc = run_cli(*common, "--source", f"replay:e4:{tmp_path / 'S01'}", "--state-dir", str(tmp_path / "s1"),
                   "--record", str(first), timeout=120)
    assert proc.returncode == 0, proc.stderr
    acc_file = sorted(first.glob("acc-*.edf"))[0]
    reader = pyedflib.EdfReader(str(acc_file))
    try:
        assert reader.getSignalLabels() == ["ACC X", "ACC Y", "ACC Z"]
        assert [reader.getPhysicalDimension(i) for i in range(3)] == ["g"] * 3
        assert list(reader.getSampleFrequencies()) == [32.0] * 3
    finally:
        reader.close()
    assert sorted(first.glob("temp-*.edf"))
    proc = run_cli(*common, "--source", f"replay:record:{first}", "--state-dir", str(tmp_path / "s2"),
                   "--record", str(second), timeout=120)
    assert proc.returncode == 0, proc.stderr

    def states(folder):
        rows = [json.loads(line) for f in sorted(folder.glob("states-*.jsonl")) for line in f.read_text().splitlines()]
        return [{k: v for k, v in s.items() if k != "seq"} for s in rows]

    a, b = states(first), states(second)
    assert any(s["modalities"].get("eda", {}).get("outputs", {}).get("motion_share", 0) > 0.9 for s in a)
    assert a == b


def test_a_bad_acc_file_is_named_once_and_eda_goes_on(mqtt_broker, collector, tmp_path):
    from conftest import run_cli
    from test_daemon import DEVICE, assert_valid_states, write_e4_session

    write_e4_session(tmp_path / "S03", E4_START, 400.0)
    write_wrist_files(tmp_path / "S03", E4_START, 400.0, moving_from_s=None)
    (tmp_path / "S03" / "ACC.csv").write_text("sixteen hundred\n32.0, 32.0, 32.0\n1,2,3\n")
    proc = run_cli("run", "--source", f"replay:e4:{tmp_path / 'S03'}", "--speed", "max", "--broker", mqtt_broker.url,
                   "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    named = [ln for ln in proc.stderr.splitlines() if "ACC.csv" in ln]
    assert len(named) == 1, proc.stderr
    assert collector.wait_for(lambda c: "offline" in c.statuses())
    states = collector.states()
    assert_valid_states(states)
    assert all("eda" not in s["missing"] for s in states)  # a movement sensor's file is not the EDA
    with_eda = [s for s in states if "eda" in s["modalities"]]
    assert with_eda and all("motion_share" not in s["modalities"]["eda"]["outputs"] for s in with_eda)


def test_acc_ahead_of_eda_does_not_run_eda_windows_early():
    """A board may send movement ahead of skin conductance: eda windows wait for EDA itself."""
    from edge.config import Config
    from edge.daemon import Pipeline, load_estimators
    from edge.stream import SampleBlock

    config = Config()
    estimators, _ = load_estimators(config)
    pipe = Pipeline(config, {"eda": estimators["eda"]}, {"eda"})
    rng = np.random.default_rng(0)
    acc = np.tile(GRAVITY, (int(400 * 32), 1)).astype(np.float32)
    pipe.ingest(SampleBlock("acc", E4_START, 32.0, acc, ("X", "Y", "Z")))  # 400 s of movement data first
    assert pipe.windows_by_modality["eda"] == 0  # nothing to run on yet
    eda = (2.0 + 0.01 * rng.standard_normal(int(400 * 4))).astype(np.float32)[:, None]
    for i in range(0, len(eda), 20):  # EDA follows in 5-s blocks
        pipe.ingest(SampleBlock("eda", E4_START + i / 4.0, 4.0, eda[i:i + 20], ("EDA",)))
    assert pipe.windows_by_modality["eda"] > 0
    latest = pipe.latest["eda"][-1]
    assert latest.outputs["motion_share"] == 0.0 and latest.quality > 0.5
