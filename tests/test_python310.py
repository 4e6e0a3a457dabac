"""Jetson's CPython 3.10: nothing in the installed code needs a newer Python.

vermin (the [test] extra) reads the source and names the minimum version each construct, module
and member needs; a line guarded by a version check says so with ``# novermin``. Static, so it
holds on an x86 3.11+ venv too, where a 3.10 interpreter is not at hand.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import edge
import firmware_bridge

RUN_VERMIN = "import sys; from vermin import main; sys.exit(main())"


def vermin(*paths: Path) -> subprocess.CompletedProcess:
    try:
        import vermin as _  # noqa: F401
    except ImportError:
        raise AssertionError("vermin is missing: it comes with the [test] extra (make setup-test)") from None
    return subprocess.run([sys.executable, "-c", RUN_VERMIN, "--target=3.10-", "--no-tips", "--violations",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_installed_packages_need_no_python_newer_than_3_10():
    packages = [Path(edge.__file__).parent, Path(firmware_bridge.__file__).parent]  # edge/ holds edge.tools
    assert (packages[0] / "tools").is_dir()
    proc = vermin(*packages)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    minimum = re.search(r"Minimum required versions: .*?(3\.\d+)", proc.stdout)
    assert minimum and int(minimum.group(1).split(".")[1]) <= 10, proc.stdout


def test_the_checker_catches_a_3_11_call(tmp_path):
    (tmp_path / "newer.py").write_text(
        "import asyncio\n\nasync def get(queue):\n    async with asyncio.timeout(1.0):\n        return await queue.get()\n")
    proc = vermin(tmp_path)
    assert proc.returncode != 0
    assert "asyncio.timeout" in proc.stdout and "3.11" in proc.stdout, proc.stdout
