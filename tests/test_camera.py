"""Camera source: video files written here with OpenCV, read back through ``camera:<file>``."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from edge.errors import SourceError
from firmware_bridge.devices import open_source
from firmware_bridge.transports.camera import CameraSource

cv2 = pytest.importorskip("cv2")

FILE_FPS = 20.0
N_FRAMES = 40  # 2 s


def write_clip(path: Path, n_frames: int = N_FRAMES, fps: float = FILE_FPS) -> Path:
    """MJPG in AVI: frame i is a flat colour whose brightness encodes i (so order can be checked)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(n_frames):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :] = (0, (5 * i) % 256, (5 * i) % 256)  # BGR: gray = 0.587 G + 0.299 R ≈ 4.4 i
        writer.write(frame)
    writer.release()
    return path


def collect(source, limit: int | None = None):
    async def run():
        out = []
        gen = source.blocks()
        try:
            async for block in gen:
                out.append(block)
                if limit is not None and len(out) >= limit:
                    break
        finally:
            await gen.aclose()
            await source.close()
        return out

    return asyncio.run(run())


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.avi")


def test_file_frames_are_gray_capped_to_fps_and_on_the_files_timeline(clip):
    frames = collect(open_source(f"camera:{clip}?fps=5&start=1000", None))
    assert len(frames) == 10  # 2 s at 5 fps
    np.testing.assert_allclose([f.ts_unix for f in frames], 1000.0 + 0.2 * np.arange(10), atol=1e-6)
    assert all(f.image.ndim == 2 and f.image.dtype == np.uint8 and f.image.shape == (48, 64) for f in frames)
    assert all(f.stream == "video" for f in frames)
    brightness = np.array([f.image.mean() for f in frames])
    np.testing.assert_allclose(brightness, 4.4 * 4 * np.arange(10), atol=3)  # frames 0, 4, 8, ...


def test_fps_above_the_files_rate_gives_every_frame(clip):
    frames = collect(open_source(f"camera:{clip}?fps=100&start=0", None))
    assert len(frames) == N_FRAMES
    np.testing.assert_allclose([f.ts_unix for f in frames], np.arange(N_FRAMES) / FILE_FPS, atol=1e-6)


def test_default_is_five_fps_from_now(clip):
    before = time.time()
    frames = collect(open_source(f"camera:{clip}", None))
    assert len(frames) == 10
    assert before - 1 <= frames[0].ts_unix <= time.time()


def test_file_playback_is_paced_by_speed(clip):
    t0 = time.monotonic()
    frames = collect(open_source(f"camera:{clip}?start=0", 4.0))
    elapsed = time.monotonic() - t0
    assert len(frames) == 10
    assert 0.35 <= elapsed < 1.5  # last frame at 1.8 s of video, at 4x


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(SourceError, match="not found") as err:
        open_source(f"camera:{tmp_path / 'absent.avi'}", None)
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_video_fails_when_opened(tmp_path):
    bad = tmp_path / "notes.avi"
    bad.write_text("this is not a video")
    with pytest.raises(SourceError, match="cannot"):
        collect(open_source(f"camera:{bad}", None))


def test_unknown_option_is_refused(clip):
    with pytest.raises(SourceError, match="unknown option"):
        open_source(f"camera:{clip}?fsp=5", None)
    with pytest.raises(SourceError, match="fps"):
        open_source(f"camera:{clip}?fps=0", None)


def test_pipeline_targets_use_gstreamer():
    source = open_source("camera:videotestsrc num-buffers=3 ! videoconvert ! appsink?fps=2", None)
    assert source.kind == "pipeline" and source.fps == 2.0 and source.live
    if "GStreamer" in cv2.getBuildInformation() and "YES" in cv2.getBuildInformation().split("GStreamer")[1][:40]:
        pytest.skip("this OpenCV has GStreamer; the refusal below is for builds without it")
    with pytest.raises(SourceError, match="GStreamer"):
        collect(source)


def test_live_camera_that_stops_is_reopened_with_backoff_without_blocking_the_loop(clip, caplog):
    """A live capture whose stream ends (as an unplugged camera does) is reopened and carries on,
    and the event loop keeps running through the outage.

    The 'camera' is the clip opened as a live device: wall-clock stamps, drop -> backoff -> reopen."""
    source = CameraSource(str(clip), None, fps=1000.0)
    source.kind = "device"
    caplog.set_level(logging.INFO, logger="firmware_bridge.transports.camera")

    async def run():
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        frames = []
        gen = source.blocks()
        async for frame in gen:
            frames.append(frame)
            if source.stats.reconnects >= 1 and len(frames) >= 3 and frames[-3].ts_unix > frames[0].ts_unix + 0.5:
                break
        await gen.aclose()
        await source.close()
        task.cancel()
        return frames, np.diff(ticks)

    t0 = time.time()
    frames, gaps = asyncio.run(run())
    assert source.stats.reconnects >= 1
    assert any("reopening in" in r.getMessage() for r in caplog.records)
    stamps = np.array([f.ts_unix for f in frames])
    assert np.all(np.diff(stamps) >= 0) and stamps[0] >= t0 - 1
    assert np.diff(stamps).max() >= 0.7  # the backoff pause (1 s +/- 20 %) between the two connections
    assert gaps.max() < 0.1  # the loop kept ticking while the capture thread waited and reopened
    assert not source._thread.is_alive()  # closing stopped the capture thread


def test_a_live_camera_absent_at_start_is_retried_with_backoff_and_said_once(caplog):
    """Issue 15: a camera not plugged in yet is retried like a lost one, not given up on."""
    source = CameraSource("97", None)  # no /dev/video97
    caplog.set_level(logging.INFO, logger="firmware_bridge.transports.camera")

    async def run():
        gen = source.blocks()
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(2.5)  # the first attempt and two backoff rounds (1 s, 2 s)
        still_trying = not task.done()
        await source.close()
        try:
            await asyncio.wait_for(task, 5)
        except StopAsyncIteration:
            pass
        return still_trying

    assert asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if "cannot open camera 97" in r.getMessage()]
    assert len(lines) == 1 and "retrying" in lines[0], lines


def test_without_opencv_a_camera_source_says_what_to_install_and_the_rest_runs(clip, tmp_path, mqtt_broker):
    """A physiology-only install has no OpenCV: simulated by making cv2's import fail in the daemon's process."""
    import subprocess
    import sys

    from conftest import REPO_ROOT, load_test_module

    code = "import sys; sys.modules['cv2'] = None; from edge.cli import main; sys.exit(main(sys.argv[1:]))"
    proc, states = load_test_module("test_daemon").run_collecting(mqtt_broker, "nocv", lambda: subprocess.run(
        [sys.executable, "-c", code, "run", "--source", f"camera:{clip}", "--source", "simulate:duration=40,seed=1",
         "--speed", "max", "--broker", mqtt_broker.url, "--device-id", "nocv", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT / "tests"))
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"source camera:{clip} failed" in errors[0], errors
    assert "pip install 'emotion-edge[camera]'" in errors[0]
    assert states and all("eeg" in s["modalities"] for s in states), states[-1:]
    assert "emotion-edge[camera]" in states[-1]["missing_reasons"]["face"], states[-1]

