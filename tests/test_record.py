"""Recording (run --record): EDF+/BDF+ files pyedflib reads back, JSON lines, rollover, kill -9, replay.

The daemon runs as a real process against a real broker; the files are read back with pyedflib
(the library researchers use) and compared with the signals the sources produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, load_test_module, run_cli, wait_until

pyedflib = pytest.importorskip("pyedflib")

from edge.edf_format import (EdfAnnotation, header_number, physical_range, read_stream_file,  # noqa: E402
                             record_duration_s, write_stream_file)
from edge.record import Recorder  # noqa: E402
from edge.stream import SampleBlock  # noqa: E402
from firmware_bridge.devices import open_source  # noqa: E402

DEVICE = "rec1"
SIM_START = 1_700_000_000.25  # a sub-second start: the EDF+ header must keep it
# A recording keeps each stream's samples losslessly (.npy) by default: its replay gives identical
# states. With lossless = false only the EDF/BDF files are left, and what EDF's 16-bit
# digitisation of EDA moves a replayed state by is measured here on the simulated 400 s session
# (fused fields <= 0.003, eda outputs <= 0.0125): a value that moves by less than a digitisation
# step can cross one of the int8 eda model's input quantisation boundaries and move its output by
# one or two output steps (1/128 of the range). On real E4 data it is more (docs/recording.md).
FUSED_TOLERANCE = 0.01
MODALITY_TOLERANCE = 0.02
FUSED = ("valence", "arousal", "stress", "confidence")


def daemon_args(broker_url: str, tmp: Path, *extra: str) -> tuple[str, ...]:
    return ("run", "--speed", "max", "--broker", broker_url, "--device-id", DEVICE, *extra)


def states_of(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("states-*.jsonl")) for line in f.read_text().splitlines()]


def events_of(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("events-*.jsonl")) for line in f.read_text().splitlines()]


def simulated_blocks(seed: int, duration_s: float) -> list[SampleBlock]:
    async def run():
        source = open_source(f"simulate:seed={seed},duration={duration_s:g},start={SIM_START}", None)
        return [b async for b in source.blocks()]

    return asyncio.run(run())


def edf_signals(path: Path) -> dict:
    reader = pyedflib.EdfReader(str(path))
    try:
        return {"labels": reader.getSignalLabels(), "rates": list(reader.getSampleFrequencies()),
                "dims": [reader.getPhysicalDimension(i) for i in range(reader.signals_in_file)],
                "data": [reader.readSignal(i) for i in range(reader.signals_in_file)],
                "pmin": [reader.getPhysicalMinimum(i) for i in range(reader.signals_in_file)],
                "pmax": [reader.getPhysicalMaximum(i) for i in range(reader.signals_in_file)],
                "filetype": reader.filetype, "annotations": reader.readAnnotations(),
                "duration_s": reader.getFileDuration()}
    finally:
        reader.close()


def test_simulated_run_writes_edf_files_that_pyedflib_reads_back(mqtt_broker, tmp_path):
    collector = load_test_module("test_daemon").Collector(mqtt_broker, DEVICE)
    rec = tmp_path / "rec"
    try:
        proc = run_cli(*daemon_args(mqtt_broker.url, tmp_path, "--source", f"simulate:seed=7,duration=60,start={SIM_START}",
                                    "--state-dir", str(tmp_path / "state"), "--record", str(rec)), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert collector.wait_for(lambda c: "offline" in c.statuses())
        published = collector.states()
    finally:
        collector.close()
    manifest = json.loads((rec / "recording.json").read_text())
    assert manifest["device_id"] == DEVICE and len(manifest["chunks"]) == 1 and manifest["chunks"][0]["complete"]
    assert {s["stream"]: s["format"] for s in manifest["streams"]} == {"eeg": "BDF+", "ecg": "EDF+", "eda": "EDF+"}

    truth: dict[str, list[np.ndarray]] = {}
    for block in simulated_blocks(7, 60):
        truth.setdefault(block.stream, []).append(block.data)
    expected = {  # file: labels, rate, unit, stream
        "eeg-0000.bdf": (["EEG TP9", "EEG AF7", "EEG AF8", "EEG TP10"], 256.0, "uV", "eeg"),
        "ecg-0000.edf": (["ECG"], 130.0, "uV", "ecg"),
        "eda-0000.edf": (["EDA"], 4.0, "uS", "eda"),
    }
    for name, (labels, rate, unit, stream) in expected.items():
        got = edf_signals(rec / name)
        assert got["labels"] == labels and got["rates"] == [rate] * len(labels) and got["dims"] == [unit] * len(labels)
        assert got["filetype"] == (pyedflib.FILETYPE_BDFPLUS if name.endswith(".bdf") else pyedflib.FILETYPE_EDFPLUS)
        assert got["duration_s"] == pytest.approx(60.0)
        original = np.concatenate(truth[stream])
        bits = 24 if name.endswith(".bdf") else 16
        for k in range(len(labels)):
            step = (got["pmax"][k] - got["pmin"][k]) / (2 ** bits - 1)
            assert got["pmin"][k] <= original[:, k].min() and original[:, k].max() <= got["pmax"][k]  # not clipped
            assert np.abs(got["data"][k] - original[:, k]).max() <= step  # within one digitisation step
        onsets, _, texts = got["annotations"]
        assert any(t.startswith("label ") for t in texts), texts
        assert "present eeg" in texts and "missing eda" in texts
        # the header keeps the sub-second start: read back by our reader (pyedflib misreads sub-seconds)
        streams, _ = read_stream_file(rec / name)
        assert streams[0].start_unix == pytest.approx(SIM_START, abs=1e-6)

    # the states file holds exactly what was published, in order
    recorded = states_of(rec)
    assert recorded == published and len(recorded) >= 60 / 5 - 2
    mods = [json.loads(line) for line in (rec / "modalities-0000.jsonl").read_text().splitlines()]
    assert mods and all({"seq", "ts", "modality", "quality", "outputs", "model_version"} == set(m) for m in mods)
    events = events_of(rec)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "label" in kinds and "ended" in kinds
    assert all(set(e) == {"ts", "kind", "modality", "text"} for e in events)
    missing = [e for e in events if e["kind"] == "missing"]  # eda/cardiac warm up for 300 s: missing with reasons
    assert {e["modality"] for e in missing} == {"eda", "cardiac"} and all("warming up" in e["text"] for e in missing)
    assert all(SIM_START <= e["ts"] <= SIM_START + 60 + 1e-6 for e in events)  # on the data's clock


def write_e4_with_beats(folder: Path, start: float, duration_s: float) -> None:
    """The E4 session of test_daemon plus an IBI.csv with a beat every ~0.8 s (offset s, interval s)."""
    load_test_module("test_daemon").write_e4_session(folder, start, duration_s)
    rng = np.random.default_rng(5)
    ibi = 0.8 + rng.normal(0, 0.03, int(duration_s / 0.8))
    ibi = np.round(ibi * 64) / 64  # the E4's 1/64 s resolution
    offsets = np.cumsum(ibi)
    rows = [(t, i) for t, i in zip(offsets, ibi) if t < duration_s - 1]
    (folder / "IBI.csv").write_text(f"{start:.6f}, IBI\n" + "".join(f"{t:.6f},{i:.6f}\n" for t, i in rows))


def without_seq(states: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "seq"} for s in states]


def compare_states(first: list[dict], second: list[dict], tolerance_fused: float, tolerance_modality: float) -> dict:
    assert len(first) == len(second) and first, (len(first), len(second))
    worst: dict[str, float] = {}
    for a, b in zip(first, second):
        assert a["ts"] == b["ts"] and a["label"] == b["label"] and a["missing"] == b["missing"], (a, b)
        assert set(a["modalities"]) == set(b["modalities"])
        for key in FUSED:
            if a[key] is None or b[key] is None:
                assert a[key] == b[key]
                continue
            worst[key] = max(worst.get(key, 0.0), abs(a[key] - b[key]))
        for m, entry in a["modalities"].items():
            for key, value in entry["outputs"].items():
                other = b["modalities"][m]["outputs"][key]
                if isinstance(value, (int, float)):
                    worst[f"{m}.{key}"] = max(worst.get(f"{m}.{key}", 0.0), abs(value - other))
                else:
                    assert value == other
    for key, diff in worst.items():
        assert diff <= (tolerance_fused if key in FUSED else tolerance_modality), (key, diff)
    return worst


def test_e4_replay_is_recorded_as_edf_and_its_recording_replays_to_the_same_states(mqtt_broker, tmp_path):
    start = 1_500_000_000.0
    write_e4_with_beats(tmp_path / "S01", start, 400.0)  # past the 300 s eda/cardiac windows
    config = tmp_path / "chunks.toml"
    config.write_text("[record]\nmax_chunk_s = 150.0\n")  # format "auto": the E4's EDA and BVP are EDF+
    first, second = tmp_path / "first", tmp_path / "second"
    proc = run_cli(*daemon_args(mqtt_broker.url, tmp_path, "--config", str(config), "--source",
                                f"replay:e4:{tmp_path / 'S01'}", "--state-dir", str(tmp_path / "s1"), "--record", str(first)))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((first / "recording.json").read_text())
    assert len(manifest["chunks"]) == 3  # 400 s in chunks of 150 s
    bvp = edf_signals(first / "bvp-0000.edf")
    assert bvp["labels"] == ["BVP"] and bvp["rates"] == [64.0] and bvp["dims"] == [""]
    assert bvp["filetype"] == pyedflib.FILETYPE_EDFPLUS and bvp["duration_s"] == pytest.approx(150.0, abs=1.0)
    eda = edf_signals(first / "eda-0001.edf")
    assert eda["labels"] == ["EDA"] and eda["rates"] == [4.0] and eda["dims"] == ["uS"]
    later = edf_signals(first / "eda-0002.edf")["annotations"][2]  # states begin after the 300 s windows
    assert any(t.startswith("label ") for t in later) and "present eda" in later, later
    # beats: exact in the JSON lines, and as EDF+ annotations of the E4's files
    beats = [t for f in sorted(first.glob("ibi-*.jsonl")) for line in f.read_text().splitlines()
             for t in json.loads(line)["times_unix"]]
    rows = [line.split(",") for line in (tmp_path / "S01" / "IBI.csv").read_text().splitlines()[1:]]
    assert beats == [start + float(t) for t, _ in rows]
    assert sum(t.startswith("IBI ") and t.endswith(" ms") for t in bvp["annotations"][2]) > 100
    files = [f for c in manifest["chunks"] for f in c["files"]]
    assert {f["file"] for f in files} == {f"{s}-{i:04d}.edf" for s in ("eda", "bvp") for i in range(3)}
    assert all(np.load(first / f["samples_file"]).shape == (f["n_samples"], 1) for f in files)  # lossless copies
    assert files[0]["start_unix"] == start

    proc = run_cli(*daemon_args(mqtt_broker.url, tmp_path, "--source", f"replay:record:{first}",
                                "--state-dir", str(tmp_path / "s2"), "--record", str(second)))
    assert proc.returncode == 0, proc.stderr
    a, b = states_of(first), states_of(second)
    assert any({"eda", "cardiac"} <= set(s["modalities"]) for s in a)
    assert without_seq(a) == without_seq(b)  # every field of every state identical


@pytest.mark.parametrize("lossless", [True, False])
def test_simulated_recording_replays_to_the_same_states(mqtt_broker, tmp_path, lossless):
    config = tmp_path / "chunks.toml"
    config.write_text(f"[record]\nlossless = {str(lossless).lower()}\nmax_chunk_s = 100.0\n")
    first, second = tmp_path / "first", tmp_path / "second"
    proc = run_cli(*daemon_args(mqtt_broker.url, tmp_path, "--config", str(config), "--source",
                                "simulate:seed=7,duration=400", "--state-dir", str(tmp_path / "s1"), "--record", str(first)))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((first / "recording.json").read_text())["chunks"]) == 5
    proc = run_cli(*daemon_args(mqtt_broker.url, tmp_path, "--source", f"replay:record:{first}",
                                "--state-dir", str(tmp_path / "s2"), "--record", str(second)))
    assert proc.returncode == 0, proc.stderr
    a, b = states_of(first), states_of(second)
    assert {"eeg", "eda", "cardiac"} == set(a[-1]["modalities"])
    assert sorted(f.name for f in first.glob("*-0000.*df")) == ["ecg-0000.edf", "eda-0000.edf", "eeg-0000.bdf"]
    if lossless:
        assert without_seq(a) == without_seq(b)  # every field of every state identical
    else:  # from the EDF files: EEG in BDF+ comes back exactly, EDA's 16 bits within the tolerance
        assert not list(first.glob("*.npy"))
        worst = compare_states(a, b, FUSED_TOLERANCE, MODALITY_TOLERANCE)
        assert worst["eeg.valence"] == worst["eeg.arousal"] == 0.0 and worst["cardiac.stress"] == 0.0
        assert 0.0 < worst["eda.stress"] + worst["eda.arousal"]  # the digitisation shows, so this measures it


def test_kill_9_loses_at_most_the_open_chunk(mqtt_broker, tmp_path):
    config = tmp_path / "chunks.toml"
    config.write_text("[record]\nmax_chunk_s = 10.0\n")
    rec = tmp_path / "rec"
    stderr = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config), "--source", "simulate:seed=3",
                             "--speed", "20", "--broker", mqtt_broker.url, "--device-id", DEVICE,
                             "--state-dir", str(tmp_path / "state"), "--record", str(rec)],
                            cwd=REPO_ROOT / "tests", stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        def complete_chunks() -> int:
            try:
                return sum(c["complete"] for c in json.loads((rec / "recording.json").read_text())["chunks"])
            except (OSError, ValueError):
                return 0

        assert wait_until(lambda: complete_chunks() >= 3, timeout_s=60), (tmp_path / "daemon.log").read_text()
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr.close()
    manifest = json.loads((rec / "recording.json").read_text())
    complete = [c for c in manifest["chunks"] if c["complete"]]
    assert len(complete) >= 3 and not manifest["chunks"][-1]["complete"]  # the open chunk is listed as such
    for chunk in complete:  # every closed chunk is whole: EDF files of 10 s, JSON lines parse
        assert {f["stream"] for f in chunk["files"]} == {"eeg", "ecg", "eda"}
        for entry in chunk["files"]:
            got = edf_signals(rec / entry["file"])
            assert got["duration_s"] == pytest.approx(10.0, abs=1.0)
        for line in (rec / chunk["states"]).read_text().splitlines():
            json.loads(line)
    # the open chunk's JSON lines survive too (flushed per line): at most its last line is cut
    lines = (rec / manifest["chunks"][-1]["events"]).read_text().splitlines()
    for line in lines[:-1]:
        json.loads(line)
    # a restart carries on in the same folder, at the next chunk; the recording replays
    proc = run_cli("run", "--config", str(config), "--source", "simulate:seed=3,duration=15", "--speed", "max",
                   "--broker", mqtt_broker.url, "--device-id", DEVICE, "--state-dir", str(tmp_path / "state"),
                   "--record", str(rec))
    assert proc.returncode == 0, proc.stderr
    after = json.loads((rec / "recording.json").read_text())
    assert len(after["sessions"]) == 2 and after["chunks"][: len(manifest["chunks"])] == manifest["chunks"]
    assert after["chunks"][-1]["index"] == len(after["chunks"]) - 1 and after["chunks"][-1]["complete"]
    source = open_source(f"replay:record:{rec}", None)
    assert set(source.streams) == {"eeg", "ecg", "eda"}


# -- the recorder and the EDF helpers in-process --------------------------------------------------

def regular(stream: str, ts: float, rate: float, n: int, channels=("X",), lost: int = 0, seed: int = 0) -> SampleBlock:
    data = np.random.default_rng(seed).normal(0, 10, (n, len(channels))).astype(np.float32)
    return SampleBlock(stream, ts, rate, data, tuple(channels), "test", lost_samples=lost)


def test_recorder_splits_at_gaps_rolls_over_by_size_and_keeps_sample_times(tmp_path):
    rec = Recorder(tmp_path / "r", DEVICE, max_chunk_s=1000.0, max_chunk_mb=0.01, sources=["test"])
    t0 = 1_600_000_000.5
    blocks = [regular("ecg", t0 + i, 130.0, 130, ("ECG",), seed=i) for i in range(3)]
    blocks.append(regular("ecg", t0 + 10.0, 130.0, 130, ("ECG",), lost=1300, seed=9))  # a reported gap
    blocks.append(regular("ecg", t0 + 11.0, 130.0, 130, ("ECG",), seed=10))
    for block in blocks[:5]:
        rec.on_block("test", block)
    rec.close()
    manifest = json.loads((tmp_path / "r" / "recording.json").read_text())
    files = [f for c in manifest["chunks"] for f in c["files"]]
    # 650 samples fit in 0.01 MB (5000 16-bit samples): the gap starts a second file in the same chunk
    assert [f["file"] for f in files] == ["ecg-0000.edf", "ecg-0000-1.edf"]
    assert files[0]["start_unix"] == t0 and files[0]["n_samples"] == 390
    assert files[1]["start_unix"] == t0 + 10.0 and files[1]["n_samples"] == 260
    for f, parts in ((files[0], blocks[:3]), (files[1], blocks[3:])):
        streams, _ = read_stream_file(tmp_path / "r" / f["file"], n_samples=f["n_samples"])
        original = np.concatenate([b.data for b in parts])[:, 0]
        step = np.diff(f["physical_range"][0])[0] / 65535
        assert np.abs(streams[0].data[:, 0] - original).max() <= step
    assert any(e["kind"] == "gap" and "1300" in e["text"] for e in events_of(tmp_path / "r"))

    small = Recorder(tmp_path / "s", DEVICE, max_chunk_s=1000.0, max_chunk_mb=0.002)  # 1000 samples a chunk
    for i in range(12):
        small.on_block("test", regular("ecg", t0 + i, 130.0, 130, ("ECG",), seed=i))
    small.close()
    chunks = json.loads((tmp_path / "s" / "recording.json").read_text())["chunks"]
    assert len(chunks) >= 2 and all(c["files"] for c in chunks[:-1])
    # chunks hold whole data records and abut: the replayed samples are the original ones, no seam
    replayed = asyncio.run(_collect(open_source(f"replay:record:{tmp_path / 's'}", None)))
    times = np.concatenate([b.ts_unix + np.arange(b.n) / b.rate_hz for b in replayed])
    assert np.allclose(times, t0 + np.arange(12 * 130) / 130.0, atol=1e-6)
    with pytest.raises(Exception, match="no such stream data"):
        open_source(f"replay:record:{tmp_path / 's'}?streams=eeg", None)
    assert open_source(f"replay:record:{tmp_path / 's'}?streams=ecg", None).streams == ("ecg",)


def test_sources_on_different_clocks_do_not_make_every_chunk_full(tmp_path):
    # an E4 replay (2017) beside a live strap (now): chunks still close after max_chunk_s of each
    rec = Recorder(tmp_path / "r", DEVICE, max_chunk_s=10.0, max_chunk_mb=64.0)
    for i in range(25):
        rec.on_block("replay:e4:S01", regular("eda", 1_500_000_000.0 + i, 4.0, 4, ("EDA",), seed=i))
        rec.on_block("ble:hrs:AA", regular("ecg", 1_790_000_000.0 + i, 130.0, 130, ("ECG",), seed=i))
    rec.close()
    chunks = json.loads((tmp_path / "r" / "recording.json").read_text())["chunks"]
    assert len(chunks) == 3 and [len(c["files"]) for c in chunks] == [2, 2, 2]


async def _collect(source):
    return [b async for b in source.blocks()]


def test_edf_helpers_header_numbers_record_durations_and_unclipped_ranges(tmp_path):
    assert header_number(-1234.5678, "down") == -1234.57 and header_number(-1234.5678, "up") == -1234.56
    assert header_number(123456.789, "up") == 123456.8 and header_number(0.1234567891, "down") == 0.123456
    assert record_duration_s(256.0) == 1 and record_duration_s(25.6) == 5 and record_duration_s(0.5) == 2
    spiky = np.concatenate([np.zeros(100), [187_500.0, -187_500.0]])  # a railed Cyton channel, in µV
    lo, hi = physical_range(spiky)
    assert lo <= -187_500.0 and hi >= 187_500.0
    data = np.random.default_rng(1).normal(0, 40, (256, 2)).astype(np.float32)  # 25.6 Hz: 2 records of 5 s
    write_stream_file(tmp_path / "x.bdf", "eeg", ("AF7", "AF8"), 25.6, 1_650_000_000.123, data,
                      [EdfAnnotation(1_650_000_002.0, -1.0, "label calm")])
    got = edf_signals(tmp_path / "x.bdf")
    assert got["labels"] == ["EEG AF7", "EEG AF8"] and got["rates"] == [25.6, 25.6]
    assert list(got["annotations"][2]) == ["label calm"] and got["annotations"][0][0] == pytest.approx(1.877, abs=1e-3)
    # replay:edf maps the labels to an eeg stream with its channels, on the header's clock
    source = open_source(f"replay:edf:{tmp_path / 'x.bdf'}", None)
    blocks = asyncio.run(_collect(source))
    assert source.streams == ("eeg",) and blocks[0].channels == ("AF7", "AF8")
    assert blocks[0].ts_unix == pytest.approx(1_650_000_000.123, abs=1e-6) and blocks[0].rate_hz == 25.6
    assert np.abs(np.concatenate([b.data for b in blocks]) - data).max() < 1e-3


def test_replay_record_and_edf_errors_are_one_line(tmp_path):
    from edge.errors import SourceError

    with pytest.raises(SourceError, match="no recording.json"):
        open_source(f"replay:record:{tmp_path}", None)
    (tmp_path / "notes.edf").write_text("not an EDF file")
    with pytest.raises(SourceError, match="notes.edf"):
        open_source(f"replay:edf:{tmp_path / 'notes.edf'}", None)
    proc = run_cli("run", "--source", "simulate", "--record", str(tmp_path / "r"), "--print-config")
    assert proc.returncode == 0 and f'dir = "{tmp_path / "r"}"' in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[record]\nformat = "wav"\n')
    proc = run_cli("run", "--config", str(bad), "--print-config")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "emotion-edge run: config: record.format: must be 'auto' or 'bdf', got 'wav'"]


# -- LSL -------------------------------------------------------------------------------------------

def lsl_channels(info) -> list[tuple[str, str]]:
    out, ch = [], info.desc().child("channels").child("channel")
    while not ch.empty():
        out.append((ch.child_value("label"), ch.child_value("unit")))
        ch = ch.next_sibling()
    return out


def test_lsl_outlets_carry_raw_streams_and_states_to_a_real_inlet(mqtt_broker, tmp_path):
    from edge.lsl import load_pylsl

    pylsl, why = load_pylsl()
    if pylsl is None:
        pytest.skip(why)  # the one-line message itself is tested below
    stderr = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--source", "simulate:seed=2,duration=60",
                             "--speed", "20", "--broker", mqtt_broker.url, "--device-id", "lsl1", "--lsl",
                             "--state-dir", str(tmp_path / "state")],
                            cwd=REPO_ROOT / "tests", stderr=stderr, stdout=subprocess.DEVNULL)
    try:
        found = {}
        for name in ("lsl1 eeg", "lsl1 states"):
            streams = pylsl.resolve_byprop("name", name, 1, 15.0)
            assert streams, f"no LSL stream {name!r}: {(tmp_path / 'daemon.log').read_text()[-2000:]}"
            found[name] = pylsl.StreamInlet(streams[0])
        eeg, states = found["lsl1 eeg"], found["lsl1 states"]
        info = eeg.info(5.0)
        assert info.type() == "EEG" and info.nominal_srate() == 256.0 and info.channel_count() == 4
        assert lsl_channels(info) == [("TP9", "uV"), ("AF7", "uV"), ("AF8", "uV"), ("TP10", "uV")]
        sinfo = states.info(5.0)
        assert sinfo.type() == "EmotionState" and [c for c, _ in lsl_channels(sinfo)] == [
            "valence", "arousal", "stress", "confidence"]
        eeg_samples, state_samples = [], []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (len(eeg_samples) < 512 or len(state_samples) < 2):
            chunk, _ = eeg.pull_chunk(timeout=0.2)
            eeg_samples.extend(chunk)
            chunk, _ = states.pull_chunk(timeout=0.0)
            state_samples.extend(chunk)
        assert len(eeg_samples) >= 512 and all(len(s) == 4 for s in eeg_samples)
        assert np.std(np.array(eeg_samples)) > 1.0  # a signal, not zeros
        assert len(state_samples) >= 2
        for valence, arousal, stress, confidence in state_samples:
            assert -1 <= valence <= 1 and -1 <= arousal <= 1 and 0 <= stress <= 1 and 0 <= confidence <= 1
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr.close()


def test_missing_liblsl_is_one_line_and_the_daemon_goes_on(mqtt_broker, tmp_path):
    # pylsl loads PYLSL_LIB first: a file that is not a loadable library for this machine is what an
    # aarch64 box with only pylsl's x86_64 build has; pylsl then raises, the daemon says so and goes on
    not_a_library = tmp_path / "liblsl.so"
    not_a_library.write_bytes(b"\x7fELF not really")
    proc = run_cli("run", "--source", "simulate:seed=2,duration=30", "--speed", "max", "--broker", mqtt_broker.url,
                   "--device-id", "lsl2", "--lsl", "--state-dir", str(tmp_path / "state"), "--record", str(tmp_path / "r"),
                   env={"PYLSL_LIB": str(not_a_library)})
    assert proc.returncode == 0, proc.stderr
    lsl_lines = [line for line in proc.stderr.splitlines() if " edge.lsl: " in line or "Traceback" in line]
    assert len(lsl_lines) == 1 and "lsl: liblsl not found" in lsl_lines[0], proc.stderr
    assert len(states_of(tmp_path / "r")) >= 30 / 5 - 2  # recording and publishing went on


# -- a live serial source that drops packets, vanishes and returns ---------------------------------

def test_a_serial_cyton_that_drops_vanishes_and_returns_is_recorded_with_gap_lost_and_reconnected(mqtt_broker, tmp_path):
    harness = load_test_module("daemon_harness")
    fake_serial = harness.load_test_module("fake_serial_devices")
    rate = fake_serial.cyton.RATE_HZ
    link = str(tmp_path / "ttyCYTON")
    first = fake_serial.FakeCyton(faults={int(1.5 * rate) + k: "drop" for k in range(5)}, link=link)
    first.start()
    second = None
    rec = tmp_path / "rec"
    daemon = harness.DaemonProcess(["--source", f"serial:cyton:{link}", "--speed", "1", "--duration", "60",
                                    "--broker", mqtt_broker.url, "--device-id", DEVICE,
                                    "--state-dir", str(tmp_path / "state"), "--record", str(rec)], tmp_path)
    try:
        assert daemon.wait_for_log(f"serial:cyton:{link}: connected", 20), daemon.stderr()[-2000:]
        time.sleep(3.5)
        first.vanish()  # unplugged
        assert wait_until(lambda: any(e["kind"] == "lost" for e in events_of(rec)), 10), daemon.stderr()[-3000:]
        second = fake_serial.FakeCyton(link=link)  # plugged back in
        second.start()
        assert daemon.wait_for_log(f"serial:cyton:{link}: reconnected", 15), daemon.stderr()[-3000:]
        time.sleep(2.0)
        daemon.terminate()
        assert daemon.wait(30) == 0, daemon.stderr()[-3000:]
    finally:
        daemon.close()
        first.vanish()
        if second is not None:
            second.vanish()
    events = events_of(rec)
    kinds = [e["kind"] for e in events]
    assert kinds.index("gap") < kinds.index("lost") < kinds.index("reconnected"), kinds
    gap = next(e for e in events if e["kind"] == "gap")
    assert "5 eeg sample(s) lost" in gap["text"], gap
    lost, back = (next(e for e in events if e["kind"] == k) for k in ("lost", "reconnected"))
    assert lost["ts"] < back["ts"] and f"serial:cyton:{link}" in lost["text"]
    files = json.loads((rec / "recording.json").read_text())["chunks"][0]["files"]
    # three continuous stretches: before the drop, until unplugged, after the reconnect
    assert [f["file"] for f in files] == ["eeg-0000.bdf", "eeg-0000-1.bdf", "eeg-0000-2.bdf"], files
    got = edf_signals(rec / "eeg-0000-2.bdf")
    assert got["labels"] == [f"EEG {c}" for c in fake_serial.cyton.DEFAULT_MONTAGE] and set(got["rates"]) == {rate}
    assert got["dims"] == ["uV"] * 8 and got["filetype"] == pyedflib.FILETYPE_BDFPLUS
    texts = list(got["annotations"][2])
    assert "reconnected serial:cyton" in texts, texts  # where the stretch after the reconnect starts
    before = list(edf_signals(rec / "eeg-0000-1.bdf")["annotations"][2])
    assert "gap eeg 5 lost" in before and "lost serial:cyton" in before, before  # its start and its end
    assert files[2]["start_unix"] >= back["ts"] - 1e-6 and files[1]["start_unix"] <= lost["ts"]


def test_a_recording_folder_that_goes_away_is_one_line_and_the_daemon_goes_on(mqtt_broker, tmp_path):
    import shutil

    config = tmp_path / "chunks.toml"
    config.write_text("[record]\nmax_chunk_s = 5.0\n")
    rec = tmp_path / "rec"
    harness = load_test_module("daemon_harness")
    daemon = harness.DaemonProcess(["--config", str(config), "--source", "simulate:seed=4,duration=60",
                                    "--speed", "20", "--broker", mqtt_broker.url, "--device-id", DEVICE,
                                    "--state-dir", str(tmp_path / "state"), "--record", str(rec)], tmp_path)
    try:
        assert wait_until(lambda: (rec / "states-0001.jsonl").exists(), 20), daemon.stderr()[-2000:]
        shutil.rmtree(rec)  # the USB stick is pulled: the next chunk's files cannot be created
        assert daemon.wait(60) == 0, daemon.stderr()[-3000:]
    finally:
        daemon.close()
    err = daemon.stderr()
    failed = [line for line in err.splitlines() if "it stops here" in line]
    assert len(failed) == 1 and "recorder:" in failed[0] and "Traceback" not in err, err[-3000:]
    assert "stopped: " in err and int(err.split("stopped: ")[1].split()[0]) >= 60 / 5 - 2  # published them all


def test_a_record_dir_that_cannot_be_made_is_one_line(mqtt_broker, tmp_path):
    (tmp_path / "afile").write_text("")
    proc = run_cli("run", "--source", "simulate:duration=10", "--speed", "max", "--broker", mqtt_broker.url,
                   "--state-dir", str(tmp_path / "state"), "--record", str(tmp_path / "afile" / "rec"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"emotion-edge run: record dir {tmp_path / 'afile' / 'rec'}: "
                                                           "cannot create"), proc.stderr


def test_a_real_e4_session_replays_from_its_recording_to_identical_states(shared_data, mqtt_broker, tmp_path):
    """The first 10 minutes of stress-predict's S01 (a real E4 export), cut into tmp in its own layout."""
    source = shared_data / "stress-predict" / "Raw_data" / "S01"
    if not (source / "EDA.csv").exists():
        pytest.skip(f"{source} not present")
    seconds = 600
    session = tmp_path / "S01"
    session.mkdir()
    for name, rate in (("EDA.csv", 4), ("BVP.csv", 64)):
        lines = (source / name).read_text().splitlines()
        (session / name).write_text("\n".join(lines[: 2 + seconds * rate]) + "\n")
    ibi = (source / "IBI.csv").read_text().splitlines()
    (session / "IBI.csv").write_text("\n".join([ibi[0], *(r for r in ibi[1:] if float(r.split(",")[0]) < seconds)]) + "\n")
    first, second = tmp_path / "first", tmp_path / "second"
    for spec, rec, state in ((f"replay:e4:{session}", first, "s1"), (f"replay:record:{first}", second, "s2")):
        proc = run_cli(*daemon_args(mqtt_broker.url, tmp_path, "--source", spec, "--state-dir", str(tmp_path / state),
                                    "--record", str(rec)))
        assert proc.returncode == 0, proc.stderr
    a, b = states_of(first), states_of(second)
    assert len(a) >= (seconds - 300) / 5 - 2 and any({"eda", "cardiac"} <= set(s["modalities"]) for s in a)
    assert without_seq(a) == without_seq(b)
    bvp = edf_signals(first / "bvp-0000.edf")
    original = np.array([float(v) for v in (session / "BVP.csv").read_text().splitlines()[2:]])
    step = (bvp["pmax"][0] - bvp["pmin"][0]) / 65535
    n = len(bvp["data"][0])  # the rest (under a second) opened the next chunk
    assert bvp["rates"] == [64.0] and n >= 599 * 64 and np.abs(bvp["data"][0] - original[:n]).max() <= step
