"""Health figures in the Prometheus text exposition format (version 0.0.4), no dependency.

Opt-in: served over HTTP on ``metrics.port`` (loopback by default) and/or written atomically to
``metrics.textfile`` (for node_exporter's textfile collector). Names follow Prometheus
conventions: ``emotion_edge_<what>_<unit>``, counters end in ``_total``.
"""

from __future__ import annotations

import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MetricsRegistry:
    """Counters and gauges with optional labels; thread-safe; rendered on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def describe(self, name: str, kind: str, help_text: str) -> None:
        if kind not in ("counter", "gauge"):
            raise ValueError(f"metric {name}: kind must be counter or gauge")
        with self._lock:
            self._meta[name] = (kind, help_text)
            self._values.setdefault(name, {})

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values.setdefault(name, {})[key] = float(value)

    def get(self, name: str, **labels: str) -> float | None:
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())))

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._values):
                kind, help_text = self._meta.get(name, ("gauge", ""))
                if help_text:
                    lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                for key, value in sorted(self._values[name].items()):
                    label_text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in key)
                    lines.append(f"{name}{{{label_text}}} {value:.6g}" if label_text else f"{name} {value:.6g}")
        return "\n".join(lines) + "\n"

    def write_textfile(self, path: Path) -> None:
        """Atomic write (temp file + rename) so a collector never reads half a file."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.render())
        os.replace(tmp, path)


def describe_daemon_metrics(registry: MetricsRegistry) -> MetricsRegistry:
    """The daemon's figures, declared once so /metrics always lists them."""
    for name, kind, help_text in (
        ("emotion_edge_windows_processed_total", "counter", "Windows scored, per modality."),
        ("emotion_edge_states_published_total", "counter", "Fused states handed to the publisher."),
        ("emotion_edge_lost_packets_total", "counter", "Packets or samples known lost (sequence gaps), per source."),
        ("emotion_edge_decode_errors_total", "counter", "Corrupt frames skipped, per source."),
        ("emotion_edge_modality_quality", "gauge", "Latest signal-quality index in [0,1], per modality."),
        ("emotion_edge_publish_latency_seconds", "gauge", "Latest window-end to PUBACK latency."),
        ("emotion_edge_outbox_depth", "gauge", "States waiting in the on-disk outbox."),
        ("emotion_edge_mqtt_connected", "gauge", "1 while connected to the broker."),
    ):
        registry.describe(name, kind, help_text)
    return registry


class MetricsServer:
    """``GET /metrics`` on (host, port); port 0 picks a free one (see ``.port``)."""

    def __init__(self, registry: MetricsRegistry, host: str = "127.0.0.1", port: int = 9108):
        registry_ref = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                body = registry_ref.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("metrics: " + fmt, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("metrics: serving Prometheus figures on http://%s:%d/metrics", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
