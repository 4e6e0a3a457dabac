"""Soak: one simulated hour through the real daemon as fast as it goes, with flat memory.

A wearable runs for days; a leak of a few kB a window becomes the OOM killer by the weekend
(the systemd unit caps the service at 300 MB). The daemon replays ``simulate:duration=3600``
at ``--speed max``; its resident set (VmRSS from /proc) is sampled throughout. After warm-up
(models loaded, ring buffers full, first windows done) the last third of the run may not sit
higher than the first third by more than a small bound, every state must arrive, and nothing
may be logged at ERROR.
"""

from __future__ import annotations

import re
import statistics
import sys
import time

import pytest

from conftest import load_test_module  # noqa: E402

harness = load_test_module("daemon_harness")

DEVICE = "soak1"
SIMULATED_S = 3600
WARM_UP_FRACTION = 0.2  # of the samples: start-up, model loading, buffers filling
MAX_GROWTH_KB = 10 * 1024  # last third over first third (medians)
SAMPLE_EVERY_S = 0.1


def test_an_hour_at_full_speed_keeps_memory_flat_and_delivers_every_state(mqtt_broker, tmp_path):
    collector = harness.StateCollector(mqtt_broker.host, mqtt_broker.port, DEVICE, persistent=False)
    state_dir = tmp_path / "state"
    started = time.monotonic()
    daemon = harness.DaemonProcess(
        ["--source", f"simulate:duration={SIMULATED_S},seed=11", "--speed", "max", "--broker", mqtt_broker.url,
         "--device-id", DEVICE, "--state-dir", str(state_dir)], tmp_path)
    samples: list[tuple[float, int]] = []  # (s since start, VmRSS kB) while the pipeline runs
    try:
        assert daemon.wait_for_log("running:", 60), daemon.stderr()[-3000:]
        while daemon.alive() and time.monotonic() - started < 300:
            rss = daemon.rss_kb()
            if rss is not None:
                samples.append((time.monotonic() - started, rss))
            time.sleep(SAMPLE_EVERY_S)
        rc = daemon.wait(60)
    finally:
        daemon.close()
        wall_s = time.monotonic() - started
    err = daemon.stderr()
    try:
        assert rc == 0, err[-3000:]
        errors = [ln for ln in err.splitlines() if " ERROR " in ln or "Traceback" in ln or " CRITICAL " in ln]
        assert not errors, "\n".join(errors[:10])
        published = int(re.findall(r"stopped: (\d+) states published", err)[-1])
        assert published >= SIMULATED_S / 5 - 20, published  # one state per 5-s fusion hop
        assert collector.wait_for(lambda c: len(set(c.seqs())) >= published, 30), (len(collector.seqs()), published)
        assert harness.missing_seqs(collector.seqs(), 0, published - 1) == []
        assert harness.outbox_depth(state_dir, DEVICE) == 0
        # memory: flat after warm-up
        assert len(samples) >= 30, f"only {len(samples)} RSS samples: the run was too short to judge ({wall_s:.1f} s)"
        steady = [kb for _, kb in samples[int(len(samples) * WARM_UP_FRACTION):]]
        third = len(steady) // 3
        first, last = statistics.median(steady[:third]), statistics.median(steady[-third:])
        growth_kb = last - first
        print(f"\nsoak: {SIMULATED_S} simulated s in {wall_s:.1f} s wall, {published} states, "
              f"RSS first third {first / 1024:.1f} MB, last third {last / 1024:.1f} MB, "
              f"growth {growth_kb / 1024:+.2f} MB, peak {max(kb for _, kb in samples) / 1024:.1f} MB")
        assert growth_kb < MAX_GROWTH_KB, (
            f"RSS grew {growth_kb / 1024:.1f} MB from the first to the last third of the run "
            f"({first / 1024:.1f} -> {last / 1024:.1f} MB)")
        assert max(kb for _, kb in samples) < 300 * 1024, "over the systemd unit's MemoryMax"
    finally:
        collector.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-s"]))
