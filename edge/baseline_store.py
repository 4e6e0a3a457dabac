"""The trailing baselines (eda/cardiac features, eeg outputs) survive a daemon restart.

A baseline takes 20 minutes to fill (``edge.features.baseline``). Losing it at every restart,
upgrade or reboot would mean 20 minutes of thinner stress estimates each time. So the daemon
writes every estimator's baselines to ``STATE_DIR/baselines-<device id>.json`` every 5 minutes and
when it stops (atomically: a temporary file, then a rename), and reads them back at start.

Saved baselines are used only by the model that made them (same sha256): another model may
describe other features. Windows older than the span drop out on their own, and a source clock
that went back starts the baseline over, so a file from long ago or another recording does no
harm. An unreadable file is reported in one line and the daemon starts with empty baselines.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from edge.limits import MAX_BASELINES_BYTES, loads_json_bounded
from edge.small_files import read_small_bytes

log = logging.getLogger(__name__)

# A kill -9 loses at most this much of a 20-minute baseline. A full eda + cardiac file is ~140 KB;
# every 5 minutes that is ~40 MB of writes a day, kinder to an SD card than every minute (~200 MB).
SAVE_EVERY_S = 300.0
FORMAT = "emotion-edge trailing baselines v1"


_last_save_error: dict[Path, str] = {}


def store_path(state_dir: str | Path, device_id: str) -> Path:
    return Path(state_dir) / f"baselines-{device_id}.json"


def _model_sha(estimator: Any) -> str:
    return str((getattr(estimator.model, "manifest", None) or {}).get("sha256", ""))


def save_baselines(path: Path, estimators: Mapping[str, Any]) -> bool:
    """Write every estimator's non-empty baselines; False (logged once per call) if the file cannot be written."""
    modalities = {}
    for name, est in estimators.items():
        states = est.baseline_states() if hasattr(est, "baseline_states") else {}
        if states:
            modalities[name] = {"model_sha256": _model_sha(est), "streams": states}
    if not modalities and not path.exists():
        return True
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data: owner only
        with os.fdopen(fd, "w") as out:
            os.fchmod(fd, 0o600)  # a tmp file left by an older version keeps its mode otherwise
            out.write(json.dumps({"format": FORMAT, "modalities": modalities}))
        os.replace(tmp, path)
    except OSError as exc:
        message = f"baselines: cannot save {path}: {exc}"
        if message != _last_save_error.get(path):  # once per distinct failure, not every minute
            log.warning("%s", message)
        _last_save_error[path] = message
        return False
    if _last_save_error.pop(path, None) is not None:
        log.info("baselines: saved to %s again", path)
    return True


def _saved_modalities(path: Path) -> dict:
    """The file's {modality: {"model_sha256", "streams"}}; OSError or ValueError (one line) if it is not one.

    Read bounded (a regular file up to ``MAX_BASELINES_BYTES``, JSON nested at most
    ``MAX_JSON_DEPTH``) and checked for shape, so no corruption reaches the estimators as a
    traceback: a damaged file only costs the baselines it held.
    """
    saved = loads_json_bounded(read_small_bytes(path, MAX_BASELINES_BYTES))
    if not isinstance(saved, dict):
        raise ValueError(f"a JSON {type(saved).__name__}, expected an object")
    if saved.get("format") != FORMAT:
        raise ValueError(f"format {saved.get('format')!r}, expected {FORMAT!r}")
    modalities = saved.get("modalities")
    if not isinstance(modalities, dict):
        raise ValueError(f"'modalities' is a {type(modalities).__name__}, expected an object")
    return modalities


def load_baselines(path: Path, estimators: Mapping[str, Any]) -> int:
    """Restore the saved baselines that belong to the loaded models; returns the windows restored."""
    if not path.exists():
        return 0
    try:
        modalities = _saved_modalities(path)
    except (OSError, ValueError) as exc:
        log.warning("baselines: %s unreadable (%s); starting with empty baselines", path,
                    getattr(exc, "strerror", None) or exc)
        return 0
    restored = 0
    for name, entry in modalities.items():
        est = estimators.get(name)
        if est is None or not hasattr(est, "restore_baselines"):
            continue
        if not isinstance(entry, dict) or entry.get("model_sha256") != _model_sha(est):
            log.info("baselines: %s's saved baseline is from another model; starting it empty", name)
            continue
        try:
            n = est.restore_baselines(entry.get("streams") or {})
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            log.warning("baselines: %s in %s unusable (%s); starting it empty", name, path, exc)
            continue
        restored += n
        if n:
            log.info("baselines: %s resumed with %d window(s) from %s", name, n, path)
    return restored


def describe(path: Path, now_unix: float) -> str:
    """One line on a saved file for ``doctor``: windows per modality and the newest one's age.
    ValueError (one line) if it is not a baselines file."""
    try:
        parts = []
        for name, entry in sorted(_saved_modalities(path).items()):
            streams = entry["streams"]
            n = sum(len(s["ends"]) for s in streams.values())
            newest = max((s["ends"][-1] for s in streams.values() if s["ends"]), default=None)
            age = f", newest {(now_unix - newest) / 60:.0f} min ago" if newest is not None else ""
            parts.append(f"{name} {n} window(s){age}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path} is not a baselines file ({getattr(exc, 'strerror', None) or exc})") from None
    return "; ".join(parts) or "empty"
