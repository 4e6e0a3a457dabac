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


REQUEST_TIMEOUT_S = 5.0  # a connection idle (or trickling) this long is closed
MAX_CONNECTIONS = 8  # connections served at once; more are closed at once (a scraper needs one)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """At most ``MAX_CONNECTIONS`` handler threads; a client that goes away is one DEBUG line."""

    daemon_threads = True
    request_queue_size = 64  # listen backlog: a burst of scrapers waits, not SYN-dropped (1 s)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0

    def process_request(self, request: object, client_address: object) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("metrics: more than %d connections at once; closing the extra ones "
                            "(%d so far)", MAX_CONNECTIONS, self.refused)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: object, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        import sys  # noqa: PLC0415

        exc = sys.exc_info()[1]
        # a scraper that hangs up or resets mid-request is not the daemon's problem: no traceback
        log.debug("metrics: request from %s ended: %s: %s", client_address, type(exc).__name__, exc)


class MetricsServer:
    """``GET /metrics`` on (host, port); port 0 picks a free one (see ``.port``).

    Bounded: each connection is closed after ``REQUEST_TIMEOUT_S`` without a whole request, at
    most ``MAX_CONNECTIONS`` are served at once, and a client that aborts costs one DEBUG line.
    """

    def __init__(self, registry: MetricsRegistry, host: str = "127.0.0.1", port: int = 9108):
        registry_ref = registry

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S  # socket timeout for every read and write

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

        self._server = _BoundedHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("metrics: serving Prometheus figures on http://%s:%d/metrics", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
