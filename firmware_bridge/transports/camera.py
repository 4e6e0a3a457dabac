"""Camera frames as a source: a live camera, a video file, or a GStreamer pipeline, via OpenCV.

Spec: ``camera:TARGET`` with optional ``?fps=5&start=UNIX``:

- ``camera:0``                     a live camera by index (V4L2 on Linux); ``/dev/video0`` and
                                   ``rtsp://…``/``http://…`` URLs are live too
- ``camera:clip.avi``              any video file OpenCV reads; keeps its own timeline
                                   (frame i at start + i / file fps), paced by ``speed``
- ``camera:nvarguscamerasrc ! … ! appsink``  a GStreamer pipeline (any target containing ``!``;
                                   Jetson/RPi CSI cameras), opened with ``cv2.CAP_GSTREAMER``

``fps`` caps the frame rate handed to the face model (default 5: the model need not run at
30 fps on a Pi); a live camera is still read at its own rate, but only the frames that are
passed on are decoded (``grab`` all, ``retrieve`` some), so the picture is never stale.
``start`` (files only) is the unix time of the first frame (default: when playback starts).
Frames are converted to gray (the face model's input).

Capture runs in a worker thread (OpenCV calls block); frames reach the event loop through
an ``asyncio.Queue``. Files apply back-pressure (the reader waits for the consumer); live
frames that the consumer cannot take in time are dropped, never queued up. A live camera
that stops delivering is reopened with backoff, logged in one line. ``cv2`` is imported only
when a camera source is opened.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import MissingExtraError, SourceError
from edge.stream import FrameBlock
from firmware_bridge.backoff import Backoff
from firmware_bridge.clock import arrival_time
from firmware_bridge.simulate import Pacer, parse_options, split_query
from firmware_bridge.source import Source

log = logging.getLogger(__name__)

DEFAULT_FPS = 5.0
_FILE_FPS_FALLBACK = 30.0  # when a container does not say its frame rate
_PREFETCH_FRAMES = 4  # frames the reader may run ahead of the consumer
_END = object()


def _import_cv2(spec: str) -> Any:
    try:
        import cv2
    except ImportError:  # OpenCV is the optional [camera] extra (or the distribution's python3-opencv)
        raise SourceError(f"source {spec!r}: {MissingExtraError('OpenCV (cv2)', 'camera')} "
                          "(or the distribution's python3-opencv, see docs/deploy.md)") from None
    return cv2


def to_gray(frame: np.ndarray, cv2: Any) -> np.ndarray:
    """BGR, BGRA or gray uint8 -> gray uint8 (h, w)."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


class CameraSource(Source):
    """OpenCV capture in a thread, gray ``FrameBlock``s at up to ``fps`` (see module doc)."""

    streams = ("video",)

    def __init__(self, target: str, speed: float | None = 1.0, fps: float = DEFAULT_FPS,
                 start_unix: float | None = None):
        super().__init__()
        self.spec = f"camera:{target}"
        self.target = target.strip()
        if fps <= 0 or not math.isfinite(fps):
            raise SourceError(f"source {self.spec!r}: fps must be > 0, got {fps}")
        if speed is not None and speed <= 0:
            raise SourceError(f"source {self.spec!r}: speed must be > 0 (or None for as fast as possible), got {speed}")
        self.fps = float(fps)
        self.speed = speed
        self.start_unix = start_unix
        if "!" in self.target:
            self.kind = "pipeline"
        elif self.target.isdigit():
            self.kind = "index"
        elif self.target.startswith("/dev/") or "://" in self.target:
            self.kind = "device"
        else:
            self.kind = "file"
            if not Path(self.target).is_file():
                raise SourceError(f"source {self.spec!r}: video file {self.target} not found")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_spec(cls, target: str, speed: float | None) -> CameraSource:
        path, query = split_query(target)
        opts = parse_options(query, {"fps": float, "start": float}, f"camera:{target}")
        return cls(path, speed, opts.get("fps", DEFAULT_FPS), opts.get("start"))

    @property
    def live(self) -> bool:
        return self.kind != "file"

    # --- worker thread ---------------------------------------------------------------------
    def _open(self, cv2: Any) -> Any:
        if self.kind == "pipeline":
            return cv2.VideoCapture(self.target, cv2.CAP_GSTREAMER)
        if self.kind == "index":
            return cv2.VideoCapture(int(self.target))
        return cv2.VideoCapture(self.target)

    def _open_error(self, cv2: Any) -> SourceError:
        if self.kind == "pipeline" and not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()):
            return SourceError(f"source {self.spec!r}: this OpenCV is built without GStreamer "
                               f"(pip wheels are); use the distribution's python3-opencv")
        what = {"file": "cannot decode video file", "index": "cannot open camera",
                "device": "cannot open camera", "pipeline": "cannot open GStreamer pipeline"}[self.kind]
        return SourceError(f"source {self.spec!r}: {what} {self.target}")

    def _read_file(self, cv2: Any, push: Any, credits: threading.Semaphore) -> None:
        cap = self._open(cv2)
        try:
            if not cap.isOpened():
                push(self._open_error(cv2))
                return
            file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            if not math.isfinite(file_fps) or file_fps <= 0 or file_fps > 1000:
                log.info("%s: file does not give its frame rate; assuming %g fps", self.spec, _FILE_FPS_FALLBACK)
                file_fps = _FILE_FPS_FALLBACK
            self.stats.connected = True
            step_s = 1.0 / min(self.fps, file_fps)
            next_t = 0.0
            index = 0
            first = True
            while not self._stop.is_set():
                t = index / file_fps
                if t + 1e-6 >= next_t:
                    ok, frame = cap.read()
                    if not ok or frame is None:
                        break
                    first = False
                    next_t += step_s
                    while not credits.acquire(timeout=0.2):  # back-pressure: wait for the consumer
                        if self._stop.is_set():
                            return
                    push((t, to_gray(frame, cv2)))
                elif not cap.grab():
                    break
                index += 1
            if first and not self._stop.is_set():  # opened, but not one frame decodes
                push(self._open_error(cv2))
        finally:
            cap.release()
            self.stats.connected = False
            push(_END)

    def _read_live(self, cv2: Any, push: Any, credits: threading.Semaphore) -> None:
        backoff = Backoff(initial_s=1.0, max_s=30.0)
        opened_once = False
        failed_logged = False
        step_s = 1.0 / self.fps
        try:
            while not self._stop.is_set():
                cap = self._open(cv2)
                delivered = False
                try:
                    if not cap.isOpened():
                        error = self._open_error(cv2)
                        if "GStreamer" in str(error) and "without" in str(error):
                            push(error)  # this OpenCV can never open it: no retry helps
                            return
                        if not opened_once and not failed_logged:
                            # a camera not plugged in yet is retried like a lost one (same backoff)
                            failed_logged = True
                            log.warning("%s; retrying (%.0f s doubling to %.0f s)", error,
                                        backoff.initial_s, backoff.max_s)
                    else:
                        if opened_once:
                            self.stats.reconnects += 1
                            log.info("%s: camera back", self.spec)
                        opened_once = True
                        self.stats.connected = True
                        next_due = time.monotonic()
                        while not self._stop.is_set():
                            if not cap.grab():  # frames are taken off the device at its own rate ...
                                break
                            now = time.monotonic()
                            if now < next_due:
                                continue
                            ok, frame = cap.retrieve()  # ... and decoded only when one is due
                            if not ok or frame is None:
                                continue
                            ts = arrival_time()  # one time line with the other sources (no NTP steps)
                            delivered = True
                            backoff.reset()
                            next_due = max(next_due + step_s, now)
                            if credits.acquire(blocking=False):
                                push((ts, to_gray(frame, cv2)))
                            # else: the consumer is behind; drop this frame rather than queue stale ones
                finally:
                    cap.release()
                    self.stats.connected = False
                if self._stop.is_set():
                    break
                delay = backoff.next_delay_s()
                if opened_once:
                    log.warning("%s: camera %s; reopening in %.1f s", self.spec,
                                "stopped delivering frames" if delivered else "unavailable", delay)
                self._stop.wait(delay)
        finally:
            push(_END)

    # --- event loop side ---------------------------------------------------------------------
    async def blocks(self) -> AsyncIterator[FrameBlock]:
        cv2 = _import_cv2(self.spec)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        credits = threading.Semaphore(_PREFETCH_FRAMES)
        self._stop.clear()

        def push(item: Any) -> None:
            if not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                except RuntimeError:  # loop closed between the check and the call
                    pass

        reader = self._read_live if self.live else self._read_file
        self._thread = threading.Thread(target=reader, args=(cv2, push, credits), daemon=True,
                                        name=f"camera {self.target[:40]}")
        self._thread.start()
        start_unix = self.start_unix if self.start_unix is not None else arrival_time()
        pacer = Pacer(self.speed)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                t, gray = item
                credits.release()
                if self.live:
                    ts = t
                else:
                    ts = start_unix + t
                    await pacer.until(t)
                self.stats.samples["video"] = self.stats.samples.get("video", 0) + 1
                yield FrameBlock(ts_unix=ts, image=gray, source=self.spec)
        finally:
            self._stop.set()
            credits.release()  # wake a file reader waiting for room

    async def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, 5.0)
