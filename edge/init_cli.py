"""``emotion-edge init [--config FILE] [--system] [--root DIR] [--force]``: set up an installation.

For a user: writes a commented config (the shipped ``examples/emotion-edge.toml``) to FILE
(default ``$XDG_CONFIG_HOME/emotion-edge/emotion-edge.toml``, i.e. ``~/.config/...``) and creates
the state dir. With ``--system`` (as root): ``/etc/emotion-edge/`` with the config, the service
user (a ``sysusers.d`` entry applied with ``systemd-sysusers``), the state dir
``/var/lib/emotion-edge`` and the systemd unit, its ``ExecStart`` pointing at this installation.
Each step prints one line. An existing config is kept unless ``--force``.

``--root DIR`` puts every system file under DIR instead of ``/`` (packagers, tests): the service
user then goes into DIR/etc/passwd, and systemd is not told to reload.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from edge import __version__
from edge.errors import EmotionEdgeError

SERVICE_USER = "emotion-edge"
SYSTEM_CONFIG = Path("/etc/emotion-edge/emotion-edge.toml")
SYSTEM_STATE_DIR = Path("/var/lib/emotion-edge")
UNIT_PATH = Path("/etc/systemd/system/emotion-edge.service")
SYSUSERS_PATH = Path("/etc/sysusers.d/emotion-edge.conf")
SYSUSERS_LINE = f'u {SERVICE_USER} - "emotion-edge daemon" {SYSTEM_STATE_DIR} /usr/sbin/nologin'
_STATE_DIR_LINE = "# state_dir = "  # the example's commented default, replaced by the dir init made


class InitError(EmotionEdgeError):
    """A step of ``emotion-edge init`` cannot be done (no shipped file, not root, a tool failed)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="where the config goes (default ~/.config/emotion-edge/emotion-edge.toml; "
                             "with --system /etc/emotion-edge/emotion-edge.toml)")
    parser.add_argument("--system", action="store_true",
                        help="as root: /etc/emotion-edge/, the service user, /var/lib/emotion-edge and the systemd unit")
    parser.add_argument("--root", metavar="DIR", type=Path, default=Path("/"),
                        help="with --system: put the system files under DIR instead of / (packaging, tests)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing config")


def shipped_file(folder: str, name: str) -> Path:
    """A file of the repo's deploy/ or examples/ folder: installed as edge.shipped_<folder>, else the checkout's."""
    import importlib  # noqa: PLC0415

    try:
        base = Path(importlib.import_module(f"edge.shipped_{folder}").__file__).resolve().parent  # type: ignore[arg-type]
    except ImportError:
        base = Path(__file__).resolve().parent.parent / folder
    path = base / name
    if not path.is_file():
        raise InitError(f"shipped file {folder}/{name} not found (looked in {base}); reinstall emotion-edge")
    return path


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "emotion-edge" / "emotion-edge.toml"


def config_text(state_dir: Path) -> str:
    """The shipped example with a header saying where it came from and ``state_dir`` set to ``state_dir``."""
    lines = shipped_file("examples", "emotion-edge.toml").read_text().splitlines()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    out = [f"# Written by `emotion-edge init` ({__version__}, {stamp}) from the shipped example; edit freely.",
           "# `emotion-edge run --config THIS_FILE --print-config` shows what is in force; "
           "`emotion-edge doctor --config THIS_FILE` checks it."]
    for line in lines:
        if line.lstrip().startswith(_STATE_DIR_LINE):
            comment = line.split("#", 2)[-1].strip()
            line = f'state_dir = "{state_dir}"   # {comment}'
        out.append(line)
    return "\n".join(out) + "\n"


def unit_text(executable: str, config: Path = SYSTEM_CONFIG) -> tuple[str, list[str]]:
    """The shipped unit with ``ExecStart`` running ``executable`` on ``config``; (text, notes on what was changed)."""
    notes = []
    lines = []
    for line in shipped_file("deploy", "emotion-edge.service").read_text().splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={executable} run --config {config} --state-dir {SYSTEM_STATE_DIR}"
        elif line == "ProtectHome=yes" and executable.startswith(("/home/", "/root/")):
            # ProtectHome=yes hides /home from the service, and with it an installation living there
            line = "ProtectHome=read-only"
            notes.append(f"ProtectHome=read-only: this installation lives under {executable.split('/')[1]}/ "
                         "(install under /opt to keep ProtectHome=yes)")
        lines.append(line)
    return "\n".join(lines) + "\n", notes


def this_executable() -> str:
    """The ``emotion-edge`` script of this installation (beside its python), else ``python -m edge``."""
    # abspath, not resolve: a venv's python is a symlink to the base interpreter, outside the venv
    script = Path(os.path.abspath(sys.executable)).parent / "emotion-edge"
    return str(script) if script.is_file() else f"{sys.executable} -m edge"


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def _write_config(path: Path, state_dir: Path, force: bool, say) -> None:
    if path.exists() and not force:
        say(f"config {path}: exists, kept as it is (--force overwrites it)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config_text(state_dir))
    tmp.chmod(0o644)
    tmp.replace(path)
    say(f"config {path}: {'overwritten' if existed else 'written'} from the shipped example")


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise InitError(f"{what}: {cmd[0]} could not run ({exc})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise InitError(f"{what}: {' '.join(cmd[:2])} failed: {last}")


def init_user(config: Path | None, force: bool, say) -> None:
    from edge.config import default_state_dir  # noqa: PLC0415

    state_dir = Path(default_state_dir()).expanduser()
    _write_config((config or user_config_path()).expanduser(), state_dir, force, say)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    say(f"state dir {state_dir}: ready (outbox, seq counter, baselines)")
    say(f"next: emotion-edge run --config {(config or user_config_path()).expanduser()}")


def init_system(root: Path, config: Path | None, force: bool, say) -> None:
    live = root.resolve() == Path("/")
    if live and os.geteuid() != 0:
        raise InitError("init --system: needs root (sudo emotion-edge init --system), "
                        "or --root DIR to stage the files under DIR")
    etc_dir = _under(root, SYSTEM_CONFIG.parent)
    etc_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    say(f"{etc_dir}: ready")
    if config is not None and not config.is_absolute():
        raise InitError(f"init --system --config {config}: give an absolute path (the service reads it)")
    config = config or SYSTEM_CONFIG
    _write_config(_under(root, config), SYSTEM_STATE_DIR, force, say)

    sysusers = _under(root, SYSUSERS_PATH)
    sysusers.parent.mkdir(parents=True, exist_ok=True)
    sysusers.write_text(SYSUSERS_LINE + "\n")
    tool = shutil.which("systemd-sysusers")
    if tool:
        _run([tool, f"--root={root}", sysusers.as_posix()] if not live else [tool, sysusers.as_posix()],
             f"service user {SERVICE_USER}")
        say(f"service user {SERVICE_USER}: present (system user, no login; {sysusers})")
    elif live and shutil.which("useradd"):
        if subprocess.run(["id", "-u", SERVICE_USER], capture_output=True).returncode != 0:
            _run(["useradd", "--system", "--user-group", "--home-dir", str(SYSTEM_STATE_DIR),
                  "--shell", "/usr/sbin/nologin", SERVICE_USER], f"service user {SERVICE_USER}")
        say(f"service user {SERVICE_USER}: present (useradd --system)")
    else:
        say(f"service user {SERVICE_USER}: declared in {sysusers} (systemd-sysusers creates it at boot)")

    state_dir = _under(root, SYSTEM_STATE_DIR)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    if live:
        shutil.chown(state_dir, SERVICE_USER, SERVICE_USER)
    say(f"state dir {state_dir}: ready{f' (owner {SERVICE_USER})' if live else ''}")

    unit, notes = unit_text(this_executable(), config)
    unit_path = _under(root, UNIT_PATH)
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    unit_path.write_text(unit)
    unit_path.chmod(0o644)
    say(f"systemd unit {unit_path}: installed (ExecStart {this_executable()})")
    for note in notes:
        say(f"  note: {note}")
    if live and shutil.which("systemctl"):
        _run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
        say("systemd: reloaded")
    say("next: edit the config's sources and broker, then: sudo systemctl enable --now emotion-edge")


def main(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    if args.root != Path("/") and not args.system:
        raise InitError("init --root: only with --system (a user's config goes to --config FILE)")
    try:
        if args.system:
            init_system(args.root, args.config, args.force, say)
        else:
            init_user(args.config, args.force, say)
    except OSError as exc:  # a folder that cannot be made, a file that cannot be written
        raise InitError(f"init: {exc.filename or ''}: {exc.strerror or exc}") from None
    return 0
