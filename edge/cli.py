"""The ``emotion-edge`` command. Each subcommand lives in its own module, imported only when used.

A subcommand module provides ``add_arguments(parser)`` and ``main(args) -> int``; its
module-level imports stay light (no TensorFlow, neurokit2, scipy.signal) so that
``emotion-edge --help`` and the daemon start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge.errors import EmotionEdgeError, MissingExtraError

# Packages that only an optional extra installs -> that extra (pyproject.toml's optional-dependencies).
EXTRA_OF_PACKAGE = {
    "tensorflow": "train", "keras": "train", "neurokit2": "train", "openpyxl": "train", "scipy": "train",
    "cv2": "camera", "tflite_runtime": "tflite", "matplotlib": "report",
}

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge.daemon_cli", "run the daemon: sensors -> models -> fusion -> MQTT"),
    "listen": ("edge.listen", "subscribe and show published emotion states"),
    "demo": ("edge.demo", "embedded broker + simulated wearable + daemon + live view"),
    "bench": ("edge.tools.bench", "measure CPU, latency, memory and start-up of the pipeline"),
    "doctor": ("edge.doctor", "check runtime, models, broker, TLS files and devices"),
    "devices": ("firmware_bridge.cli", "scan for and check sensors"),
    "report": ("edge.report.cli", "session report: states -> one self-contained HTML page with plots"),
    "homeassistant": ("edge.homeassistant", "show or remove the Home Assistant MQTT discovery configs"),
    "train": ("edge.tools.train", "train a modality's model on a dataset"),
    "models": ("edge.tools.models_cli", "list, inspect, quantize, evaluate and benchmark models"),
    "init": ("edge.init_cli", "write a commented config and the state dir (--system: service user and unit too)"),
    "evaluate": ("edge.tools.evaluate_states", "score the published states against real labels (evaluate states)"),
}


def installed_version() -> str:
    """The installed distribution's version (the wheel's metadata), else the package's own."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("emotion-edge")
    except metadata.PackageNotFoundError:
        from edge import __version__  # noqa: PLC0415

        return __version__


class _Unavailable:
    """A subcommand whose module cannot be imported here: it says so in one line instead of argparse's
    "invalid choice" (``python -m edge`` run in a source checkout imports the checkout's ``edge/``,
    which has no ``edge.tools``: the tools are installed into it from ``tools/``)."""

    def __init__(self, module_name: str):
        self.module_name = module_name

    def main(self, args: argparse.Namespace) -> int:
        raise EmotionEdgeError(
            f"{self.module_name} cannot be imported here; it is installed with the package (make setup, or "
            f"pip install .): run the installed emotion-edge, or python -m edge from outside the source checkout")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="emotion-edge", description="On-device multimodal emotion engine.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"emotion-edge {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, object] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name and module_name.startswith(exc.name):  # not installed, or a checkout's edge/ without edge.tools
                sub.add_parser(name, help=f"{help_text} (not available here)", add_help=False)
                modules[name] = _Unavailable(module_name)
                continue
            raise
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)  # type: ignore[attr-defined]
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not isinstance(modules.get(args.command), _Unavailable):
        args = parser.parse_args(argv)  # argparse's own error for the unknown arguments
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose < 2:
        # bleak warns on every connection attempt where BlueZ is absent; our own line says it once
        logging.getLogger("bleak").setLevel(logging.ERROR)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].main(args) or 0)  # type: ignore[attr-defined]
    except EmotionEdgeError as exc:
        print(f"emotion-edge {args.command}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a runtime-only install running a tool that needs an extra
        package = (exc.name or "").split(".")[0]
        if package not in EXTRA_OF_PACKAGE:
            raise
        print(f"emotion-edge {args.command}: {MissingExtraError(package, EXTRA_OF_PACKAGE[package])}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
