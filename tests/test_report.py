"""``emotion-edge report``: the summary numbers on constructed sessions whose answers are known,
recording folders (chunks, events, a cut-short last line), a broker's persistent session, and
the HTML rendered by headless Chromium with every section's plot on screen."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

T0 = 1_644_227_874.0  # unix s of the first state
STEP_S = 10.0
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("timeline", "labels", "modalities", "missing", "circumplex", "summary")


def state(i: int, ts: float, label: str, stress: float | None, *, valence: float | None = 0.3,
          eeg_missing_reason: str | None = None, schema: int = 1) -> dict:
    modalities = {"eda": {"quality": 0.9, "weight": 0.6, "ts": ts, "outputs": {"stress": 0.5}}}
    if eeg_missing_reason is None:
        modalities["eeg"] = {"quality": 0.7, "weight": 0.4, "ts": ts, "outputs": {"valence": 0.1, "arousal": 0.2}}
    out = {"schema_version": schema, "seq": i, "ts": ts, "device_id": "wearable-1", "valence": valence,
           "arousal": -0.4, "stress": stress, "label": label, "confidence": 0.8, "modalities": modalities,
           "missing": [] if eeg_missing_reason is None else ["eeg"],
           "missing_reasons": {} if eeg_missing_reason is None else {"eeg": eeg_missing_reason},
           "models": {"eda": "1.1.0", "eeg": "1.0.0"}, "calibrated": False}
    if schema == 2:
        out.update(valence_confidence=0.2, arousal_confidence=0.5, stress_confidence=0.3, label_confidence=0.4)
    return out


def constructed_states() -> list[dict]:
    """25 states, one per 10 s, whose answers are worked out by hand:
    0-9 calm (stress 0.1), 10-14 stressed (0.8), 15-19 schema 2 "uncertain" (valence null; stress
    null, null, 0.5, 0.5, 0.5), then 60 s without states, then 20-24 happy (0.3) with eeg stale."""
    states = [state(i, T0 + STEP_S * i, "calm", 0.1) for i in range(10)]
    states += [state(i, T0 + STEP_S * i, "stressed", 0.8) for i in range(10, 15)]
    states += [state(i, T0 + STEP_S * i, "uncertain", None if i < 17 else 0.5, valence=None, schema=2)
               for i in range(15, 20)]
    states += [state(i, T0 + 260 + STEP_S * (i - 20), "happy", 0.3,
                     eeg_missing_reason=f"stale: last estimate {31 + 5 * (i - 20)} s old") for i in range(20, 25)]
    return states


TAGS = [T0 + 95, T0 + 150]  # segments: ts < 95 (calm), 95..150 (stressed), from 150 on (the rest)


def write_lines(path: Path, objects: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects) + tail)
    return path


def write_tags(path: Path) -> Path:
    path.write_text("".join(f"{t:.0f}\n" for t in TAGS))
    return path


# --- the numbers ---------------------------------------------------------------------------------

def test_time_per_label_stress_per_tag_segment_and_missing_periods_match_the_hand_worked_answers():
    from edge.report import summary
    from edge.report.tags import Tag

    states = constructed_states()
    line = summary.timeline(states)
    assert line.step_s == STEP_S
    # a state stands until the next; across the 70 s jump state 19 stands one step, the rest is a gap
    assert dict(summary.time_per_label(states, line)) == {"calm": 100.0, "stressed": 50.0, "uncertain": 50.0,
                                                          "happy": 50.0}
    segments = summary.stress_per_tag_segment(states, [Tag(t, f"tag {n}") for n, t in enumerate(TAGS, 1)])
    assert [s.name for s in segments] == ["start → tag 1", "tag 1 → tag 2", "tag 2 → end"]
    assert [s.states for s in segments] == [10, 5, 10]
    assert [s.stress_values for s in segments] == [10, 5, 8]  # two null stresses skipped
    assert [round(s.mean_stress, 6) for s in segments] == [0.1, 0.8, round((3 * 0.5 + 5 * 0.3) / 8, 6)]

    periods = summary.missing_periods(states, line)
    assert [(p.modality, p.start_unix - T0, p.end_unix - T0, p.origin) for p in periods] == [
        (summary.NO_STATES, 200.0, 260.0, "gap"),
        ("eeg", 260.0, 310.0, "states"),  # five "stale: N s old" reasons are one period
    ]
    assert periods[1].reason == "stale: last estimate 31 s old"

    # schema 2: a dimension's own confidence is used where present; a null value stays a gap
    values, confidences = summary.dimension_series(states, "valence")
    assert math.isnan(values[15]) and confidences[15] == 0.2 and confidences[0] == 0.8
    low, high = summary.confidence_band(*summary.dimension_series(states, "stress"), "stress")
    assert (round(low[0], 6), round(high[0], 6)) == (0.0, 0.2)  # 0.1 -/+ (1 - 0.8) x 0.5, clipped at 0


def test_lost_and_failed_events_of_a_recording_make_periods_per_source():
    from edge.report import summary

    states = [state(i, T0 + STEP_S * i, "calm", 0.1) for i in range(10)]
    events = [  # as the recorder writes them: source events name no modality, their text starts with the spec
        {"ts": T0 - 300, "kind": "start", "modality": None, "text": "recording started (device wearable-1)"},
        {"ts": T0 + 86_400, "kind": "stop", "modality": None, "text": "on another clock: ignored"},
        {"ts": T0 + 20, "kind": "lost", "modality": None, "text": "ble:polar-h10:AA:BB: connection lost"},
        {"ts": T0 + 30, "kind": "lost", "modality": None, "text": "serial:cyton:/dev/ttyUSB0: connection lost"},
        {"ts": T0 + 40, "kind": "reconnected", "modality": None, "text": "ble:polar-h10:AA:BB: reconnected (reconnect 1)"},
        {"ts": T0 + 50, "kind": "missing", "modality": "eeg", "text": "eeg missing: no data"},  # a tick only
        {"ts": T0 + 60, "kind": "failed", "modality": None, "text": "replay:e4:/data/S02: failed: bad CSV"}]
    line = summary.timeline(states)
    assert summary.session_frame(line, events) == (T0 - 300, T0 + 100)  # the models warmed up for 300 s
    periods = summary.missing_periods(states, line, events)
    assert [(p.modality, p.start_unix - T0, p.end_unix - T0, p.reason) for p in periods] == [
        (summary.NO_STATES, -300.0, 0.0, "no states published (warming up, daemon stopped, or no data)"),
        ("ble:polar-h10:AA:BB", 20.0, 40.0, "lost: connection lost"),
        ("serial:cyton:/dev/ttyUSB0", 30.0, 100.0, "lost: connection lost"),  # never back: to the end
        ("replay:e4:/data/S02", 60.0, 100.0, "failed: bad CSV"),
    ]


def test_report_from_a_states_file_shows_the_numbers(tmp_path):
    source = write_lines(tmp_path / "states.jsonl", constructed_states())
    out = tmp_path / "report.html"
    proc = run_cli("report", str(source), "--tags", str(write_tags(tmp_path / "tags.csv")), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    rows = {tuple(re.sub(r"<[^>]+>", "|", row).strip("|").split("||"))
            for row in re.findall(r"<tr>(.*?)</tr>", page)}
    assert {("calm", "01:40", "40.0 %"), ("stressed", "00:50", "20.0 %"), ("happy", "00:50", "20.0 %"),
            ("uncertain", "00:50", "20.0 %")} <= rows
    assert {("start → tag 1", "start", "01:35", "10", "0.100"), ("tag 1 → tag 2", "01:35", "02:30", "5", "0.800"),
            ("tag 2 → end", "02:30", "end", "10", "0.375")} <= rows
    assert ("eeg", "04:20", "05:10", "00:50", "stale: last estimate 31 s old", "states") in rows
    for section in SECTIONS:
        assert re.search(rf'<img data-section="{section}" alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]{{2000,}}"',
                         page), section
    # self-contained: nothing fetched from anywhere, and the page's policy forbids it
    assert not re.search(r'(?:src|href)="(?!data:)', page) and "url(" not in page and "@import" not in page
    assert "default-src 'none'" in page


def test_recording_folder_reads_every_chunk_and_warns_once_about_a_cut_short_last_line(tmp_path):
    states = constructed_states()
    folder = tmp_path / "rec"
    folder.mkdir()
    write_lines(folder / "states-0000.jsonl", states[:12])
    write_lines(folder / "states-0001.jsonl", states[12:] + [states[3]],  # a repeat (same seq) is dropped
                tail=json.dumps(state(25, T0 + 400, "calm", 0.1))[:57])  # the crash cut this one short
    write_lines(folder / "events-0000.jsonl", [
        {"ts": T0 + 65, "kind": "lost", "modality": None, "text": "ble:muse:00:55: connection lost"},
        {"ts": T0 + 80, "kind": "reconnected", "modality": None, "text": "ble:muse:00:55: reconnected (reconnect 1)"},
        {"ts": T0 + 300, "kind": "label", "modality": None, "text": "happy"}])
    (folder / "recording.json").write_text(json.dumps({"device_id": "wearable-1"}))
    (folder / "signals-0000.edf").write_bytes(b"0       ")  # other files of a recording are left alone
    out = tmp_path / "r.html"
    proc = run_cli("report", str(folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert len(warnings) == 2, proc.stderr
    assert "states-0001.jsonl: last line is cut short" in warnings[0]
    assert "1 repeated state(s)" in warnings[1]
    page = out.read_text()
    assert "<dt>states</dt><dd>25," in page and "<dt>events</dt><dd>3</dd>" in page
    # the source's outage is listed beside the periods the states themselves name
    assert "<td>ble:muse:00:55</td><td class=\"num\">01:05</td><td class=\"num\">01:20</td>" in page
    assert "<td>eeg</td><td class=\"num\">04:20</td>" in page


@pytest.mark.parametrize(("args", "expected"), [
    (["--tags", "{tmp}/bad_tags.csv"], "--tags {tmp}/bad_tags.csv:3: 'soon' is not a unix time"),
    (["--device-id", "other"], "no states from device 'other' (found: wearable-1)"),
    (["--since", "2031-01-01T00:00:00Z"], "no states in the --since/--until window"),
    (["--since", "yesterday"], "--since 'yesterday': not unix seconds or an ISO 8601 time"),
    (["--duration", "5"], "--duration goes with --broker"),
])
def test_bad_input_gets_one_readable_line(tmp_path, args, expected):
    source = write_lines(tmp_path / "states.jsonl", constructed_states())
    (tmp_path / "bad_tags.csv").write_text("1644227900\n1644227950\nsoon\n")
    proc = run_cli("report", str(source), "--out", str(tmp_path / "r.html"),
                   *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotion-edge report: ")
    assert expected.replace("{tmp}", str(tmp_path)) in lines[0]
    assert not (tmp_path / "r.html").exists()


def test_several_devices_need_a_choice_and_then_report_one(tmp_path):
    other = [dict(s, device_id="wearable-2") for s in constructed_states()[:5]]
    source = write_lines(tmp_path / "states.jsonl", constructed_states() + other)
    proc = run_cli("report", str(source), "--out", str(tmp_path / "r.html"))
    assert proc.returncode == 2 and "several devices (wearable-1, wearable-2); choose one with --device-id" in proc.stderr
    proc = run_cli("report", str(source), "--device-id", "wearable-2", "--out", str(tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr
    assert "<dt>states</dt><dd>5," in (tmp_path / "r.html").read_text()


def test_without_matplotlib_the_report_says_which_extra_in_one_line(tmp_path):
    source = write_lines(tmp_path / "states.jsonl", constructed_states())
    code = ("import sys; sys.modules['matplotlib'] = None; from edge.cli import main; "
            f"sys.exit(main(['report', {str(source)!r}, '--out', {str(tmp_path / 'r.html')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("emotion-edge report: needs matplotlib, which comes with the "
                                                    "[report] extra: pip install 'emotion-edge[report]'")


def test_report_from_a_broker_gets_what_a_persistent_session_queued(mqtt_broker, tmp_path):
    """MQTT keeps no history: only a persistent session gives back states published while away."""
    import paho.mqtt.client as mqtt

    session = f"report-test-{tmp_path.name}"[:60]
    out = tmp_path / "r.html"
    # the first visit creates the session on the broker; nothing has been published yet
    proc = run_cli("report", "--broker", mqtt_broker.url, "--device-id", "wearable-1", "--session", session,
                   "--duration", "1", "--out", str(out))
    assert proc.returncode == 2 and "no states" in proc.stderr.splitlines()[-1]
    publisher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", mqtt_broker.port)
    publisher.loop_start()
    try:
        for s in constructed_states():
            publisher.publish("emotion-edge/wearable-1/state", json.dumps(s), qos=1).wait_for_publish(5)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    proc = run_cli("report", "--broker", mqtt_broker.url, "--device-id", "wearable-1", "--session", session,
                   "--duration", "2", "--tags", str(write_tags(tmp_path / "tags.csv")), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert "<dt>states</dt><dd>25," in page and ">0.375<" in page


# --- rendered in a real browser ------------------------------------------------------------------

def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={cwd / 'profile'}",
         "--window-size=1200,4000", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def assert_every_section_on_screen(report: Path, tmp_path: Path) -> None:
    """Chromium lays out and decodes every section's image, and none of them is blank in the screenshot."""
    from PIL import Image  # comes with matplotlib

    # where each section's image lies, and whether the browser decoded it: a copy of the page with a
    # probe script (the report itself runs no script; its policy would block one)
    probe = tmp_path / "probe.html"
    probe.write_text(re.sub(r"<meta http-equiv=\"Content-Security-Policy\"[^>]*>", "", report.read_text()).replace(
        "</body>", "<script>const probe = document.createElement('pre'); probe.id = 'probe'; "
        "probe.textContent = JSON.stringify([...document.querySelectorAll('img[data-section]')].map(i => {"
        "const r = i.getBoundingClientRect(); return [i.dataset.section, i.naturalWidth, r.left, r.top, r.width, "
        "r.height];})); document.body.appendChild(probe);</script></body>"))
    dom = chromium("--dump-dom", probe.as_uri(), cwd=tmp_path)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert found, dom.stderr[-800:]
    boxes = {name: (natural, box) for name, natural, *box in json.loads(found.group(1))}
    assert sorted(boxes) == sorted(SECTIONS)

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", report.as_uri(), cwd=tmp_path)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 4000)
    for name, (natural_width, (left, top, width, height)) in boxes.items():
        assert natural_width > 300, f"{name}: the browser did not decode the image"
        assert width > 300 and height > 80 and top + height <= 4000, f"{name}: laid out at {left, top, width, height}"
        region = image.crop((int(left), int(top), int(left + width), int(top + height)))
        colours = region.getcolors(maxcolors=1 << 16) or [(0, None)] * (1 << 16)
        inked = sum(count for count, rgb in colours if rgb is not None and min(rgb) < 200)
        assert len(colours) > 20 and inked > 0.01 * width * height, f"{name}: its region of the screenshot is blank"
    below = image.crop((0, int(max(t + h for _, (_, (_, t, _, h)) in boxes.items())) + 400, 1200, 4000))
    assert below.getextrema() == ((255, 255), (255, 255), (255, 255))  # and nothing but white after the page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_renders_every_section_with_its_plot(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    write_lines(folder / "states-0000.jsonl", constructed_states())
    write_lines(folder / "events-0000.jsonl", [
        {"ts": T0 + 40, "kind": "lost", "modality": None, "text": "ble:hrs:AA: connection lost"},
        {"ts": T0 + 60, "kind": "reconnected", "modality": None, "text": "ble:hrs:AA: reconnected (reconnect 1)"}])
    report = tmp_path / "report.html"
    proc = run_cli("report", str(folder), "--tags", str(write_tags(tmp_path / "tags.csv")), "--out", str(report))
    assert proc.returncode == 0, proc.stderr

    assert_every_section_on_screen(report, tmp_path)


def test_odd_states_still_make_a_report(tmp_path):
    """Nulls everywhere, wrong types, a lone state per label, repeated ts, unsorted lines: a page, never a traceback."""
    odd = [
        {"ts": T0 + 30, "seq": 3, "device_id": "wearable-1", "valence": None, "arousal": None, "stress": None,
         "label": "uncertain", "confidence": None, "modalities": None, "missing": "eeg", "missing_reasons": [],
         "schema_version": 2, "valence_confidence": None},
        {"ts": T0, "seq": 0, "device_id": "wearable-1", "valence": True, "arousal": "high", "stress": 2.5,
         "label": None, "confidence": 1.7, "modalities": {"eda": "broken", "eeg": {"quality": None}},
         "missing": ["face"], "missing_reasons": {}},
        {"ts": T0, "seq": 1, "device_id": "wearable-1", "label": 7, "modalities": {"eda": {"weight": -3}}},
        {"ts": T0 + 10, "seq": 2, "device_id": "wearable-1", "valence": 0.5, "arousal": 0.5, "stress": 0.2,
         "label": "happy", "confidence": 0.9, "missing": ["face"], "missing_reasons": {"face": "no camera"}},
    ]
    source = write_lines(tmp_path / "states.jsonl", odd)
    out = tmp_path / "r.html"
    proc = run_cli("report", str(source), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert page.count('<img data-section="') == len(SECTIONS)
    assert "<td>face</td>" in page and "no reason given" in page  # a reason that is absent says so


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_report_on_an_e4_replay_with_its_tags_shows_every_section(shared_data, mqtt_broker, tmp_path):
    """The issue's acceptance run: the daemon replays a Stress-Predict subject's E4 folder, the
    report collects its states from the broker (a persistent session, so none is missed) and
    the subject's button presses, and Chromium shows every section."""
    subject = shared_data / "stress-predict" / "Raw_data" / "S02"
    if not (subject / "EDA.csv").exists():
        pytest.skip(f"{subject} not found")
    session = f"report-e4-{tmp_path.name}"[:60]
    out = tmp_path / "s02.html"
    common = ["--broker", mqtt_broker.url, "--device-id", "s02", "--session", session, "--out", str(out)]
    run_cli("report", *common, "--duration", "0.5")  # opens the session; nothing published yet
    daemon = run_cli("run", "--source", f"replay:e4:{subject}", "--speed", "max", "--duration", "3",
                     "--broker", mqtt_broker.url, "--device-id", "s02", "--state-dir", str(tmp_path / "state"))
    assert daemon.returncode == 0, daemon.stderr[-2000:]
    published = int(re.search(r"stopped: (\d+) states published", daemon.stderr).group(1))
    proc = run_cli("report", *common, "--duration", "1.5", "--tags", str(subject / "tags_S02.csv"))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert published > 20 and f"<dt>states</dt><dd>{published}," in page  # every published state is in
    assert re.search(r"<dt>models</dt><dd>cardiac [0-9.]+, eda [0-9.]+</dd>", page)
    assert "<td>start → tag 1</td>" in page  # the replay's clock is the recording's: its tags fall inside

    assert_every_section_on_screen(out, tmp_path)
