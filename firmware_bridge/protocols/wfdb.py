"""WFDB records in plain numpy: ``.hea`` headers, format 212 / 16 ``.dat`` signals, MIT ``.atr`` annotations.

PhysioNet's ECG databases (MIT-BIH and friends) ship in this layout; the ``replay:wfdb:RECORD``
source replays them and ``tools.rpeak_check`` scores the R-peak detector against their beat
annotations. The layouts follow the WFDB specification (``header(5)``, ``signal(5)``,
``annot(5)``); the ``wfdb`` package is not needed at run time.

``RECORD`` is the record path without extension (``/data/mitbih/100``); a path ending in
``.hea``/``.dat``/``.atr`` is accepted too.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import limits
from edge.errors import DatasetError
from edge.small_files import open_regular, read_small_text

MAX_SIGNALS = 256  # signals in one record (PhysioNet's largest records have under 100)
CHUNK_FRAMES = 1 << 16  # frames read at a time by the streaming reader (~0.5 MB for 2 x fmt 16)

# MIT annotation codes -> symbols (annot(5) / wfdb ann_label_table); codes without a symbol map to "".
ANNOTATION_SYMBOLS: dict[int, str] = {
    1: "N", 2: "L", 3: "R", 4: "a", 5: "V", 6: "F", 7: "J", 8: "A", 9: "S", 10: "E", 11: "j",
    12: "/", 13: "Q", 14: "~", 16: "|", 18: "s", 19: "T", 20: "*", 21: "D", 22: '"', 23: "=",
    24: "p", 25: "B", 26: "^", 27: "t", 28: "+", 29: "u", 30: "?", 31: "!", 32: "[", 33: "]",
    34: "e", 35: "n", 36: "@", 37: "x", 38: "f", 39: "(", 40: ")", 41: "r",
}
# Symbols that mark a heartbeat (QRS complex), as in PhysioNet's beat-detection scoring (bxb).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")

_SKIP, _NUM, _SUB, _CHN, _AUX = 59, 60, 61, 62, 63


@dataclass(frozen=True)
class WfdbSignalSpec:
    """One signal line of a header."""

    file_name: str
    fmt: int
    byte_offset: int
    gain: float  # ADC units per physical unit
    baseline: int  # ADC value of physical zero
    units: str
    adc_zero: int
    description: str


@dataclass(frozen=True)
class WfdbHeader:
    record: str
    n_signals: int
    rate_hz: float
    n_samples: int | None
    base_unix: float | None  # None when the header gives no base date
    signals: tuple[WfdbSignalSpec, ...]


def record_base(record_path: str | Path) -> Path:
    """``/x/100``, ``/x/100.hea`` or ``/x/100.dat`` -> ``/x/100``."""
    path = Path(record_path)
    if path.suffix in (".hea", ".dat", ".atr", ".qrs"):
        return path.with_suffix("")
    return path


def _parse_time(base_time: str | None, base_date: str | None, name: str = "header") -> float | None:
    """Unix time of the base date and time; None without a date; DatasetError for a time of day
    outside 00:00:00..23:59:60 or a date outside 1900..2100 (a time like ``1e308:0:0`` would put
    the record at infinity)."""
    if not base_date:
        return None
    try:
        day, month, year = (int(p) for p in base_date.split("/"))
        parts = [float(p) for p in (base_time or "0:0:0").split(":")]
        while len(parts) < 3:
            parts.insert(0, 0.0)
        hours, minutes, seconds = parts
        if year == 0:
            return None
        start = _dt.datetime(year, month, day, tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    if len(parts) != 3 or not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds <= 60):
        raise DatasetError(f"WFDB header {name}: base time {base_time!r} is not a time of day (hh:mm:ss)")
    unix = start.timestamp() + hours * 3600 + minutes * 60 + seconds
    if not limits.is_unix_time(unix):
        raise DatasetError(f"WFDB header {name}: base date {base_date!r} is outside {limits.unix_range_text()}")
    return unix


def parse_wfdb_header(text: str, name: str = "header") -> WfdbHeader:
    """Parse the text of a ``.hea`` file (single-segment records)."""
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise DatasetError(f"WFDB header {name}: empty")
    fields = lines[0].split()
    if len(fields) < 2:
        raise DatasetError(f"WFDB header {name}: record line {lines[0]!r} needs at least a name and a signal count")
    record = fields[0]
    if "/" in record:
        raise DatasetError(f"WFDB header {name}: multi-segment records are not supported")
    try:
        n_signals = int(fields[1])
        rate_hz = float(fields[2].split("/")[0].split("(")[0]) if len(fields) > 2 else 250.0
        n_samples = int(fields[3]) if len(fields) > 3 else None
    except ValueError:
        raise DatasetError(f"WFDB header {name}: bad record line {lines[0]!r} "
                           "(expected: name, signals, rate, samples)") from None
    if not 1 <= n_signals <= MAX_SIGNALS:
        raise DatasetError(f"WFDB header {name}: {n_signals} signals (expected 1..{MAX_SIGNALS})")
    if not limits.is_rate_hz(rate_hz):
        raise DatasetError(f"WFDB header {name}: sampling frequency {rate_hz:g} Hz is outside "
                           f"{limits.MIN_RATE_HZ:g}..{limits.MAX_RATE_HZ:g} Hz")
    if n_samples is not None and n_samples < 0:
        raise DatasetError(f"WFDB header {name}: {n_samples} samples (must be >= 0)")
    base_unix = _parse_time(fields[4] if len(fields) > 4 else None, fields[5] if len(fields) > 5 else None, name)
    if len(lines) - 1 < n_signals:
        raise DatasetError(f"WFDB header {name}: {n_signals} signals announced, {len(lines) - 1} signal lines")
    signals = []
    for i, line in enumerate(lines[1:1 + n_signals]):
        try:
            signals.append(_parse_signal_line(line, i, name))
        except ValueError:  # int()/float() of a malformed field: name the line, not Python's message
            raise DatasetError(f"WFDB header {name}: signal {i}: bad line {line!r}") from None
    return WfdbHeader(record, n_signals, rate_hz, n_samples, base_unix, tuple(signals))


def _parse_signal_line(line: str, i: int, name: str) -> WfdbSignalSpec:
    """One signal line: file, format[xspf][:skew][+offset], gain[(baseline)][/units], bits, adc zero, ..."""
    parts = line.split()
    if len(parts) < 2:
        raise DatasetError(f"WFDB header {name}: signal {i}: line {line!r} has no format")
    fmt_field = parts[1]
    fmt_text = fmt_field
    byte_offset = 0
    if "+" in fmt_text:
        fmt_text, off = fmt_text.split("+", 1)
        byte_offset = int(off)
    if ":" in fmt_text:
        fmt_text, _skew = fmt_text.split(":", 1)
    if "x" in fmt_text:
        fmt_text, spf = fmt_text.split("x", 1)
        if int(spf) != 1:
            raise DatasetError(f"WFDB header {name}: signal {i}: {spf} samples per frame not supported")
    try:
        fmt = int(fmt_text)
    except ValueError as exc:
        raise DatasetError(f"WFDB header {name}: signal {i}: bad format {fmt_field!r}") from exc
    gain, baseline, units = 200.0, None, "mV"
    if len(parts) > 2:
        gain_field = parts[2]
        if "/" in gain_field:
            gain_field, units = gain_field.split("/", 1)
        if "(" in gain_field:
            gain_field, base_text = gain_field.split("(", 1)
            baseline = int(base_text.rstrip(")"))
        gain = float(gain_field) or 200.0
    adc_zero = int(parts[4]) if len(parts) > 4 else 0
    description = " ".join(parts[8:]) if len(parts) > 8 else f"sig{i}"
    if byte_offset < 0 or not math.isfinite(gain):
        raise DatasetError(f"WFDB header {name}: signal {i}: byte offset {byte_offset} or gain {gain:g} out of range")
    if not _is_plain_file_name(parts[0]):
        raise DatasetError(f"WFDB header {name}: signal {i}: file {parts[0]!r} is not a file name in the "
                           "record's folder (no folders, no '..')")
    return WfdbSignalSpec(parts[0], fmt, byte_offset, gain,
                          adc_zero if baseline is None else baseline, units, adc_zero, description)


def _is_plain_file_name(file_name: str) -> bool:
    """A signal file must sit beside its header: a bare name, not a path (no /dev/zero, no ../../etc/passwd)."""
    return (bool(file_name) and file_name not in (".", "..") and "/" not in file_name and "\\" not in file_name
            and "\x00" not in file_name)


def decode_format_212(raw: bytes, n_channels: int) -> np.ndarray:
    """Format 212: pairs of 12-bit two's-complement samples packed in 3 bytes -> (n, ch) int16."""
    data = np.frombuffer(raw, dtype=np.uint8)
    data = data[: len(data) // 3 * 3].reshape(-1, 3).astype(np.int16)
    first = data[:, 0] | ((data[:, 1] & 0x0F) << 8)
    second = data[:, 2] | ((data[:, 1] & 0xF0) << 4)
    samples = np.empty(2 * len(data), dtype=np.int16)
    samples[0::2] = first
    samples[1::2] = second
    samples[samples > 2047] -= 4096
    n_frames = len(samples) // n_channels
    return samples[: n_frames * n_channels].reshape(n_frames, n_channels)


def decode_format_16(raw: bytes, n_channels: int) -> np.ndarray:
    """Format 16: little-endian 16-bit two's complement -> (n, ch) int16."""
    samples = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2")
    n_frames = len(samples) // n_channels
    return samples[: n_frames * n_channels].reshape(n_frames, n_channels).astype(np.int16)


def read_wfdb_header(record_path: str | Path) -> WfdbHeader:
    base = record_base(record_path)
    hea = base.with_suffix(".hea")
    try:
        text = read_small_text(hea, limits.MAX_SMALL_FILE_BYTES)
    except FileNotFoundError:
        raise DatasetError(f"WFDB record {base}: header {hea} not found") from None
    except UnicodeDecodeError:
        raise DatasetError(f"WFDB header {hea}: not a text file") from None
    except ValueError as exc:  # a FIFO, a device, too large
        raise DatasetError(f"WFDB header {hea}: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"WFDB header {hea}: cannot read ({exc.strerror or exc})") from None
    return parse_wfdb_header(text, str(hea))


@dataclass(frozen=True)
class WfdbSignalFile:
    """A record's signal file, checked: beside the header, a regular file, as long as the header says."""

    path: Path
    fmt: int
    indices: tuple[int, ...]  # the header's signals stored in it, interleaved in this order
    byte_offset: int
    n_frames: int  # frames to read (the header's sample count, or all the file holds)

    def frame_bytes(self, frames: int) -> int:
        """Bytes holding ``frames`` frames (format 212 packs 2 samples in 3 bytes)."""
        samples = frames * len(self.indices)
        return samples * 2 if self.fmt == 16 else (samples + 1) // 2 * 3

    def decode(self, raw: bytes) -> np.ndarray:
        n_ch = len(self.indices)
        return decode_format_212(raw, n_ch) if self.fmt == 212 else decode_format_16(raw, n_ch)


def signal_file(base: Path, header: WfdbHeader, file_name: str) -> WfdbSignalFile:
    """Check one signal file against its header before a byte of signal is read."""
    indices = tuple(i for i, s in enumerate(header.signals) if s.file_name == file_name)
    specs = [header.signals[i] for i in indices]
    fmts = {s.fmt for s in specs}
    if len(fmts) != 1:
        raise DatasetError(f"WFDB record {base}: mixed formats {sorted(fmts)} in {file_name}")
    fmt = fmts.pop()
    if fmt not in (212, 16):
        raise DatasetError(f"WFDB record {base}: {file_name}: format {fmt} not supported (212 and 16 are)")
    dat = base.parent / file_name  # a bare name (checked when parsing the header): inside the record's folder
    try:
        fd = open_regular(dat)
    except FileNotFoundError:
        raise DatasetError(f"WFDB record {base}: signal file {dat} not found") from None
    except ValueError as exc:
        raise DatasetError(f"WFDB record {base}: signal file {dat} {exc}") from None
    except OSError as exc:
        raise DatasetError(f"WFDB record {base}: signal file {dat}: cannot read ({exc.strerror or exc})") from None
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    offset = specs[0].byte_offset
    samples = max(size - offset, 0) // (2 if fmt == 16 else 3) * (1 if fmt == 16 else 2)
    available = samples // len(indices)
    if header.n_samples:
        if available < header.n_samples:
            raise DatasetError(f"WFDB record {base}: header says {header.n_samples} samples, "
                               f"signal file {file_name} holds {available}")
        available = header.n_samples
    return WfdbSignalFile(dat, fmt, indices, offset, available)


def iter_wfdb_signal(record_path: str | Path, channel: int, chunk_frames: int = CHUNK_FRAMES
                     ) -> tuple[WfdbHeader, int, Iterator[np.ndarray]]:
    """(header, frames, chunks of one signal in physical units): a record streamed, memory bounded by the chunk."""
    base = record_base(record_path)
    header = read_wfdb_header(base)
    if not 0 <= channel < header.n_signals:
        raise DatasetError(f"WFDB record {base}: no signal {channel} (record has {header.n_signals})")
    spec = header.signals[channel]
    sig = signal_file(base, header, spec.file_name)
    column = sig.indices.index(channel)
    chunk_frames = max(2, chunk_frames // 2 * 2)  # whole 3-byte pairs for format 212

    def chunks() -> Iterator[np.ndarray]:
        with open(sig.path, "rb") as fh:
            fh.seek(sig.byte_offset)
            done = 0
            while done < sig.n_frames:
                frames = min(chunk_frames, sig.n_frames - done)
                raw = fh.read(sig.frame_bytes(frames))
                digital = sig.decode(raw)[:frames, column]
                if not len(digital):
                    raise DatasetError(f"WFDB record {base}: signal file {sig.path.name} ended early "
                                       f"(at frame {done} of {sig.n_frames})")
                done += len(digital)
                yield (digital.astype(np.float64) - spec.baseline) / spec.gain

    return header, sig.n_frames, chunks()


def read_wfdb_record(record_path: str | Path) -> tuple[np.ndarray, float, tuple[str, ...], float | None]:
    """Read a record: (signals (n, ch) float64 in physical units (mV for ECG), rate_hz, channel names, base unix or None)."""
    base = record_base(record_path)
    header = read_wfdb_header(base)
    decoded: dict[int, np.ndarray] = {}
    for file_name in dict.fromkeys(s.file_name for s in header.signals):  # header order, each file once
        sig = signal_file(base, header, file_name)
        with open(sig.path, "rb") as fh:
            fh.seek(sig.byte_offset)
            digital = sig.decode(fh.read(sig.frame_bytes(sig.n_frames)))[:sig.n_frames]
        for col, i in enumerate(sig.indices):
            decoded[i] = digital[:, col]
    n = min(len(d) for d in decoded.values())
    columns = [(decoded[i][:n].astype(np.float64) - spec.baseline) / spec.gain for i, spec in enumerate(header.signals)]
    signals = np.stack(columns, axis=1)
    names = tuple(s.description for s in header.signals)
    return signals, header.rate_hz, names, header.base_unix


def parse_mit_annotations(raw: bytes, name: str = "annotations") -> tuple[np.ndarray, np.ndarray]:
    """Decode MIT-format annotation bytes -> (sample indices int64, symbols array of str)."""
    words = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<u2")
    samples: list[int] = []
    codes: list[int] = []
    t = 0
    i = 0
    n = len(words)
    # one step per annotation (not per signal sample); records hold a few thousand annotations
    while i < n:
        word = int(words[i])
        code, value = word >> 10, word & 0x3FF
        i += 1
        if code == 0 and value == 0:
            break
        if code == _SKIP:
            if i + 1 >= n:
                raise DatasetError(f"WFDB annotations {name}: SKIP at the end of the file")
            interval = (int(words[i]) << 16) | int(words[i + 1])
            if interval >= 1 << 31:
                interval -= 1 << 32
            t += interval
            i += 2
        elif code == _AUX:
            i += (value + 1) // 2
        elif code in (_NUM, _SUB, _CHN):
            continue
        else:
            t += value
            samples.append(t)
            codes.append(code)
    symbols = np.array([ANNOTATION_SYMBOLS.get(c, "") for c in codes], dtype="<U1")
    return np.asarray(samples, dtype=np.int64), symbols


def read_wfdb_annotations(record_path: str | Path, extension: str = "atr") -> tuple[np.ndarray, np.ndarray]:
    """Read ``RECORD.<extension>`` -> (sample indices, symbols)."""
    path = record_base(record_path).with_suffix(f".{extension}")
    if not path.exists():
        raise DatasetError(f"WFDB annotations {path}: not found")
    return parse_mit_annotations(path.read_bytes(), str(path))


def beat_annotations(samples: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """Sample indices of the annotations that are heartbeats."""
    mask = np.array([s in BEAT_SYMBOLS for s in symbols], dtype=bool)
    return np.asarray(samples)[mask]
