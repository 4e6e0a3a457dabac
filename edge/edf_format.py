"""EDF+/BDF+ files of one stream each: what the recorder writes and ``replay:edf``/``replay:record`` read.

One file holds one stream (``eeg`` with its channels, ``ecg``, ``eda``, ``bvp``) of one continuous
stretch, so each file has a single sample rate, no gaps, and the bit depth the stream needs:

- EEG goes to **BDF+** (24-bit), other streams to **EDF+** (16-bit) unless ``bdf=True``.
- The data-record duration is the shortest of ``RECORD_DURATIONS_S`` that holds a whole number of
  samples at the stream's rate (1 s for every integer rate: 256, 250, 130, 64, 4 Hz).
- Physical min/max are the stretch's own min/max, rounded *outwards* to what the header's
  8-character fields can hold (``header_number``), so no value is clipped and the full digital
  range is used: the digitisation step is (max - min) / 65535 (EDF) or / 16777215 (BDF).
- Labels follow EDF+'s "type channel" convention (``EEG AF7``, ``ECG``, ``EDA``, ``BVP``); the
  header's start time is UTC (the recording's ``start_unix``, sub-second included).

pyedflib is imported only when a file is written or read (the ``[record]`` extra).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EmotionEdgeError, MissingExtraError

RECORD_DURATIONS_S = (1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 60)
EDF_DIGITAL = (-32768, 32767)
BDF_DIGITAL = (-8388608, 8388607)
# physical dimension (EDF+ spells micro as 'u'); '' = arbitrary units (E4 BVP)
STREAM_UNITS = {"eeg": "uV", "ecg": "uV", "eda": "uS", "bvp": "", "ibi": "ms", "temp": "degC", "acc": "g"}
# label prefix -> stream (read side accepts a few common synonyms)
LABEL_STREAMS = {"EEG": "eeg", "ECG": "ecg", "EKG": "ecg", "EDA": "eda", "GSR": "eda", "BVP": "bvp", "PPG": "bvp",
                 "TEMP": "temp", "ACC": "acc"}
BDF_STREAMS = ("eeg",)


class RecordingError(EmotionEdgeError):
    """A recording (or an EDF file read back) cannot be written or read; the message names the file."""


def pyedflib_module():
    try:
        import pyedflib  # noqa: PLC0415 - optional: the [record] extra
    except ImportError:
        raise MissingExtraError("pyedflib", "record") from None
    return pyedflib


def record_duration_s(rate_hz: float) -> float:
    """Shortest data-record duration holding a whole number of samples at ``rate_hz``."""
    for d in RECORD_DURATIONS_S:
        n = rate_hz * d
        if abs(n - round(n)) < 1e-6 * max(1.0, n) and round(n) >= 1:
            return float(d)
    raise RecordingError(f"rate {rate_hz:g} Hz: no EDF data-record duration up to 60 s holds a whole "
                         "number of samples")


def header_number(value: float, outward: str) -> float:
    """``value`` rounded ``"down"`` or ``"up"`` to a number whose decimal form fits EDF's 8 characters."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    limit = 99_999_999.0 if value >= 0 else 9_999_999.0
    if abs(value) > limit:
        raise RecordingError(f"value {value:g} does not fit an EDF header field (8 characters)")
    rounder = math.floor if outward == "down" else math.ceil
    for decimals in range(7, -1, -1):
        scale = 10.0 ** decimals
        rounded = rounder(value * scale) / scale
        text = f"{rounded:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{rounded:.0f}"
        if text in ("-0", ""):
            text = "0"
        if len(text) <= 8:
            return float(text)
    return float(rounder(value))  # pragma: no cover - caught by the limit above


def physical_range(data: np.ndarray) -> tuple[float, float]:
    """(min, max) over finite values, outward-rounded for the header; never an empty range."""
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-6 * max(1.0, abs(lo), abs(hi)):  # flat signal: a small range around it
        pad = max(1e-3, abs(lo) * 1e-3)
        lo, hi = lo - pad, hi + pad
    return header_number(lo, "down"), header_number(hi, "up")


def stream_label(stream: str, channel: str) -> str:
    """EDF+ label: ``EEG AF7``; the channel alone when it already names the type (``EDA``)."""
    prefix = stream.upper()
    label = prefix if channel.upper() == prefix else f"{prefix} {channel}"
    return label[:16]


def label_stream(label: str) -> tuple[str, str] | None:
    """``EEG AF7`` -> ("eeg", "AF7"); ``EDA`` -> ("eda", "EDA"); unknown -> None."""
    head, _, rest = label.strip().partition(" ")
    stream = LABEL_STREAMS.get(head.upper())
    if stream is None:
        return None
    return stream, (rest.strip() or head)


def utc_datetime(ts_unix: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_unix, dt.timezone.utc).replace(tzinfo=None)


def _set_subsecond(writer, subsecond_100ns: int) -> None:
    from pyedflib._extensions._pyedflib import set_starttime_subsecond  # noqa: PLC0415

    if set_starttime_subsecond(writer.handle, subsecond_100ns) != 0:
        raise RecordingError(f"EDF file {writer.path}: cannot set the sub-second start time")


@dataclass(frozen=True)
class EdfAnnotation:
    onset_unix: float
    duration_s: float  # -1 = none
    text: str


def write_stream_file(path: Path, stream: str, channels: tuple[str, ...], rate_hz: float, start_unix: float,
                      data: np.ndarray, annotations: list[EdfAnnotation] = (), *, bdf: bool | None = None,
                      equipment: str = "", recording_note: str = "") -> dict:
    """Write one stream's stretch (``data`` (n, ch), n a whole number of data records) to ``path``.

    Written to ``path.part`` and renamed when closed, so a crash never leaves a half file under the
    real name. Returns the header facts for ``recording.json``.
    """
    pyedflib = pyedflib_module()
    bdf = stream in BDF_STREAMS if bdf is None else bdf
    d_min, d_max = BDF_DIGITAL if bdf else EDF_DIGITAL
    record_s = record_duration_s(rate_hz)
    data = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    headers, ranges = [], []
    for k, channel in enumerate(channels):
        p_min, p_max = physical_range(data[:, k])
        ranges.append((p_min, p_max))
        headers.append({"label": stream_label(stream, channel), "dimension": STREAM_UNITS.get(stream, ""),
                        "sample_frequency": rate_hz, "physical_min": p_min, "physical_max": p_max,
                        "digital_min": d_min, "digital_max": d_max, "transducer": "", "prefilter": ""})
    part = path.with_name(path.name + ".part")
    writer = pyedflib.EdfWriter(str(part), len(channels), pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS)
    try:
        with warnings.catch_warnings():  # pyedflib warns about header widths we already handled
            warnings.simplefilter("ignore")
            writer.setSignalHeaders(headers)
            if record_s != 1.0:
                writer.setDatarecordDuration(record_s)
            writer.setEquipment(equipment[:80])
            writer.setRecordingAdditional(recording_note[:80])
            start = utc_datetime(start_unix)
            writer.setStartdatetime(start.replace(microsecond=0))
            # pyedflib 0.1.42 passes microseconds x 100 where edflib wants units of 100 ns (x 10):
            # set the sub-second start ourselves, after the last header setter
            subsecond_100ns = min(9_999_999, round((start_unix - math.floor(start_unix)) * 1e7))
            if subsecond_100ns:
                _set_subsecond(writer, subsecond_100ns)
            # the physical range is the data's own: clipping here only removes NaN/inf
            clean = [np.nan_to_num(data[:, k], nan=ranges[k][0], posinf=ranges[k][1], neginf=ranges[k][0])
                     for k in range(len(channels))]
            writer.writeSamples(clean)
            span = len(data) / rate_hz
            for ann in annotations:
                onset = ann.onset_unix - start_unix
                if -1e-9 <= onset <= span:
                    writer.writeAnnotation(max(0.0, onset), ann.duration_s, ann.text)
    finally:
        writer.close()
    part.replace(path)
    return {"stream": stream, "channels": list(channels), "rate_hz": rate_hz, "n_samples": int(len(data)),
            "start_unix": start_unix, "record_s": record_s, "format": "BDF+" if bdf else "EDF+",
            "physical_range": [list(r) for r in ranges]}


@dataclass(frozen=True)
class EdfSignalGroup:
    """The signals of one type and rate in an EDF/BDF file (``EEG AF7``, ``EEG AF8``, ... side by side)."""

    stream: str
    channels: tuple[str, ...]
    rate_hz: float
    start_unix: float
    indices: tuple[int, ...]  # signal numbers in the file
    n_samples: int
    units: str


@dataclass(frozen=True)
class EdfStream:
    """One stream read back whole (see ``read_stream_file``)."""

    stream: str
    channels: tuple[str, ...]
    rate_hz: float
    start_unix: float
    data: np.ndarray  # (n, channels) float32, physical units
    units: str


def _open_reader(path: Path):
    pyedflib = pyedflib_module()
    try:
        return pyedflib.EdfReader(str(path))
    except OSError as exc:
        raise RecordingError(f"EDF file {path}: cannot read ({exc})") from None


def read_stream_header(path: Path) -> tuple[list[EdfSignalGroup], list[EdfAnnotation]]:
    """The streams an EDF/BDF(+) file holds, grouped by label type and rate, and its annotations.

    Signals whose label names no known type (``EEG``, ``ECG``/``EKG``, ``EDA``/``GSR``, ``BVP``/``PPG``)
    are skipped. No samples are read.
    """
    reader = _open_reader(path)
    try:
        # edflib counts the sub-second in units of 100 ns (pyedflib's getStartdatetime misreads it)
        start = reader.getStartdatetime().replace(microsecond=0, tzinfo=dt.timezone.utc).timestamp()
        start += int(getattr(reader, "starttime_subsecond", 0)) / 1e7
        rates = reader.getSampleFrequencies()
        counts = reader.getNSamples()
        members: dict[tuple[str, float], list[tuple[int, str, str]]] = {}
        for i, label in enumerate(reader.getSignalLabels()):
            known = label_stream(label)
            if known is not None and float(rates[i]) > 0:
                members.setdefault((known[0], float(rates[i])), []).append((i, known[1], reader.getPhysicalDimension(i)))
        groups = [EdfSignalGroup(stream, tuple(c for _, c, _ in m), rate, start, tuple(i for i, _, _ in m),
                                 int(min(counts[i] for i, _, _ in m)), m[0][2])
                  for (stream, rate), m in members.items()]
        onsets, durations, texts = reader.readAnnotations()
    finally:
        reader.close()
    return groups, [EdfAnnotation(start + float(o), float(d), str(t)) for o, d, t in zip(onsets, durations, texts)]


def iter_stream_samples(path: Path, group: EdfSignalGroup, n_samples: int | None = None,
                        chunk_samples: int = 1 << 16) -> Iterator[np.ndarray]:
    """A group's samples, (m, channels) float32 in physical units, ``chunk_samples`` at a time
    (blocking reads; memory does not grow with the file). ``n_samples`` cuts the padding of a
    recording's last data record."""
    total = group.n_samples if n_samples is None else min(group.n_samples, n_samples)
    reader = _open_reader(path)
    try:
        for start in range(0, total, chunk_samples):
            n = min(chunk_samples, total - start)
            yield np.stack([reader.readSignal(i, start, n) for i in group.indices], axis=1).astype(np.float32)
    finally:
        reader.close()


def read_stream_file(path: Path, n_samples: int | None = None) -> tuple[list[EdfStream], list[EdfAnnotation]]:
    """Every known stream of a file read whole, and its annotations (see ``read_stream_header``)."""
    groups, annotations = read_stream_header(path)
    streams = []
    for g in groups:
        parts = list(iter_stream_samples(path, g, n_samples))
        data = np.concatenate(parts) if parts else np.zeros((0, len(g.channels)), np.float32)
        streams.append(EdfStream(g.stream, g.channels, g.rate_hz, g.start_unix, data, g.units))
    return streams, annotations
