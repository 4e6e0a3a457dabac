"""The CLI speaks in its own lines: no TensorFlow/absl/oneDNN/XNNPACK banners, and a missing
optional extra is one line naming the extra (installs issue, item 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO_ROOT, run_cli
from edge.native_output import BANNER_LINES

BANNER_WORDS = ("XNNPACK", "absl::InitializeLog", "oneDNN", "TensorSpec", "Captures:", "cpu_feature_guard")


def assert_no_banner(text: str) -> None:
    noisy = [line for line in text.splitlines() if any(word in line for word in BANNER_WORDS)]
    assert not noisy, noisy


def test_banner_filter_keeps_everything_else():
    assert BANNER_LINES.match("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    assert BANNER_LINES.match("I0000 00:00:1796433467.451753    6252 port.cc:153] oneDNN custom operations are on.")
    assert BANNER_LINES.match("fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8")
    assert not BANNER_LINES.match("ERROR: Didn't find op for builtin opcode 'CONV_2D'")
    assert not BANNER_LINES.match("E0000 00:00:1796433467.451753    6252 kernel.cc:12] real failure")


def test_loading_a_model_prints_no_runtime_banner():
    """The first interpreter of a process used to announce its XNNPACK delegate on stderr."""
    proc = run_cli("models", "bench", "eda", "--runs", "20", check=True)
    assert_no_banner(proc.stderr + proc.stdout)


def test_native_stderr_that_is_not_a_banner_still_reaches_the_user(capfd):
    import os

    from edge.native_output import native_output_filtered

    with native_output_filtered(stdout=True):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: a real native failure\n")
        os.write(1, b"Saved artifact at '/tmp/x'. TensorSpec(...)\n")
    out, err = capfd.readouterr()
    assert err == "ERROR: a real native failure\n" and out == ""


def test_importing_tensorflow_through_the_tools_is_quiet():
    pytest.importorskip("tensorflow")
    code = "from edge.tools.tensorflow_import import import_tensorflow; import_tensorflow(); print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT / "tests")
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize("argv", [
    ["train", "eda", "--dataset", "stress-predict:{tmp}", "--out", "{tmp}/out"],
    ["train", "face", "--dataset", "fer2013:{tmp}", "--out", "{tmp}/out"],
    ["models", "quantize", "{tmp}/face.keras"],
])
def test_a_tool_that_needs_an_absent_extra_says_which_in_one_line(tmp_path, argv):
    """A runtime-only install has no TensorFlow: simulated by making its import fail in the child."""
    (tmp_path / "angry").mkdir()
    (tmp_path / "face.keras").write_bytes(b"")
    args = [a.format(tmp=tmp_path) for a in argv]
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['neurokit2'] = None; "
            "from edge.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT / "tests")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "[train]" in lines[0] and "pip install 'emotion-edge[train]'" in lines[0], lines


def test_the_installed_package_has_no_top_level_tools_package():
    """The wheel maps tools/ to edge.tools: a top-level 'tools' would clash with other projects."""
    import importlib.util

    import edge.tools

    assert importlib.util.find_spec("tools") is None
    assert edge.tools.__file__ and "site-packages" in edge.tools.__file__


def test_int8_conversion_is_quiet():
    """The converter's TensorSpec listing, its parameter echo and its statistics warning stay out of sight."""
    pytest.importorskip("tensorflow")
    code = ("import numpy as np\n"
            "from edge.tools.tensorflow_import import import_tensorflow\n"
            "from edge.tools.quantize import convert\n"
            "tf = import_tensorflow()\n"
            "m = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1, activation='sigmoid')])\n"
            "print(len(convert(m, np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32))) > 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT / "tests")
    assert proc.returncode == 0 and proc.stdout == "True\n", proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize("argv", [["bench", "--minutes", "1"], ["train", "face", "--dataset", "x"], ["models", "list"]])
def test_a_tool_run_from_the_source_checkout_says_why_in_one_line(argv):
    """`python -m edge` in the repository root imports the checkout's edge/, which has no edge.tools:
    one line that says so, not argparse's "invalid choice" (as `make bench` hit)."""
    proc = run_cli(*argv, cwd=REPO_ROOT)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"emotion-edge {argv[0]}: edge.tools.") and "cannot be imported here" in lines[0]
    assert "installed emotion-edge" in lines[0]
    # the daemon's own commands still work from there, and still refuse unknown arguments
    assert run_cli("run", "--help", cwd=REPO_ROOT).returncode == 0
    bad = run_cli("run", "--no-such-flag", cwd=REPO_ROOT)
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-flag" in bad.stderr
