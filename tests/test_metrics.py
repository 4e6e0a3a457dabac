"""Health figures: Prometheus text format over real HTTP and as an atomic textfile."""

from __future__ import annotations

import re
import urllib.request

from edge.metrics import MetricsRegistry, MetricsServer, describe_daemon_metrics

SAMPLE_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


def test_render_follows_the_text_format():
    reg = describe_daemon_metrics(MetricsRegistry())
    reg.inc("emotion_edge_windows_processed_total", modality="eda")
    reg.inc("emotion_edge_windows_processed_total", 2, modality="eda")
    reg.set("emotion_edge_modality_quality", 0.75, modality='we"ird')
    text = reg.render()
    assert 'emotion_edge_windows_processed_total{modality="eda"} 3' in text
    assert "# TYPE emotion_edge_windows_processed_total counter" in text
    assert 'modality="we\\"ird"' in text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert SAMPLE_LINE.match(line), line


def test_http_endpoint_and_textfile(tmp_path):
    reg = describe_daemon_metrics(MetricsRegistry())
    reg.set("emotion_edge_outbox_depth", 42)
    server = MetricsServer(reg, port=0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "emotion_edge_outbox_depth 42" in resp.read().decode()
    finally:
        server.stop()
    path = tmp_path / "emotion_edge.prom"
    reg.write_textfile(path)
    assert "emotion_edge_outbox_depth 42" in path.read_text()
    assert not (tmp_path / "emotion_edge.prom.tmp").exists()
