"""Feature and image caches of the tools (``.npz``): written whole, and rebuilt when damaged.

A cache is only a shortcut. A file cut short by a full disk or a killed run, or overwritten by
something else, must cost one warning and a rebuild, not a traceback on every later run (the
default evaluation cache lives in the user's ``~/.cache``, where nobody looks).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def read_npz(path: Path | None, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray] | None:
    """The cached arrays (all of them, or ``keys``), or None when absent or unreadable (logged)."""
    if path is None or not Path(path).exists():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in (keys if keys is not None else data.files)}
    except Exception as exc:  # noqa: BLE001 - any damaged or foreign file is rebuilt, not fatal
        log.warning("cache %s is unreadable (%s); rebuilding it", path, exc.__class__.__name__)
        return None


def write_npz(path: Path, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Write a cache whole or not at all: a temp file renamed into place (a full disk leaves no half file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("cache %s not written (%s); the next run computes it again", path, exc)
