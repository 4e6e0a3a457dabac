"""The physical ranges every rate, time, hop and size from outside is checked against.

One table, so that the config, the file readers and the decoders refuse the same things. Why
each bound: a float loses sub-millisecond resolution past ~1e11 s and a loop that adds a hop to
a time then stops making progress (``t + hop == t``); a rate or a window far outside what any
wearable delivers only sizes buffers nobody can hold. Values outside these ranges are refused
in one line naming the file, key or frame that carried them; they are never clamped silently.
"""

from __future__ import annotations

import math

# Unix times of recordings and sensor samples: 1900-01-01 .. 2100-01-01 UTC (s). Float64 keeps
# ~0.5 µs resolution across it, so a hop of MIN_HOP_S always advances a time.
MIN_UNIX_S = -2_208_988_800.0
MAX_UNIX_S = 4_102_444_800.0

# Sample rates (Hz): 0.01 Hz (one sample a 100 s, slow trends) .. 100 kHz (far above any EEG/ECG
# front end; the ADS1299 tops out at 16 kHz).
MIN_RATE_HZ = 0.01
MAX_RATE_HZ = 100_000.0

# Window and fusion hops (s): 50 ms (20 states a second, beyond any use of an emotion state) ..
# 1 h. Windows: up to 30 min (the shipped models use 4-300 s).
MIN_HOP_S = 0.05
MAX_HOP_S = 3600.0
MAX_WINDOW_S = 1800.0

# Inter-beat intervals (ms): 200 ms (300 bpm) .. 5 s (12 bpm) is the physiological span; the
# readers refuse non-positive or non-finite ones and keep the rest (artefacts are the features' job).
MAX_IBI_MS = 60_000.0

# Text inputs read whole (config, password file, baselines, headers): a few KB in practice.
MAX_CONFIG_BYTES = 1 << 20
MAX_SMALL_FILE_BYTES = 1 << 20
MAX_BASELINES_BYTES = 16 << 20  # a full eda + cardiac baselines file is ~140 KB
# A CSV row of a recording (an E4 ACC row is ~15 bytes); a longer "line" is not a row.
MAX_LINE_BYTES = 4096
# JSON nesting we accept from files and the network (states and baselines nest 4 levels).
MAX_JSON_DEPTH = 32
# One stream's ring buffer (values + times), so a declared rate x window cannot exhaust memory.
MAX_STREAM_BUFFER_BYTES = 64 << 20
# Windows or fusions run for one block at most; more due at once means a jump in the data: the
# older ones are skipped (and said so), never run one by one.
MAX_DUE_PER_STEP = 1000


def is_unix_time(value: float) -> bool:
    """A finite unix time inside [MIN_UNIX_S, MAX_UNIX_S]."""
    return isinstance(value, (int, float)) and math.isfinite(value) and MIN_UNIX_S <= value <= MAX_UNIX_S


def is_rate_hz(value: float) -> bool:
    """A finite sample rate inside [MIN_RATE_HZ, MAX_RATE_HZ]."""
    return isinstance(value, (int, float)) and math.isfinite(value) and MIN_RATE_HZ <= value <= MAX_RATE_HZ


def unix_range_text() -> str:
    return "1900-01-01..2100-01-01 UTC"


def json_depth_exceeds(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests objects/arrays deeper than ``max_depth`` (brackets in strings ignored).

    Checked before ``json.loads``, whose recursion ends in ``RecursionError`` (not a ValueError)
    on deep input; one linear pass, no allocation beyond the text.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if text.count("[") + text.count("{") <= max_depth:  # the common case: cannot nest deeper
        return False
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def loads_json_bounded(text: str | bytes, max_depth: int = MAX_JSON_DEPTH):  # noqa: ANN201 - any JSON value
    """``json.loads`` that raises ValueError (never RecursionError) on input nested deeper than ``max_depth``."""
    import json  # noqa: PLC0415

    if json_depth_exceeds(text, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
