"""The Stress-Predict dataset (Iqbal et al., Sensors 22(21):8135, 2022) as windows of features and labels.

Layout (the study's public repository)::

    PATH/Raw_data/SXX/{EDA,BVP,IBI,HR,TEMP,ACC}.csv, tags_SXX.csv   Empatica E4 exports
    PATH/Processed_data/Improved_All_Combined_hr_rsp_binary.csv     Participant, HR, respr, Time(sec), Label

The label file gives one 0/1 label a second (0 baseline/rest, 1 stress task) per ``Participant``
number; participant ``p`` is folder ``S{p:02d}`` (checked here against the recordings' unix
times: every participant's labelled seconds must lie inside that folder's recording). In the
published file the labels start 9 s after the E4 session start and flip exactly at the
session's tag times; participant 1 (S01) has no labels and is skipped.

Windows end on a common grid (every ``HOP_S`` from the recording's start + 60 s), so the EDA and
cardiac models score the same instants and can be fused. Each window is up to 300 s long: its
last 60 s are described and the rest is context (clipped at the recording's start, as in the
daemon's warm-up). A window's label is the majority of the labelled seconds in its last 60 s;
windows with under half of those seconds labelled are not used. Feature extraction calls the daemon's own functions (``edge.features``), so
training sees exactly what the daemon computes.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge.errors import DatasetError
from edge.features import cardiac, eda
from edge.tools.npz_cache import read_npz, write_npz
from firmware_bridge.protocols.e4_csv import E4Ibi, E4Signal, read_e4_ibi, read_e4_signal

log = logging.getLogger(__name__)

LABEL_FILE = Path("Processed_data") / "Improved_All_Combined_hr_rsp_binary.csv"
EDA_WINDOW_S = 300.0  # the last 60 s described (edge.features.eda.RECENT_S), the rest as context
CARDIAC_WINDOW_S = 300.0
LABEL_WINDOW_S = 60.0  # a window's label: the majority over the stretch its features describe
HOP_S = 5.0
CACHE_ENV = "EMOTION_EDGE_FEATURE_CACHE"  # folder for cached per-subject features (tools only)


@dataclass(frozen=True)
class Subject:
    sid: str
    eda: E4Signal
    bvp: E4Signal
    ibi: E4Ibi | None
    label_times_unix: np.ndarray
    labels: np.ndarray

    @property
    def start_unix(self) -> float:
        return min(self.eda.start_unix, self.bvp.start_unix)

    @property
    def end_unix(self) -> float:
        return min(self.eda.start_unix + self.eda.duration_s, self.bvp.start_unix + self.bvp.duration_s)


def subject_id(participant: int) -> str:
    return f"S{participant:02d}"


def raw_subjects(root: Path) -> list[str]:
    """Subject folders present under ``Raw_data`` (sorted)."""
    raw = Path(root) / "Raw_data"
    if not raw.is_dir():
        raise DatasetError(f"stress-predict {root}: no Raw_data folder (expected Raw_data/SXX/EDA.csv ...)")
    found = sorted(p.name for p in raw.iterdir() if p.is_dir() and p.name.startswith("S") and p.name[1:].isdigit())
    if not found:
        raise DatasetError(f"stress-predict {root}: Raw_data holds no SXX subject folders")
    return found


def load_labels(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Label file -> {subject id: (unix seconds, 0/1 labels)}, time-sorted."""
    path = Path(root) / LABEL_FILE
    if not path.exists():
        raise DatasetError(f"stress-predict {root}: label file {LABEL_FILE} not found")
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        try:
            i_p, i_t, i_l = header.index("Participant"), header.index("Time(sec)"), header.index("Label")
        except ValueError as exc:
            raise DatasetError(f"stress-predict {path}: needs columns Participant, Time(sec), Label; has {header}") from exc
        rows = []
        for k, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                rows.append((int(float(row[i_p])), float(row[i_t]), float(row[i_l])))
            except (ValueError, IndexError) as exc:
                raise DatasetError(f"stress-predict {path}: row {k} {row!r} is not Participant/Time/Label numbers") from exc
    table = np.array(rows, dtype=np.float64).reshape(-1, 3)
    out = {}
    for p in np.unique(table[:, 0]).astype(int):
        sel = table[table[:, 0] == p]
        order = np.argsort(sel[:, 1])
        out[subject_id(int(p))] = (sel[order, 1], (sel[order, 2] > 0.5).astype(np.int8))
    return out


def load_subject(root: Path, sid: str, labels: dict[str, tuple[np.ndarray, np.ndarray]],
                 ibi_required: bool = False) -> Subject | None:
    """One subject's EDA, BVP, IBI and labels; None (logged) when the subject has no labels."""
    folder = Path(root) / "Raw_data" / sid
    if sid not in labels:
        log.warning("stress-predict: %s has no labels in %s; skipped", sid, LABEL_FILE)
        return None
    eda_sig = read_e4_signal(folder / "EDA.csv")
    bvp_sig = read_e4_signal(folder / "BVP.csv")
    ibi_path = folder / "IBI.csv"
    ibi = read_e4_ibi(ibi_path) if ibi_path.exists() else None
    if ibi is None and ibi_required:
        raise DatasetError(f"stress-predict {folder}: IBI.csv not found")
    times, y = labels[sid]
    subject = Subject(sid, eda_sig, bvp_sig, ibi, times, y)
    inside = np.mean((times >= subject.start_unix - 1) & (times <= subject.end_unix + 1))
    if inside < 0.9:
        raise DatasetError(
            f"stress-predict {folder}: only {100 * inside:.0f} % of participant {int(sid[1:])}'s labelled seconds "
            f"fall inside this recording ({subject.start_unix:.0f}-{subject.end_unix:.0f}); labels and folders disagree")
    return subject


def window_ends(subject: Subject, first_s: float = LABEL_WINDOW_S, hop_s: float = HOP_S) -> np.ndarray:
    """Window end times: every ``hop_s`` from ``first_s`` after the start (earlier context is clipped,
    as in the daemon's warm-up)."""
    first = subject.start_unix + first_s
    if subject.end_unix < first:
        return np.zeros(0)
    return first + hop_s * np.arange(int((subject.end_unix - first) // hop_s) + 1)


def complete_windows(ends: np.ndarray, window_s: float, first_s: float = LABEL_WINDOW_S) -> np.ndarray:
    """Which windows from ``window_ends`` (the first ends ``first_s`` after the start, earlier context
    clipped) hold a full ``window_s`` of recording, as every window the daemon publishes does."""
    if len(ends) == 0:
        return np.zeros(0, bool)
    return ends - ends[0] + first_s >= window_s - 1e-3  # ms tolerance: unix times carry ~0.2 µs of rounding


def window_labels(subject: Subject, ends: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(majority label, share of the window's seconds that are labelled) per window."""
    t = subject.label_times_unix
    lo = np.searchsorted(t, ends - window_s, side="left")
    hi = np.searchsorted(t, ends, side="left")
    c = np.concatenate([[0], np.cumsum(subject.labels, dtype=np.int64)])
    count = hi - lo
    ones = c[hi] - c[lo]
    y = (2 * ones >= np.maximum(count, 1)).astype(np.int8)
    return y, count / window_s


def _slices(signal: E4Signal, ends: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    stop = np.round((ends - signal.start_unix) * signal.rate_hz).astype(np.int64)
    start = stop - int(round(window_s * signal.rate_hz))
    return np.clip(start, 0, len(signal.data)), np.clip(stop, 0, len(signal.data))


def eda_window_features(subject: Subject, ends: np.ndarray, window_s: float = EDA_WINDOW_S
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, len(EDA_FEATURE_NAMES)), quality (n,)) of EDA windows ending at ``ends``."""
    start, stop = _slices(subject.eda, ends, window_s)
    x = subject.eda.data[:, 0]
    feats = np.full((len(ends), len(eda.EDA_FEATURE_NAMES)), np.nan, np.float32)
    quality = np.zeros(len(ends), np.float32)
    for k, (a, b) in enumerate(zip(start, stop)):  # one call per window, as in the daemon
        w = x[a:b]
        quality[k] = eda.eda_quality(w, subject.eda.rate_hz)
        feats[k] = eda.eda_features(w, subject.eda.rate_hz)
    return feats, quality


def cardiac_window_features(subject: Subject, ends: np.ndarray, window_s: float = CARDIAC_WINDOW_S,
                            source: str = "bvp") -> tuple[np.ndarray, np.ndarray]:
    """(features, quality) of cardiac windows: beats from BVP (``bvp_beats``) or the E4's IBI.csv."""
    feats = np.full((len(ends), len(cardiac.CARDIAC_FEATURE_NAMES)), np.nan, np.float32)
    quality = np.zeros(len(ends), np.float32)
    if source == "bvp":
        start, stop = _slices(subject.bvp, ends, window_s)
        x = subject.bvp.data[:, 0]
        rate = subject.bvp.rate_hz
        for k, (a, b) in enumerate(zip(start, stop)):
            beats_s = cardiac.bvp_beats(x[a:b], rate) / rate
            ibi = cardiac.beats_to_ibi_ms(beats_s)
            quality[k] = cardiac.cardiac_quality(ibi)
            feats[k] = cardiac.hrv_features(ibi, beats_s[1:])
    elif source == "ibi":
        if subject.ibi is None:
            return feats, quality
        t = subject.ibi.times_unix
        lo = np.searchsorted(t, ends - window_s, side="left")
        hi = np.searchsorted(t, ends, side="left")
        for k, (a, b) in enumerate(zip(lo, hi)):
            ibi = subject.ibi.ibi_s[a:b] * 1000.0
            quality[k] = cardiac.cardiac_quality(ibi)
            feats[k] = cardiac.hrv_features(ibi, t[a:b] - ends[k])
    else:
        raise DatasetError(f"cardiac source {source!r}: expected 'bvp' or 'ibi'")
    return feats, quality


def _feature_code_version() -> str:
    digest = hashlib.sha256()
    for module in (eda, cardiac):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def subject_table(root: Path, sid: str, labels: dict[str, tuple[np.ndarray, np.ndarray]],
                  cache_dir: Path | None = None, cardiac_source: str = "bvp",
                  eda_window_s: float = EDA_WINDOW_S, cardiac_window_s: float = CARDIAC_WINDOW_S,
                  hop_s: float = HOP_S) -> dict[str, np.ndarray] | None:
    """All windows of one subject: ends, y, coverage, eda features/quality, cardiac features/quality."""
    cache_dir = cache_dir or (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None)
    folder = Path(root) / "Raw_data" / sid
    cache = None
    if cache_dir is not None:
        stamp = hashlib.sha256(f"{folder.resolve()}|{(folder / 'EDA.csv').stat().st_mtime}".encode()).hexdigest()[:10]
        params = f"{eda_window_s:g}-{cardiac_window_s:g}-{hop_s:g}"
        cache = Path(cache_dir) / f"{sid}_{stamp}_{cardiac_source}_{params}_{_feature_code_version()}.npz"
        cached = read_npz(cache)
        if cached is not None:
            return cached
    subject = load_subject(root, sid, labels)
    if subject is None:
        return None
    ends = window_ends(subject, LABEL_WINDOW_S, hop_s)
    y, coverage = window_labels(subject, ends, LABEL_WINDOW_S)
    x_eda, q_eda = eda_window_features(subject, ends, eda_window_s)
    x_card, q_card = cardiac_window_features(subject, ends, cardiac_window_s, cardiac_source)
    table = {"ends": ends, "y": y, "coverage": coverage, "x_eda": x_eda, "q_eda": q_eda,
             "x_cardiac": x_card, "q_cardiac": q_card}
    if cache is not None:
        write_npz(cache, compressed=True, **table)
    return table


def load_dataset(root: Path, cache_dir: Path | None = None, cardiac_source: str = "bvp",
                 progress: bool = False, eda_window_s: float = EDA_WINDOW_S,
                 cardiac_window_s: float = CARDIAC_WINDOW_S, hop_s: float = HOP_S,
                 on_subject: Callable[[int, int], None] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{subject id: table} for every subject in Raw_data that has labels; ``on_subject(done, total)`` after each."""
    root = Path(root)
    labels = load_labels(root)
    sids = raw_subjects(root)
    missing = sorted(set(labels) - set(sids))
    if missing:
        log.info("stress-predict: labels for %s but no Raw_data folder; ignored", ", ".join(missing))
    iterator = sids
    if progress:
        from tqdm import tqdm

        iterator = tqdm(sids, desc="stress-predict features", unit="subject")
    tables = {}
    for done, sid in enumerate(iterator, 1):
        table = subject_table(root, sid, labels, cache_dir, cardiac_source, eda_window_s, cardiac_window_s, hop_s)
        if table is not None:
            tables[sid] = table
        if on_subject is not None:
            on_subject(done, len(sids))
    if not tables:
        raise DatasetError(f"stress-predict {root}: no subject in Raw_data has labels in {LABEL_FILE}")
    return tables


WRIST_WINDOW_S = 300.0


def wrist_window_features(root: Path, sid: str, ends: np.ndarray, window_s: float = WRIST_WINDOW_S,
                          cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Skin temperature and movement of one subject's windows (``edge.features.wrist``):
    {"x_wrist" (n, len(WRIST_FEATURE_NAMES)), "q_temp", "q_acc", "motion_share"}; NaN/0 where a file is absent."""
    from edge.features import wrist

    folder = Path(root) / "Raw_data" / sid
    cache_dir = cache_dir or (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None)
    cache = None
    if cache_dir is not None:
        code = hashlib.sha256(Path(wrist.__file__).read_bytes()).hexdigest()[:12]
        key = hashlib.sha256(f"{folder.resolve()}|{window_s:g}|{ends.tobytes().hex()[:64]}|{len(ends)}|{code}".encode())
        cache = Path(cache_dir) / f"{sid}_wrist_{key.hexdigest()[:12]}.npz"
        cached = read_npz(cache)
        if cached is not None:
            return cached
    n = len(ends)
    n_temp = len(wrist.TEMP_FEATURE_NAMES)
    x = np.full((n, len(wrist.WRIST_FEATURE_NAMES)), np.nan, np.float32)
    q_temp, q_acc, motion = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    if (folder / "TEMP.csv").exists():
        temp = read_e4_signal(folder / "TEMP.csv")
        start, stop = _slices(temp, ends, window_s)
        for k, (a, b) in enumerate(zip(start, stop)):
            w = temp.data[a:b, 0]
            q_temp[k] = wrist.temp_quality(w, temp.rate_hz)
            x[k, :n_temp] = wrist.temp_features(w, temp.rate_hz)
    if (folder / "ACC.csv").exists():
        acc = read_e4_signal(folder / "ACC.csv")
        start, stop = _slices(acc, ends, window_s)
        g = acc.data[:, :3] / wrist.E4_ACC_UNITS_PER_G
        for k, (a, b) in enumerate(zip(start, stop)):
            w = g[a:b]
            q_acc[k] = wrist.acc_quality(w, acc.rate_hz)
            x[k, n_temp:] = wrist.acc_features(w, acc.rate_hz)
            motion[k] = wrist.motion_share(w, acc.rate_hz)
    table = {"x_wrist": x, "q_temp": q_temp, "q_acc": q_acc, "motion_share": motion}
    if cache is not None:
        write_npz(cache, compressed=True, **table)
    return table
