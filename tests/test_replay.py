"""Replays: E4 export folders and WFDB records, on fixtures written here in the real layouts."""

from __future__ import annotations

import logging

import asyncio
import datetime as dt
import time
from pathlib import Path

import numpy as np
import pytest

from edge.errors import SourceError
from firmware_bridge.devices import open_source

E4_START = 1_600_000_000.0


def collect(spec: str, speed: float | None = None, limit: int | None = None):
    async def run():
        source = open_source(spec, speed)
        out = []
        async for block in source.blocks():
            out.append(block)
            if limit is not None and len(out) >= limit:
                break
        return source, out

    return asyncio.run(run())


def write_e4_folder(folder: Path, seconds: float = 10.0, ibi_rows: list[tuple[float, float]] | None = None,
                    ibi_text: str | None = None) -> dict[str, np.ndarray]:
    """An E4 'download session' folder: start-time row, rate row, samples (IBI: offset s, interval s)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    eda = np.round(1.0 + 0.01 * np.arange(int(seconds * 4)), 6)
    bvp = np.round(50 * np.sin(2 * np.pi * 1.2 * np.arange(int(seconds * 64)) / 64) + rng.normal(0, 1, int(seconds * 64)), 2)
    (folder / "EDA.csv").write_text(f"{E4_START:.6f}\n4.000000\n" + "".join(f"{v:.6f}\n" for v in eda))
    (folder / "BVP.csv").write_text(f"{E4_START:.2f}\n64.000000\n" + "".join(f"{v:.2f}\n" for v in bvp))
    (folder / "TEMP.csv").write_text(f"{E4_START:.6f}\n4.000000\n" + "33.1\n" * int(seconds * 4))
    if ibi_text is None:
        rows = ibi_rows if ibi_rows is not None else [(2.0, 0.84375), (2.8125, 0.8125), (3.65625, 0.84375),
                                                     (4.5, 0.84375), (7.25, 0.8125)]
        ibi_text = f"{E4_START:.6f}, IBI\n" + "".join(f"{a:.6f},{b:.6f}\n" for a, b in rows)
    (folder / "IBI.csv").write_text(ibi_text)
    return {"eda": eda, "bvp": bvp}


def sample_times(blocks) -> np.ndarray:
    return np.concatenate([b.ts_unix + np.arange(b.n) / b.rate_hz for b in blocks])


def test_e4_replay_keeps_the_recordings_clock_and_interleaves_streams(tmp_path):
    truth = write_e4_folder(tmp_path / "S99")
    source, blocks = collect(f"replay:e4:{tmp_path / 'S99'}")
    by = {s: [b for b in blocks if b.stream == s] for s in ("eda", "bvp", "ibi")}
    for stream, rate in (("eda", 4.0), ("bvp", 64.0)):
        values = np.concatenate([b.data[:, 0] for b in by[stream]])
        np.testing.assert_allclose(values, truth[stream], atol=1e-4)
        np.testing.assert_allclose(sample_times(by[stream]), E4_START + np.arange(len(truth[stream])) / rate,
                                   atol=1e-6)
        assert all(b.rate_hz == rate for b in by[stream])
    ibi_times = np.concatenate([b.times_unix for b in by["ibi"]])
    ibi_ms = np.concatenate([b.data[:, 0] for b in by["ibi"]])
    np.testing.assert_allclose(ibi_times, E4_START + np.array([2.0, 2.8125, 3.65625, 4.5, 7.25]))
    np.testing.assert_allclose(ibi_ms, [843.75, 812.5, 843.75, 843.75, 812.5])
    assert all(b.rate_hz == 0 for b in by["ibi"])
    ends = [b.end_unix for b in blocks]
    assert ends == sorted(ends)  # one time line across streams
    assert source.stats.samples == {"eda": 40, "bvp": 640, "ibi": 5, "temp": 40}


def test_e4_empty_ibi_file_replays_eda_and_bvp_only(tmp_path):
    write_e4_folder(tmp_path / "S98", ibi_text="")
    _, blocks = collect(f"replay:e4:{tmp_path / 'S98'}")
    assert {b.stream for b in blocks} == {"eda", "bvp", "temp"}


def test_e4_streams_option(tmp_path):
    write_e4_folder(tmp_path / "S97")
    _, blocks = collect(f"replay:e4:{tmp_path / 'S97'}?streams=eda+ibi")
    assert {b.stream for b in blocks} == {"eda", "ibi"}


def test_e4_replay_is_paced_by_speed(tmp_path):
    write_e4_folder(tmp_path / "S96", seconds=10.0)
    t0 = time.monotonic()
    collect(f"replay:e4:{tmp_path / 'S96'}", speed=20.0)
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 1.5  # 10 s of recording at 20x
    t0 = time.monotonic()
    collect(f"replay:e4:{tmp_path / 'S96'}", speed=None)
    assert time.monotonic() - t0 < 0.4


def test_e4_missing_folder_or_eda_is_a_one_line_error(tmp_path):
    with pytest.raises(SourceError, match="not found") as err:
        open_source(f"replay:e4:{tmp_path / 'nope'}", None)
    assert "\n" not in str(err.value)
    write_e4_folder(tmp_path / "S95")
    (tmp_path / "S95" / "EDA.csv").unlink()
    with pytest.raises(SourceError, match="EDA.csv"):
        open_source(f"replay:e4:{tmp_path / 'S95'}", None)


def test_e4_malformed_file_is_reported_with_its_name_and_the_good_ones_replay(tmp_path, caplog):
    write_e4_folder(tmp_path / "S94")
    (tmp_path / "S94" / "EDA.csv").write_text(f"{E4_START}\n4.0\n1.0\nbanana\n")
    caplog.set_level(logging.ERROR, logger="firmware_bridge.replay")
    source, blocks = collect(f"replay:e4:{tmp_path / 'S94'}")
    assert [r.getMessage() for r in caplog.records if "EDA.csv" in r.getMessage()]
    assert "eda" in source.stream_errors and "EDA.csv" in source.stream_errors["eda"]
    assert blocks and "eda" not in {b.stream for b in blocks}


def test_e4_folder_with_no_usable_file_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "S95"
    folder.mkdir()
    (folder / "EDA.csv").write_text(f"{E4_START}\n4.0\n1.0\nbanana\n")
    with pytest.raises(SourceError, match="EDA.csv"):
        collect(f"replay:e4:{folder}?streams=eda")


def test_e4_replay_of_a_real_session(shared_data):
    folder = shared_data / "stress-predict" / "Raw_data" / "S02"
    if not folder.exists():
        pytest.skip("stress-predict S02 not present")
    start = float((folder / "EDA.csv").read_text().split("\n", 1)[0])
    source, blocks = collect(f"replay:e4:{folder}")
    first = {}
    for b in blocks:
        first.setdefault(b.stream, b)
    assert first["eda"].ts_unix == start and first["eda"].rate_hz == 4.0
    assert first["bvp"].ts_unix == start and first["bvp"].rate_hz == 64.0
    ibi_offset = float((folder / "IBI.csv").read_text().splitlines()[1].split(",")[0])
    assert first["ibi"].times_unix[0] == pytest.approx(start + ibi_offset)
    assert 300 < first["ibi"].data[0, 0] < 2000  # ms
    n_lines = {s: sum(1 for line in (folder / f).read_text().splitlines() if line.strip()) for s, f in
               (("eda", "EDA.csv"), ("bvp", "BVP.csv"), ("ibi", "IBI.csv"), ("temp", "TEMP.csv"), ("acc", "ACC.csv"))}
    assert source.stats.samples == {"eda": n_lines["eda"] - 2, "bvp": n_lines["bvp"] - 2, "ibi": n_lines["ibi"] - 1,
                                    "temp": n_lines["temp"] - 2, "acc": n_lines["acc"] - 2}
    assert first["temp"].ts_unix == start and first["temp"].rate_hz == 4.0 and 25 < first["temp"].data[0, 0] < 40
    assert first["acc"].rate_hz == 32.0 and first["acc"].channels == ("X", "Y", "Z")
    assert 0.5 < np.linalg.norm(first["acc"].data[0]) < 1.5  # g: the E4's 1/64-g counts scaled


# --- WFDB ---------------------------------------------------------------------------------------


def pack_212(adc: np.ndarray) -> bytes:
    """(n, ch) ints in [-2048, 2047] -> format 212 bytes (two 12-bit samples in three bytes)."""
    flat = adc.reshape(-1).astype(np.int64) & 0xFFF
    if len(flat) % 2:
        flat = np.append(flat, 0)
    a, b = flat[0::2], flat[1::2]
    out = np.empty((len(a), 3), dtype=np.uint8)
    out[:, 0] = a & 0xFF
    out[:, 1] = ((a >> 8) & 0x0F) | (((b >> 8) & 0x0F) << 4)
    out[:, 2] = b & 0xFF
    return out.tobytes()


def write_wfdb_record(folder: Path, name: str = "t100", base: str = "10:30:00 01/02/2020",
                      seconds: float = 3.0) -> np.ndarray:
    rate = 360
    n = int(seconds * rate)
    t = np.arange(n) / rate
    adc = np.stack([np.round(200 * np.sin(2 * np.pi * 1.1 * t)), np.round(-100 + 50 * np.cos(2 * np.pi * t))],
                   axis=1).astype(np.int64)
    adc[5, 0], adc[6, 0] = -2048, 2047  # the extremes of 12 bits
    (folder / f"{name}.dat").write_bytes(pack_212(adc))
    (folder / f"{name}.hea").write_text(
        f"{name} 2 {rate} {n} {base}\n"
        f"{name}.dat 212 200 12 0 0 0 0 MLII\n"
        f"{name}.dat 212 200 12 0 0 0 0 V5\n")
    return adc


def test_wfdb_replay_yields_ecg_in_microvolts_on_the_headers_clock(tmp_path):
    adc = write_wfdb_record(tmp_path)
    _, blocks = collect(f"replay:wfdb:{tmp_path / 't100'}")
    base = dt.datetime(2020, 2, 1, 10, 30, tzinfo=dt.timezone.utc).timestamp()
    assert blocks[0].ts_unix == base and blocks[0].stream == "ecg" and blocks[0].channels == ("MLII",)
    ecg = np.concatenate([b.data[:, 0] for b in blocks])
    np.testing.assert_allclose(ecg, adc[:, 0] / 200.0 * 1000.0)  # gain 200 adu/mV -> µV
    np.testing.assert_allclose(sample_times(blocks), base + np.arange(len(adc)) / 360.0, atol=1e-6)
    assert all(b.rate_hz == 360.0 for b in blocks) and len(blocks) == 6  # 3 s in 0.5-s blocks


def test_wfdb_channel_option_by_index_or_name(tmp_path):
    adc = write_wfdb_record(tmp_path)
    for option in ("channel=1", "channel=V5"):
        _, blocks = collect(f"replay:wfdb:{tmp_path / 't100'}?{option}")
        assert blocks[0].channels == ("V5",)
        np.testing.assert_allclose(np.concatenate([b.data[:, 0] for b in blocks]), adc[:, 1] * 5.0)
    with pytest.raises(SourceError, match="V9"):
        open_source(f"replay:wfdb:{tmp_path / 't100'}?channel=V9", None)
    with pytest.raises(SourceError, match="out of range"):
        open_source(f"replay:wfdb:{tmp_path / 't100'}?channel=2", None)


def test_wfdb_without_a_base_date_starts_now_or_at_start_option(tmp_path):
    write_wfdb_record(tmp_path, name="nodate", base="")
    before = time.time()
    _, blocks = collect(f"replay:wfdb:{tmp_path / 'nodate'}")
    assert before - 1 <= blocks[0].ts_unix <= time.time()
    _, blocks = collect(f"replay:wfdb:{tmp_path / 'nodate'}?start=1000")
    assert blocks[0].ts_unix == 1000.0


def test_wfdb_missing_record_is_a_one_line_error(tmp_path):
    with pytest.raises(SourceError, match="not found") as err:
        open_source(f"replay:wfdb:{tmp_path / 'absent'}", None)
    assert "\n" not in str(err.value)


def test_wfdb_replay_of_mitbih_100(shared_data):
    record = shared_data / "mitbih" / "100"
    if not record.with_suffix(".hea").exists():
        pytest.skip("MIT-BIH record 100 not present")
    _, blocks = collect(f"replay:wfdb:{record}?start=0", limit=4)
    assert blocks[0].channels == ("MLII",) and blocks[0].rate_hz == 360.0 and blocks[0].n == 180
    ecg = np.concatenate([b.data[:, 0] for b in blocks])
    assert ecg[0] == pytest.approx(-145.0)  # first MLII sample: (995 - 1024) / 200 mV
    assert 500 < ecg.max() - ecg.min() < 3000  # a QRS complex within 2 s, in µV
