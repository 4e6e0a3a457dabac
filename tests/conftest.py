"""Shared test helpers. Tests import the *installed* package (see Makefile: --import-mode=importlib)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EMOTION_EDGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``emotion-edge ARGS`` as a user would, in a separate process; returns the completed process."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "edge", *args], cwd=cwd or REPO_ROOT / "tests",
                          capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"emotion-edge {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the repo (../shared/data); tests needing them skip where absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA
