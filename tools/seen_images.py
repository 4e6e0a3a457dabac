"""Which images a model saw while it was trained, so an evaluation can say when it re-reads them.

FER2013 has no subject ids, so what can be recorded is the images themselves: ``train face``
writes ``<name>.seen-images.bin`` beside the model, the fingerprints of its train and validation
images (the held-out test part is left out), and names it in the manifest's
``training.seen_images``. A fingerprint is the first 8 bytes of the sha256 of the image file's
bytes, as a big-endian uint64; the file holds the distinct ones sorted (face 1.4.0: 24,827 distinct
fingerprints of 25,837 images, 194 KiB; FER2013 holds byte-identical duplicates). Two different
images share a fingerprint with a chance of about 1e-15 per pair. A re-encoded copy of an image
(another JPEG quality, PNG) has other bytes and is not recognised.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

FINGERPRINT = "first 8 bytes of the sha256 of each image file, big-endian uint64, sorted"
SUFFIX = ".seen-images.bin"


def fingerprints(paths: Iterable[Path]) -> np.ndarray:
    """The fingerprint of each image file, in the order given (uint64)."""
    return np.array([int.from_bytes(hashlib.sha256(Path(p).read_bytes()).digest()[:8], "big") for p in paths],
                    dtype=np.uint64)


def write_seen(out_dir: Path, name: str, paths: Iterable[Path]) -> dict[str, Any]:
    """Write ``<name>.seen-images.bin`` in ``out_dir``; return the manifest's ``training.seen_images`` record."""
    seen = np.unique(fingerprints(paths))
    path = Path(out_dir) / f"{name}{SUFFIX}"
    path.write_bytes(seen.astype(">u8").tobytes())
    return {"file": path.name, "n": int(len(seen)), "fingerprint": FINGERPRINT,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def read_seen(manifest: dict[str, Any], manifest_path: Path) -> np.ndarray | None:
    """The sorted fingerprints a manifest names (None when it names none or the file is missing)."""
    record = (manifest.get("training") or {}).get("seen_images")
    if not record:
        return None
    path = Path(manifest_path).with_name(record["file"])
    if not path.is_file():
        return None
    return np.frombuffer(path.read_bytes(), dtype=">u8").astype(np.uint64)


def count_seen(paths: list[Path], seen: np.ndarray) -> int:
    """How many of ``paths`` are among the ``seen`` fingerprints."""
    if not len(paths) or not len(seen):
        return 0
    return int(np.isin(fingerprints(paths), seen, assume_unique=False).sum())
