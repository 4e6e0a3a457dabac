"""The aarch64 lane (``make test-pi``): emotion-edge on an emulated Raspberry Pi 4, checked against x86.

1. emulator: ``ci/pi-emulator setup`` builds the Pi userland under $PI_DIR once (Debian Bookworm
   arm64, CPython 3.11, qemu-user through binfmt_misc; needs root for apt and binfmt_misc).
2. install: requirements/build.lock, then requirements/test.lock (both carry aarch64 hashes) into a
   clean venv there, redone only when a lock changes; the project itself (--no-deps
   --no-build-isolation) on every run.
3. tests: the runtime test files in PI_TESTS, ``-m "not train"`` (no TensorFlow on the Pi).
4. parity: the same E4 replay (REPLAY_* below, or an E4-layout fixture when the data is absent)
   through the daemon on x86 and on the emulated Pi; the published states must be identical
   (JSON compared whole, less WALL_CLOCK_KEYS).

Run by the x86 venv's python (the broker and the subscriber are the project's own, on loopback).
What it shows: aarch64 wheels resolve from the lock, install and import; native code runs; results
equal x86's. What it does not: a timing of a real Pi (emulation is several times slower than the
host, a Pi 4 core slower than an x86 core by a different factor).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EMULATOR = REPO / "ci" / "pi-emulator"
LOCKS = ("build.lock", "test.lock")  # in this order: pip/setuptools/wheel first, then the test set

# The runtime tests run on the Pi: models and their runtime, features, estimators, fusion, windows,
# decoders, replays, the outbox, the daemon end to end, the camera path (BlazeFace detector, crops,
# face model; OpenCV is in runtime.lock) and the [tflite] extra (tflite-runtime has aarch64 wheels). Left out: training (marked `train`; no TensorFlow there), the dataset loaders and
# `models evaluate` (test_stress_predict: 5 emulated minutes, the same models and features as
# test_estimators), and the suites of Python over sockets and ptys with no native code of their
# own (broker, ACL, publish, listen, config, BLE logic, demo, bench, faults, soak), which `make test` runs.
PI_TESTS = (
    "test_models_runtime.py", "test_estimators.py", "test_physio_features.py", "test_eeg.py",
    "test_fusion.py", "test_windows.py", "test_trailing_baseline.py", "test_replay.py",
    "test_wfdb_e4_readers.py", "test_outbox.py", "test_protocol_clock.py", "test_protocol_cyton.py",
    "test_protocol_framed.py", "test_protocol_hrs.py", "test_protocol_muse.py", "test_protocol_polar.py",
    "test_daemon.py", "test_tflite_runtime.py", "test_face_detect.py", "test_face.py",
)
PI_MARKERS = "not train"

# The replay: 8 minutes of stress-predict S01 (worn from the start: skin contact, a clean pulse
# wave). The eda/cardiac windows (300 s) fill at 5 minutes; from then on a state every 5 s (37),
# each with both models' estimates.
REPLAY_SUBJECT = "S01"
REPLAY_START_S = 0.0
REPLAY_LENGTH_S = 480.0
DEVICE_ID = "parity"
# State fields taken from the host's clock, not the recording's: none today (``ts`` and every
# modality ``ts`` are the recording's time). Named here so a new one is excluded in one place.
WALL_CLOCK_KEYS: frozenset[str] = frozenset()


def log(message: str) -> None:
    print(f"pi-lane: {message}", flush=True)


# The Pi 4's core. qemu's default model ("max") has instructions a Pi 4 lacks (dot products, i8mm),
# on which the TFLite int8 kernels take other paths and round differently: states then differ from
# x86's (seen: every state of the replay). $PI_QEMU_CPU overrides it for such an experiment.
QEMU_CPU = os.environ.get("PI_QEMU_CPU", "cortex-a72")

FACTS = ("import importlib.metadata as m, json, platform; print(json.dumps({'machine': platform.machine(), "
         "'python': platform.python_version(), 'numpy': m.version('numpy'), "
         "'ai-edge-litert': m.version('ai-edge-litert')}))")


def pi_env(pi_dir: Path) -> dict[str, str]:
    return dict(os.environ, PI_DIR=str(pi_dir), QEMU_CPU=QEMU_CPU)


def on_pi(*args: str) -> list[str]:
    """A command run in the emulated Pi (its venv's bin/ first on PATH)."""
    return ["bash", str(EMULATOR), "run", *args]


def facts(python: list[str], pi_dir: Path) -> dict:
    """Machine, Python and the versions that decide the numbers, as the given interpreter sees them."""
    proc = subprocess.run([*python, "-c", FACTS], env=pi_env(pi_dir), capture_output=True, text=True, timeout=300)
    return json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr.strip()[-300:]}


def run(cmd: list[str], pi_dir: Path, cwd: Path | None = None, timeout: float = 3600) -> None:
    proc = subprocess.run(cmd, env=pi_env(pi_dir), cwd=cwd, timeout=timeout)
    if proc.returncode:
        raise SystemExit(f"pi-lane: {' '.join(cmd[:6])}… exited {proc.returncode}")


# -- 1, 2: emulator and install -------------------------------------------------------------------

def ensure_emulator(pi_dir: Path) -> bool:
    """Set the emulated Pi up unless it is there; True if it was built now."""
    ready = pi_dir / ".setup-done"
    if ready.exists() and (pi_dir / "venv" / "bin" / "python").exists():
        return False
    log(f"building the emulated Pi under {pi_dir} (apt, arm64 .debs; a few minutes)")
    run(["bash", str(EMULATOR), "setup", str(pi_dir)], pi_dir)
    ready.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return True


def locks_digest() -> str:
    digest = hashlib.sha256()
    for name in LOCKS:
        digest.update((REPO / "requirements" / name).read_bytes())
    return digest.hexdigest()


def ensure_locked_packages(pi_dir: Path) -> bool:
    """The venv holds exactly the locks' packages (rebuilt clean when a lock changed); True if installed now."""
    stamp = pi_dir / "venv" / ".emotion-edge-locks"
    wanted = locks_digest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return False
    log("installing requirements/build.lock and test.lock into the Pi's venv (aarch64 wheels)")
    run(on_pi(str(pi_dir / "root" / "usr" / "bin" / "python3.11"), "-m", "venv", "--clear",
              str(pi_dir / "venv")), pi_dir)
    for name in LOCKS:
        run(on_pi("python", "-m", "pip", "install", "--disable-pip-version-check", "-q",
                  "--require-hashes", "-r", str(REPO / "requirements" / name)), pi_dir)
    stamp.write_text(wanted + "\n")
    return True


def install_project(pi_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pi-lane-src-") as tmp:
        shutil.copytree(REPO, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "runs", "var", "*.egg-info", "__pycache__", ".pytest_cache"))
        run(on_pi("python", "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps",
                  "--no-build-isolation", "--force-reinstall", tmp), pi_dir)


# -- 3: tests -------------------------------------------------------------------------------------

def run_tests(pi_dir: Path, extra: list[str]) -> dict:
    cmd = on_pi("python", "-m", "pytest", "--import-mode=importlib", "-p", "no:cacheprovider", "-q",
                "-m", PI_MARKERS, *PI_TESTS, *extra)
    log(f"runtime tests on the Pi: {len(PI_TESTS)} files, -m '{PI_MARKERS}'")
    proc = subprocess.Popen(cmd, env=pi_env(pi_dir), cwd=REPO / "tests", stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.strip():
            last = line.strip()
    code = proc.wait()
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", last)}
    return {"exit": code, "summary": last.strip("= "), **counts}


# -- 4: parity ------------------------------------------------------------------------------------

def shared_data() -> Path:
    return Path(os.environ.get("EMOTION_EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def write_e4_excerpt(source: Path, out: Path, start_s: float, length_s: float) -> None:
    """``length_s`` of an E4 export from ``start_s`` on, written back in the E4 layout (EDA, BVP, IBI)."""
    out.mkdir(parents=True)
    for name in ("EDA.csv", "BVP.csv"):
        lines = (source / name).read_text().splitlines()
        t0, rate = float(lines[0].split(",")[0]), float(lines[1].split(",")[0])
        first = int(round(start_s * rate))
        body = lines[2 + first: 2 + first + int(round(length_s * rate))]
        (out / name).write_text(f"{t0 + first / rate:.6f}\n{rate:.6f}\n" + "\n".join(body) + "\n")
    lines = (source / "IBI.csv").read_text().splitlines()
    t0 = float(lines[0].split(",")[0])
    rows = []
    for line in lines[1:]:
        offset, ibi = (float(v) for v in line.split(","))
        if start_s <= offset < start_s + length_s:
            rows.append(f"{offset - start_s:.6f},{ibi:.6f}")
    (out / "IBI.csv").write_text(f"{t0 + start_s:.6f}, IBI\n" + "\n".join(rows) + ("\n" if rows else ""))


def write_e4_fixture(out: Path, length_s: float, start_unix: float = 1_600_000_000.0) -> None:
    """A wearer in the E4 layout when the real data is absent: tonic EDA with responses, a pulse wave."""
    rng = np.random.default_rng(16)
    out.mkdir(parents=True)
    t = np.arange(int(length_s * 4)) / 4.0
    eda = 2.0 + 0.002 * t
    for onset in np.sort(rng.uniform(0, length_s, int(length_s / 20))):
        rise = np.clip(t - onset, 0, None)
        eda += 0.3 * (1 - np.exp(-rise / 1.0)) * np.exp(-rise / 8.0)
    (out / "EDA.csv").write_text(f"{start_unix:.6f}\n4.000000\n" + "\n".join(f"{v:.6f}" for v in eda) + "\n")
    beats = np.cumsum(0.8 + 0.05 * np.sin(np.arange(int(length_s / 0.6)) * 0.5) + rng.normal(0, 0.02, int(length_s / 0.6)))
    beats = beats[beats < length_s]
    t_bvp = np.arange(int(length_s * 64)) / 64.0
    idx = np.searchsorted(beats, t_bvp)
    phase = t_bvp - np.where(idx > 0, beats[np.maximum(idx - 1, 0)], 0.0)
    bvp = 80.0 * np.exp(-((phase - 0.15) ** 2) / 0.005) + 30.0 * np.exp(-((phase - 0.4) ** 2) / 0.0128)
    bvp += rng.normal(0, 1.0, bvp.shape) - bvp.mean()
    (out / "BVP.csv").write_text(f"{start_unix:.6f}\n64.000000\n" + "\n".join(f"{v:.2f}" for v in bvp) + "\n")
    ibi = [f"{b:.6f},{b - a:.6f}" for a, b in zip(beats[:-1], beats[1:])]
    (out / "IBI.csv").write_text(f"{start_unix:.6f}, IBI\n" + "\n".join(ibi) + "\n")


def replay_folder(work: Path) -> tuple[Path, str]:
    source = shared_data() / "stress-predict" / "Raw_data" / REPLAY_SUBJECT
    out = work / "e4"
    if (source / "EDA.csv").exists():
        write_e4_excerpt(source, out, REPLAY_START_S, REPLAY_LENGTH_S)
        return out, f"stress-predict {REPLAY_SUBJECT}, {REPLAY_START_S:.0f}-{REPLAY_START_S + REPLAY_LENGTH_S:.0f} s"
    write_e4_fixture(out, REPLAY_LENGTH_S)
    return out, f"an E4-layout fixture of {REPLAY_LENGTH_S:.0f} s (stress-predict not found at {source})"


def replay_states(daemon: list[str], folder: Path, work: Path, pi_dir: Path, timeout_s: float) -> list[bytes]:
    """Every state payload the daemon publishes for the replay, in order (a fresh broker and state dir)."""
    import paho.mqtt.client as mqtt

    from edge.broker import EmbeddedBroker

    broker = EmbeddedBroker("127.0.0.1", 0)
    port = broker.start()
    states: list[bytes] = []
    offline = threading.Event()
    subscribed = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.topic.endswith("/state"):
            states.append(bytes(msg.payload))
        elif msg.topic.endswith("/status") and msg.payload == b"offline":
            offline.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pi-lane")
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", port)
    client.subscribe(f"emotion-edge/{DEVICE_ID}/#", qos=1)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise SystemExit("pi-lane: the subscriber got no SUBACK from the embedded broker")
        state_dir = Path(tempfile.mkdtemp(prefix="state-", dir=work))
        proc = subprocess.run([*daemon, "-m", "edge", "run", "--source", f"replay:e4:{folder}", "--speed", "max",
                               "--broker", f"mqtt://127.0.0.1:{port}", "--device-id", DEVICE_ID,
                               "--state-dir", str(state_dir)],
                              env=pi_env(pi_dir), capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode:
            raise SystemExit(f"pi-lane: the daemon exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        if not offline.wait(30):
            raise SystemExit("pi-lane: the daemon ended without its 'offline' status reaching the subscriber")
    finally:
        client.loop_stop()
        client.disconnect()
        broker.stop()
    return states


def comparable(payload: bytes) -> dict:
    state = json.loads(payload)
    return {k: v for k, v in state.items() if k not in WALL_CLOCK_KEYS}


def parity(pi_dir: Path, out_dir: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="pi-lane-replay-") as tmp:
        work = Path(tmp)
        folder, what = replay_folder(work)
        log(f"parity replay: {what}")
        machines = {"x86": facts([sys.executable], pi_dir), "pi": facts(on_pi("python"), pi_dir)}
        if machines["pi"].get("machine") != "aarch64":
            raise SystemExit(f"pi-lane: the emulated Pi's python does not run as aarch64: {machines['pi']}")
        t0 = time.monotonic()
        x86 = replay_states([sys.executable], folder, work, pi_dir, timeout_s=600)
        t1 = time.monotonic()
        pi = replay_states(on_pi("python"), folder, work, pi_dir, timeout_s=1800)
        t2 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, payloads in (("x86", x86), ("pi", pi)):
        (out_dir / f"{name}.jsonl").write_bytes(b"".join(p + b"\n" for p in payloads))
    a, b = [comparable(p) for p in x86], [comparable(p) for p in pi]
    with_models = sum(1 for s in a if {"eda", "cardiac"} <= set(s["modalities"]))
    differing = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    result = {"replay": what, "states_x86": len(a), "states_pi": len(b), "states_with_eda_and_cardiac": with_models,
              "identical": len(a) == len(b) and not differing, "first_differing": differing[:5],
              "bytes_identical": x86 == pi, "x86_s": round(t1 - t0, 1), "pi_s": round(t2 - t1, 1),
              "excluded_keys": sorted(WALL_CLOCK_KEYS), "qemu_cpu": QEMU_CPU, "machines": machines}
    if not a or not with_models:
        result["identical"] = False
        result["why"] = "the replay gave no states with model estimates: nothing was compared"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pi-dir", default=os.environ.get("PI_DIR", "/var/cache/emotion-edge-pi"),
                        help="where the emulated Pi lives (default $PI_DIR or /var/cache/emotion-edge-pi)")
    parser.add_argument("--skip-tests", action="store_true", help="parity only")
    parser.add_argument("--skip-parity", action="store_true", help="tests only")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    pi_dir = Path(args.pi_dir).resolve()
    if os.geteuid() != 0 and not (pi_dir / ".setup-done").exists():
        log("needs root the first time (apt for qemu-user-static and the arm64 .debs, binfmt_misc)")
        return 2
    report: dict = {"pi_dir": str(pi_dir)}
    started = time.monotonic()
    mark = started
    steps = {}
    for name, step in (("emulator", lambda: ensure_emulator(pi_dir)),
                       ("locks", lambda: ensure_locked_packages(pi_dir)),
                       ("project", lambda: install_project(pi_dir))):
        did = step()
        steps[name] = round(time.monotonic() - mark, 1) if did is not False else "already there"
        mark = time.monotonic()
    report["setup_s"] = steps
    ok = True
    if not args.skip_tests:
        report["tests"] = run_tests(pi_dir, args.pytest_args)
        report["tests"]["seconds"] = round(time.monotonic() - mark, 1)
        ok &= report["tests"]["exit"] == 0
        mark = time.monotonic()
    if not args.skip_parity:
        report["parity"] = parity(pi_dir, pi_dir / "parity")
        ok &= report["parity"]["identical"]
        verdict = "identical" if report["parity"]["identical"] else "DIFFERENT"
        log(f"parity: {report['parity']['states_x86']} states on x86, {report['parity']['states_pi']} on the Pi: "
            f"{verdict} ({report['parity']['states_with_eda_and_cardiac']} with eda and cardiac estimates; "
            f"raw bytes identical: {report['parity']['bytes_identical']}; states in {pi_dir / 'parity'})")
    report["total_s"] = round(time.monotonic() - started, 1)
    report["ok"] = ok
    (pi_dir / "last-run.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"{'passed' if ok else 'FAILED'} in {report['total_s']:.0f} s (report: {pi_dir / 'last-run.json'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
