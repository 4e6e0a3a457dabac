"""The tools' .npz caches: a damaged file is rebuilt, a failed write leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.tools.npz_cache import read_npz, write_npz


def test_a_cache_round_trips_compressed_or_not(tmp_path: Path) -> None:
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([1, 0, 1], np.int8)}
    for compressed in (False, True):
        path = tmp_path / f"c{int(compressed)}.npz"
        write_npz(path, compressed=compressed, **arrays)
        back = read_npz(path)
        assert set(back) == {"x", "y"} and all(np.array_equal(back[k], v) for k, v in arrays.items())
        assert set(read_npz(path, ("y",))) == {"y"}
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("damage", ["truncated", "text", "empty", "wrong keys"])
def test_a_damaged_cache_reads_as_absent_with_one_warning(tmp_path: Path, caplog, damage: str) -> None:
    path = tmp_path / "c.npz"
    write_npz(path, x=np.ones(1000))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "text":
        path.write_text("not numpy")
    elif damage == "empty":
        path.write_bytes(b"")
    with caplog.at_level("WARNING"):
        got = read_npz(path, ("nope",) if damage == "wrong keys" else None)
    assert got is None
    assert [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage() and "rebuilding" in r.getMessage()]
    assert read_npz(tmp_path / "missing.npz") is None


def test_a_full_disk_leaves_no_half_file(tmp_path: Path, caplog) -> None:
    """/dev/full answers every write with ENOSPC: the temp file goes, the cache is not there."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    target = tmp_path / "c.npz"
    part = tmp_path / "c.npz.part"
    part.symlink_to("/dev/full")  # the temp file's writes fail as on a full disk
    with caplog.at_level("WARNING"):
        write_npz(target, x=np.ones(100_000))
    assert "not written" in caplog.text and not target.exists() and not part.exists()
