"""The daemon's configuration: one typed, frozen structure, defaults in one place, every key checked.

Loaded from TOML (``--config FILE``), then command-line flags override the file. A bad key or
value is refused with one line naming it, e.g.::

    config: windows.eda.length_s: must be > 0, got -5
    config: unknown key 'mqtt.brokr' (known: broker, topic_prefix, ...)

``format_config`` prints the config in force back as TOML (``emotion-edge run --print-config``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edge import limits
from edge.errors import ConfigError
from edge.small_files import read_small_text
from edge.stream import MODALITIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def default_state_dir() -> str:
    """$EMOTION_EDGE_STATE_DIR, else $XDG_STATE_HOME/emotion-edge, else ~/.local/state/emotion-edge."""
    override = os.environ.get("EMOTION_EDGE_STATE_DIR")
    if override:
        return override
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "emotion-edge")


@dataclass(frozen=True)
class DaemonConfig:
    device_id: str = "wearable-1"
    sources: tuple[str, ...] = ("simulate",)
    speed: float | None = 1.0  # replay/simulate pacing; None = as fast as possible ("max")
    duration_s: float = math.inf  # wall-clock run time; inf = until the sources end or a signal; 0 = start and stop
    state_dir: str = field(default_factory=default_state_dir)
    modalities: tuple[str, ...] = MODALITIES  # which models to load and fuse


@dataclass(frozen=True)
class MqttConfig:
    broker: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "emotion-edge"
    username: str = ""  # "" = the URL's user (if any)
    password_file: str = ""  # first line = the password (else the URL's, else $EMOTION_EDGE_MQTT_PASSWORD)
    client_id: str = ""  # "" = derived from the device id by the publisher
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    allow_plaintext_remote: bool = False
    publish_modalities: bool = True  # also publish <prefix>/<device>/modality/<name>
    protocol: str = "5"  # "5" (a denied publish is seen) or "3.1.1" (old brokers; see docs/hostile.md)
    outbox_max_bytes: int = 64 * 1024 * 1024  # payload bytes kept for the broker (oldest dropped past it)


@dataclass(frozen=True)
class WindowConfig:
    """Sliding window of one modality, on the source's clock. 0 = the model manifest's value."""

    length_s: float = 0.0
    hop_s: float = 0.0


@dataclass(frozen=True)
class WindowsConfig:
    face: WindowConfig = WindowConfig()
    eda: WindowConfig = WindowConfig()
    cardiac: WindowConfig = WindowConfig()
    eeg: WindowConfig = WindowConfig()

    def for_modality(self, name: str) -> WindowConfig:
        return getattr(self, name)


@dataclass(frozen=True)
class ReliabilityConfig:
    """Per-modality prior weight in [0, 1] (from the model cards' held-out validation figures)."""

    # face: chosen on held-out FER2013 validation faces through the detector path, face only: at 0.6 a
    # face-only state's evidence (quality x reliability) sat at uncertain_below for a fifth of the faces
    # found (uncertain 20 %, agreement 0.553); 0.8 (eda's) gives 8 % / 0.616 (docs/evaluate.md).
    # Since a face's own class split counts as disagreement (and uncertain_below is 0.15), 0.6 / 0.8 /
    # 1.0 give agreement 0.632 / 0.658 / 0.667 on the same faces; 0.8 stays (not re-tuned for 0.9 point).
    face: float = 0.8
    eda: float = 0.8
    cardiac: float = 0.7
    eeg: float = 0.5

    def for_modality(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass(frozen=True)
class FusionConfig:
    hop_s: float = 5.0  # one fused state per hop of the source clock
    stale_hops: float = 2.0  # an estimate older than stale_hops x its modality hop + stale_slack_s is stale
    stale_slack_s: float = 2.0
    smoothing_tau_s: float = 10.0  # exponential smoothing time constant (source clock); 0 = off
    stress_threshold: float = 0.61  # label "stressed" at or above this fused stress
    calm_threshold: float = 0.25  # without a valence source: label "calm" below this fused stress
    neutral_radius: float = 0.25  # label "neutral" inside this V/A radius
    negative_valence: float = 0.2  # "sad"/"tense" need a valence below minus this
    min_dimension_confidence: float = 0.15  # a dimension below this confidence does not choose the label
    # label "uncertain" when the best label's confidence is below this. 0.15: on the held-out validation
    # faces (face only, through the camera path) labels whose confidence is 0.15-0.3 agree with the
    # expression 53 % of the time and those below 0.15 5 %, so below it a label is mostly wrong; on
    # Stress-Predict (cross-validated, S02-S14) no target moved the wrong way (docs/fusion.md). Was 0.3.
    uncertain_below: float = 0.15
    label_hysteresis: float = 0.15  # the evidence must cross a label's border by this much to change it
    confirm_s: float = 10.0  # a new label must win this long in a row (source clock)
    min_dwell_s: float = 180.0  # a label, once shown, stays this long (source clock; less for fast evidence)
    max_lag_s: float = 10.0  # a stream this far behind the newest one no longer holds fusion back
    reliability: ReliabilityConfig = ReliabilityConfig()


@dataclass(frozen=True)
class CalibrationConfig:
    rest_s: float = 0.0  # first N seconds (source clock) are a rest period; 0 = no calibration
    rest_stress: float = 0.2  # stress level the rest period maps to after calibration


FACE_DETECTORS = ("blazeface", "haar")


@dataclass(frozen=True)
class FaceConfig:
    max_frames_per_window: int = 5  # newest frames scored per face window
    min_face_px: int = 48  # smallest face side searched for, in full-resolution pixels
    detect_width_px: int = 320  # frames wider than this are scaled down for detection (0 = never)
    detector: str = "blazeface"  # "blazeface" (models/face_detector.tflite) or "haar" (OpenCV's cascade)
    # blazeface: when a frame shows no face, look again in 3 x 2 zoomed tiles (small, distant faces;
    # ~6 more detector passes on such frames). false: one pass a frame, for the tightest CPU budget.
    zoom_tiles: bool = True


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = ""  # "" = $EMOTION_EDGE_MODELS_DIR or the shipped models
    num_threads: int = 1


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus health figures (edge.metrics): off unless enabled or a textfile is given."""

    enabled: bool = False  # serve http://host:port/metrics
    host: str = "127.0.0.1"
    port: int = 9108
    textfile: str = ""  # also write them here (node_exporter textfile collector); "" = no
    interval_s: float = 15.0  # how often source/broker figures are refreshed (and the textfile written)


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery (edge.homeassistant): retained entity configs on connect."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"  # HA's default; change only if HA's MQTT integration does


@dataclass(frozen=True)
class RecordConfig:
    """Recording (edge.record): raw streams to EDF+/BDF+, states and events to JSON lines. Off unless dir."""

    dir: str = ""  # "" = no recording; also: run --record DIR
    max_chunk_s: float = 600.0  # a chunk closes after this much source time...
    max_chunk_mb: float = 64.0  # ...or this much raw data (what a crash can lose at most)
    format: str = "auto"  # "auto" = BDF+ (24-bit) for EEG, EDF+ (16-bit) for the rest; "bdf" = BDF+ for all
    lossless: bool = True  # also keep the samples as given (.npy beside each EDF file): exact replays


@dataclass(frozen=True)
class LslConfig:
    """Lab Streaming Layer outlets (edge.lsl, the [lsl] extra): each raw stream and the states."""

    enabled: bool = False  # also: run --lsl


@dataclass(frozen=True)
class Config:
    daemon: DaemonConfig = DaemonConfig()
    mqtt: MqttConfig = MqttConfig()
    windows: WindowsConfig = WindowsConfig()
    fusion: FusionConfig = FusionConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    face: FaceConfig = FaceConfig()
    models: ModelsConfig = ModelsConfig()
    metrics: MetricsConfig = MetricsConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    record: RecordConfig = RecordConfig()
    lsl: LslConfig = LslConfig()


# -- validation ---------------------------------------------------------------------------------

def _check_positive(path: str, value: float, allow_zero: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config: {path}: must be {'>= 0' if allow_zero else '> 0'}, got {value:g}")


def _check_range(path: str, value: float, low: float, high: float, unit: str = "") -> None:
    """``value`` finite and in [low, high] (units named in the message)."""
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"config: {path}: must be in {low:g}..{high:g}{' ' + unit if unit else ''}, got {value:g}")


def _check_text(path: str, value: str, max_bytes: int) -> None:
    if len(value.encode("utf-8", errors="surrogatepass")) > max_bytes:
        raise ConfigError(f"config: {path}: longer than {max_bytes} bytes ({len(value)} characters)")
    if "\x00" in value:
        raise ConfigError(f"config: {path}: contains a NUL character")


# MQTT strings are length-prefixed with 16 bits (MQTT 3.1.1 section 1.5.3): a client id or topic
# over 65,535 bytes cannot be sent at all (paho's network thread dies on it). Ids and prefixes are
# kept far shorter, as brokers expect (mosquitto's default client id limit is 65,535, AWS IoT's 128).
MAX_ID_BYTES = 256
MAX_SOURCES = 32
MAX_PATH_BYTES = 4096
MAX_NUM_THREADS = 64  # more interpreter threads than any SoC has cores only adds contention
MAX_SPEED = 1e6  # replay pacing: faster than this is "max"
MIN_SPEED = 1e-3
MAX_DURATION_S = 10 * 365 * 86400.0  # beyond ten years, say inf


def _check_unit(path: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ConfigError(f"config: {path}: must be in [0, 1], got {value:g}")


def parse_speed(value: Any, path: str = "daemon.speed") -> float | None:
    """``max`` (or ``inf``) -> None (as fast as possible); a number > 0 -> that factor."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() in ("max", "inf", "unlimited"):
            return None
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"config: {path}: expected a number > 0 or 'max', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config: {path}: expected a number > 0 or 'max', got {value!r}")
    if math.isinf(value) and value > 0:
        return None
    _check_positive(path, float(value))
    _check_range(path, float(value), MIN_SPEED, MAX_SPEED, "(x real time; or 'max')")
    return float(value)


def _coerce(path: str, expected: Any, value: Any) -> Any:
    """Check ``value`` against the field's annotated type; return it in that type."""
    if expected in ("float", float) or expected == "float | None":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config: {path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if expected in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config: {path}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if expected in ("bool", bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config: {path}: expected true or false, got {value!r}")
        return value
    if expected in ("str", str):
        if not isinstance(value, str):
            raise ConfigError(f"config: {path}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if expected == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config: {path}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"config: {path}: unsupported type {expected}")  # pragma: no cover


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys and mistyped values."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {prefix.rstrip('.') or 'top level'}: expected a table, got {data!r}")
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"config: unknown key '{prefix}{unknown[0]}' (known: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = fields[name]
        path = f"{prefix}{name}"
        default = f.default if f.default is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, path + ".")
        elif path == "daemon.speed":
            kwargs[name] = parse_speed(value, path)
        else:
            kwargs[name] = _coerce(path, f.type, value)
    return cls(**kwargs)


def validate(config: Config) -> Config:
    """Range checks across the whole structure (types were checked while building)."""
    from edge.publish import parse_broker_url  # noqa: PLC0415 - the MQTT helper's module

    config = _expand_paths(config)
    d = config.daemon
    _check_text("daemon.device_id", d.device_id, MAX_ID_BYTES)
    _check_text("mqtt.topic_prefix", config.mqtt.topic_prefix, MAX_ID_BYTES)
    _check_text("mqtt.client_id", config.mqtt.client_id, MAX_ID_BYTES)
    _check_text("mqtt.username", config.mqtt.username, MAX_ID_BYTES)
    _check_text("mqtt.broker", config.mqtt.broker, MAX_PATH_BYTES)
    for key in ("state_dir",):
        _check_text(f"daemon.{key}", getattr(d, key), MAX_PATH_BYTES)
    for key in ("password_file", "ca_file", "cert_file", "key_file"):
        _check_text(f"mqtt.{key}", getattr(config.mqtt, key), MAX_PATH_BYTES)
    if not d.device_id or any(c in d.device_id for c in "/+#") or not d.device_id.isprintable():
        raise ConfigError(f"config: daemon.device_id: must be non-empty without '/', '+' or '#', got {d.device_id!r}")
    if not d.sources:
        raise ConfigError("config: daemon.sources: at least one source is needed (e.g. 'simulate')")
    if len(d.sources) > MAX_SOURCES:
        raise ConfigError(f"config: daemon.sources: at most {MAX_SOURCES} sources, got {len(d.sources)}")
    for i, spec in enumerate(d.sources):
        _check_text(f"daemon.sources[{i}]", spec, MAX_PATH_BYTES)
    from firmware_bridge.devices import parse_spec  # noqa: PLC0415

    for i, spec in enumerate(d.sources):
        try:
            parse_spec(spec)
        except Exception as exc:  # SourceError: one line naming the spec
            raise ConfigError(f"config: daemon.sources[{i}]: {exc}") from None
    if not (d.duration_s >= 0) or (math.isfinite(d.duration_s) and d.duration_s > MAX_DURATION_S):
        raise ConfigError(f"config: daemon.duration_s: must be in 0..{MAX_DURATION_S:g} s (or inf), got {d.duration_s:g}")
    if d.speed is not None:
        parse_speed(d.speed, "daemon.speed")
    for name in d.modalities:
        if name not in MODALITIES:
            raise ConfigError(f"config: daemon.modalities: unknown modality {name!r} (known: {', '.join(MODALITIES)})")
    try:
        parse_broker_url(config.mqtt.broker)
    except ConfigError as exc:
        raise ConfigError(f"config: mqtt.broker: {exc}") from None
    if config.mqtt.protocol not in ("5", "3.1.1"):
        raise ConfigError(f"config: mqtt.protocol: must be \"5\" or \"3.1.1\", got {config.mqtt.protocol!r}")
    if config.mqtt.outbox_max_bytes < 4096:
        raise ConfigError(f"config: mqtt.outbox_max_bytes: must be >= 4096, got {config.mqtt.outbox_max_bytes}")
    if not config.mqtt.topic_prefix or any(c in config.mqtt.topic_prefix for c in "+#"):
        raise ConfigError(f"config: mqtt.topic_prefix: must be non-empty without '+' or '#', got {config.mqtt.topic_prefix!r}")
    for name in MODALITIES:
        w = config.windows.for_modality(name)
        _check_positive(f"windows.{name}.length_s", w.length_s, allow_zero=True)
        _check_positive(f"windows.{name}.hop_s", w.hop_s, allow_zero=True)
        if w.length_s:  # 0 = the model manifest's
            _check_range(f"windows.{name}.length_s", w.length_s, limits.MIN_HOP_S, limits.MAX_WINDOW_S, "s")
        if w.hop_s:
            _check_range(f"windows.{name}.hop_s", w.hop_s, limits.MIN_HOP_S, limits.MAX_HOP_S, "s")
        if w.length_s and w.hop_s and w.hop_s > w.length_s:
            raise ConfigError(f"config: windows.{name}.hop_s: must be <= length_s ({w.length_s:g}), got {w.hop_s:g}")
        _check_unit(f"fusion.reliability.{name}", config.fusion.reliability.for_modality(name))
    f = config.fusion
    _check_positive("fusion.hop_s", f.hop_s)
    _check_range("fusion.hop_s", f.hop_s, limits.MIN_HOP_S, limits.MAX_HOP_S, "s")
    _check_positive("fusion.stale_hops", f.stale_hops)
    _check_range("fusion.stale_hops", f.stale_hops, 0.0, 1000.0)
    _check_positive("fusion.stale_slack_s", f.stale_slack_s, allow_zero=True)
    _check_range("fusion.stale_slack_s", f.stale_slack_s, 0.0, limits.MAX_HOP_S, "s")
    _check_positive("fusion.smoothing_tau_s", f.smoothing_tau_s, allow_zero=True)
    _check_range("fusion.smoothing_tau_s", f.smoothing_tau_s, 0.0, 86400.0, "s")
    _check_positive("fusion.max_lag_s", f.max_lag_s)
    _check_range("fusion.max_lag_s", f.max_lag_s, 0.0, 86400.0, "s")
    _check_unit("fusion.stress_threshold", f.stress_threshold)
    _check_positive("fusion.neutral_radius", f.neutral_radius, allow_zero=True)
    _check_unit("fusion.calm_threshold", f.calm_threshold)
    _check_unit("fusion.negative_valence", f.negative_valence)
    if f.calm_threshold > f.stress_threshold:
        raise ConfigError(f"config: fusion.calm_threshold: must be <= fusion.stress_threshold "
                          f"({f.stress_threshold:g}), got {f.calm_threshold:g}")
    _check_unit("fusion.min_dimension_confidence", f.min_dimension_confidence)
    _check_unit("fusion.uncertain_below", f.uncertain_below)
    _check_unit("fusion.label_hysteresis", f.label_hysteresis)
    _check_positive("fusion.confirm_s", f.confirm_s, allow_zero=True)
    _check_positive("fusion.min_dwell_s", f.min_dwell_s, allow_zero=True)
    _check_positive("calibration.rest_s", config.calibration.rest_s, allow_zero=True)
    _check_range("calibration.rest_s", config.calibration.rest_s, 0.0, 86400.0, "s")
    _check_unit("calibration.rest_stress", config.calibration.rest_stress)
    if not 1 <= config.face.max_frames_per_window <= 100:
        raise ConfigError(f"config: face.max_frames_per_window: must be in 1..100, got {config.face.max_frames_per_window}")
    if not 8 <= config.face.min_face_px <= 8192:
        raise ConfigError(f"config: face.min_face_px: must be in 8..8192 px, got {config.face.min_face_px}")
    if config.face.detector not in FACE_DETECTORS:
        raise ConfigError(f"config: face.detector: must be one of {', '.join(FACE_DETECTORS)}, got {config.face.detector!r}")
    if config.face.detect_width_px and not 64 <= config.face.detect_width_px <= 8192:
        raise ConfigError(f"config: face.detect_width_px: must be 0 or in 64..8192 px, got {config.face.detect_width_px}")
    if not (0 < config.metrics.port < 65536):
        raise ConfigError(f"config: metrics.port: must be in 1..65535, got {config.metrics.port}")
    _check_positive("metrics.interval_s", config.metrics.interval_s)
    prefix = config.homeassistant.discovery_prefix
    if not prefix or any(c in prefix for c in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError(f"config: homeassistant.discovery_prefix: must be a topic without '+', '#' or "
                          f"a leading/trailing '/', got {prefix!r}")
    _check_range("metrics.interval_s", config.metrics.interval_s, 0.1, 86400.0, "s")
    _check_range("record.max_chunk_s", config.record.max_chunk_s, 1.0, 86400.0, "s of source time")
    _check_range("record.max_chunk_mb", config.record.max_chunk_mb, 0.001, 4096.0, "MB")
    if config.record.format not in ("auto", "bdf"):
        raise ConfigError(f"config: record.format: must be 'auto' or 'bdf', got {config.record.format!r}")
    if not 1 <= config.models.num_threads <= MAX_NUM_THREADS:
        raise ConfigError(f"config: models.num_threads: must be in 1..{MAX_NUM_THREADS}, got {config.models.num_threads}")
    return config


_PATH_KEYS = (("daemon", "state_dir"), ("mqtt", "password_file"), ("mqtt", "ca_file"), ("mqtt", "cert_file"),
              ("mqtt", "key_file"), ("models", "dir"), ("metrics", "textfile"),
              ("record", "dir"))


def _expand_paths(config: Config) -> Config:
    """``~`` in every path key expanded once, here, so every user of a path sees the same file."""
    for table, key in _PATH_KEYS:
        value = getattr(getattr(config, table), key)
        if isinstance(value, str) and value.startswith("~"):
            config = replace_dotted(config, f"{table}.{key}", os.path.expanduser(value))
    return config


def from_mapping(data: Mapping[str, Any]) -> Config:
    """A validated ``Config`` from a parsed TOML document (missing keys take their defaults)."""
    return validate(_build(Config, data, ""))


def load_config(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read TOML ``path`` (None = defaults only), apply ``overrides`` ({"daemon.speed": None, ...}), validate.

    Overrides are dotted keys as given on the command line; they replace the file's values.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = read_small_text(path, limits.MAX_CONFIG_BYTES)
        except FileNotFoundError:
            raise ConfigError(f"config: {path}: file not found") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config: {path}: cannot read (not UTF-8 text)") from None
        except ValueError as exc:  # a FIFO, a device, a folder, too large
            raise ConfigError(f"config: {path}: cannot read ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"config: {path}: cannot read ({exc.strerror or exc})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {path}: not valid TOML ({exc})") from None
        except RecursionError:  # tomllib recurses once per nested array or inline table
            raise ConfigError(f"config: {path}: not valid TOML (nested too deeply)") from None
    config = _build(Config, data, "")
    for dotted, value in (overrides or {}).items():
        config = replace_dotted(config, dotted, value)
    return validate(config)


def replace_dotted(config: Any, dotted: str, value: Any) -> Any:
    """Return a copy of the frozen ``config`` with the field at ``a.b.c`` set to ``value``."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: replace_dotted(getattr(config, head), rest, value)})


PASSWORD_ENV = "EMOTION_EDGE_MQTT_PASSWORD"


def secret_file_exposure(path: Path) -> str | None:
    """Why a secret file is too open ("readable by its group (mode 640); chmod 600"), else None."""
    import stat  # noqa: PLC0415

    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # reading it says what is wrong
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        who = "everyone" if mode & stat.S_IROTH else "its group"
        return f"readable by {who} (mode {stat.S_IMODE(mode):o}); chmod 600 it"
    return None


def read_password_file(name: str, what: str) -> str:
    """The first line of a password file, or a one-line ``ConfigError`` starting with ``what``.

    Read first, so a FIFO or a huge file is refused before anything else is said of it; then a
    file its group or others can read is refused (it should be mode 600).
    """
    path = Path(name).expanduser()
    try:
        lines = read_small_text(path, limits.MAX_SMALL_FILE_BYTES).splitlines()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {name} ({exc.strerror or exc})") from None
    except ValueError as exc:  # a FIFO would block the start for good; not UTF-8; too large
        raise ConfigError(f"{what}: {name} {exc}") from None
    too_open = secret_file_exposure(path)
    if too_open:
        raise ConfigError(f"{what}: {name} is {too_open}")
    return lines[0] if lines else ""


def broker_address(mqtt: MqttConfig) -> Any:
    """The publisher's ``BrokerAddress`` with credentials resolved, so no password need sit in a URL.

    Username: the URL's, else ``mqtt.username``. Password: the URL's, else the first line of
    ``mqtt.password_file``, else ``$EMOTION_EDGE_MQTT_PASSWORD`` (e.g. from a systemd
    EnvironmentFile), else none. An unreadable password file is a one-line ``ConfigError``.
    """
    from edge.publish import parse_broker_url  # noqa: PLC0415

    address = parse_broker_url(mqtt.broker)
    username = address.username or mqtt.username or None
    password = address.password
    if password is None and mqtt.password_file:
        password = read_password_file(mqtt.password_file, "config: mqtt.password_file")
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    if username is None:
        password = None  # MQTT 3.1.1: no password without a username
    return dataclasses.replace(address, username=username, password=password)


# -- printing -------------------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if value is None:
        return '"max"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def format_config(config: Config) -> str:
    """The config in force as TOML (passwords in the broker URL masked)."""
    lines: list[str] = []

    def emit(obj: Any, table: str) -> None:
        scalars = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)
                   if not dataclasses.is_dataclass(getattr(obj, f.name))]
        if scalars:
            lines.append(f"[{table}]")
            for name, value in scalars:
                if table == "mqtt" and name == "broker":
                    value = mask_password(value)
                lines.append(f"{name} = {_toml_value(value)}")
            lines.append("")
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                emit(value, f"{table}.{f.name}" if table else f.name)

    emit(config, "")
    return "\n".join(lines).rstrip() + "\n"


def mask_password(url: str) -> str:
    """``mqtt://user:secret@host`` -> ``mqtt://user:***@host`` (also for URLs that do not parse)."""
    from edge.publish import redact_url  # noqa: PLC0415

    return redact_url(url)
