"""DEAP's ``data_preprocessed_python`` folder -> EEG trials and windows with valence/arousal labels.

Layout (verified against public readers, see Sources):

* one file per participant, ``s01.dat`` … ``s32.dat`` (subject id = the file name's stem);
* each is a Python 2 pickle (protocol 2) of a dict, read in Python 3 with
  ``pickle.load(f, encoding="latin1")`` (``iso-8859-1`` is the same codec):

  - ``"data"``: float array (40 trials, 40 channels, 8064 samples) at 128 Hz; the first 32
    channels are EEG in DEAP's "Geneva" order (``DEAP_EEG_CHANNELS``), channels 33–40 are
    EOG, EMG, GSR, respiration, plethysmograph and temperature;
  - ``"labels"``: (40 trials, 4) self-ratings valence, arousal, dominance, liking, each 1–9;

* 8064 samples = 63 s: the first 3 s (384 samples) are the pre-trial baseline, then the
  60 s music-video trial. The official preprocessing already down-sampled to 128 Hz,
  removed EOG artefacts, band-passed 4–45 Hz and re-referenced to the common average.

Sources: the DEAP readme (https://www.eecs.qmul.ac.uk/mmv/datasets/deap/readme.html,
"Data_preprocessed … Python(numpy)"); TorchEEG ``torcheeg/datasets/module/emotion_recognition/deap.py``
(``pkl.load(f, encoding='iso-8859-1')``, ``data`` trial×channel×(63·128), first 32 channels
EEG, baseline = the first 3 × 128 samples, labels in the order valence, arousal, dominance,
liking) and TorchEEG's ``DEAP_CHANNEL_LIST`` (the channel order); Koelstra et al., "DEAP: a
database for emotion analysis using physiological signals", IEEE Trans. Affective
Computing 3(1):18–31, 2012.

The files are pickles, which can run code when loaded; this reader only lets the numpy
array machinery through (anything else is refused with a DatasetError).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DatasetError

log = logging.getLogger(__name__)

DEAP_RATE_HZ = 128.0
DEAP_BASELINE_S = 3.0
DEAP_EEG_CHANNELS: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
    "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2",
)
DEAP_LABELS = ("valence", "arousal", "dominance", "liking")
_SUBJECT_FILE = re.compile(r"^s(\d+)\.dat$", re.IGNORECASE)

# What a DEAP pickle may reference: numpy's array reconstruction (old and new module paths)
# and the codecs/copyreg helpers protocol 2 uses for byte strings.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"), ("codecs", "encode"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


@dataclass(frozen=True)
class DeapSubject:
    """One participant: EEG trials without the baseline, the baselines, and the ratings."""

    subject: str                 # "s01"
    eeg_uv: np.ndarray           # (trials, samples, 32) — trial signal after the 3 s baseline
    baseline_uv: np.ndarray      # (trials, baseline samples, 32)
    ratings: np.ndarray          # (trials, 4): valence, arousal, dominance, liking, 1–9
    rate_hz: float = DEAP_RATE_HZ
    channels: tuple[str, ...] = DEAP_EEG_CHANNELS


def subject_files(folder: Path) -> list[Path]:
    """``sNN.dat`` files in ``folder`` (or its ``data_preprocessed_python`` child), in subject order."""
    folder = Path(folder)
    if folder.is_file():
        candidates = [folder]
    else:
        candidates = [p for p in folder.iterdir() if _SUBJECT_FILE.match(p.name)]
        if not candidates and (folder / "data_preprocessed_python").is_dir():
            return subject_files(folder / "data_preprocessed_python")
    files = sorted((p for p in candidates if _SUBJECT_FILE.match(p.name)),
                   key=lambda p: int(_SUBJECT_FILE.match(p.name).group(1)))
    if not files:
        raise DatasetError(f"deap:{folder}: no sNN.dat files (expected DEAP's data_preprocessed_python folder)")
    return files


def load_subject(path: Path) -> DeapSubject:
    """Read one ``sNN.dat``; DatasetError (one line) if it is not DEAP's layout."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            content = _ArraysOnlyUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DatasetError(f"deap:{path}: not a DEAP preprocessed-python pickle ({exc})") from exc
    if not isinstance(content, dict) or "data" not in content or "labels" not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DatasetError(f"deap:{path}: expected a dict with 'data' and 'labels', found {keys}")
    data = np.asarray(content["data"])
    labels = np.asarray(content["labels"], dtype=np.float64)
    n_eeg = len(DEAP_EEG_CHANNELS)
    baseline_n = int(round(DEAP_BASELINE_S * DEAP_RATE_HZ))
    if data.ndim != 3 or data.shape[1] < n_eeg or data.shape[2] <= baseline_n:
        raise DatasetError(f"deap:{path}: 'data' has shape {data.shape}; expected (trials, >= {n_eeg} channels, "
                           f"> {baseline_n} samples), e.g. (40, 40, 8064)")
    if labels.ndim != 2 or labels.shape[0] != data.shape[0] or labels.shape[1] < 2:
        raise DatasetError(f"deap:{path}: 'labels' has shape {labels.shape}; expected ({data.shape[0]}, 4)")
    if not np.isfinite(labels[:, :2]).all() or labels[:, :2].min() < 1 or labels[:, :2].max() > 9:
        raise DatasetError(f"deap:{path}: valence/arousal ratings outside 1–9 "
                           f"({labels[:, :2].min():g}..{labels[:, :2].max():g})")
    eeg = np.ascontiguousarray(np.transpose(data[:, :n_eeg, :], (0, 2, 1)), dtype=np.float32)
    return DeapSubject(subject=path.stem.lower(), eeg_uv=eeg[:, baseline_n:, :],
                       baseline_uv=eeg[:, :baseline_n, :], ratings=labels)


def iter_subjects(folder: Path) -> Iterator[DeapSubject]:
    """Each participant in turn (one file in memory at a time: a real DEAP file is ~100 MB)."""
    for path in subject_files(folder):
        yield load_subject(path)


def rating_to_unit(rating: np.ndarray) -> np.ndarray:
    """DEAP's 1–9 self-ratings -> [-1, 1] (5, the scale's middle, maps to 0)."""
    return np.clip((np.asarray(rating, dtype=np.float32) - 5.0) / 4.0, -1.0, 1.0)


def window_starts(n_samples: int, rate_hz: float, window_s: float, hop_s: float) -> np.ndarray:
    """Start indices of full windows of ``window_s`` every ``hop_s`` within ``n_samples``."""
    win, hop = int(round(window_s * rate_hz)), max(1, int(round(hop_s * rate_hz)))
    if n_samples < win:
        return np.zeros(0, dtype=int)
    return np.arange(0, n_samples - win + 1, hop)


def subject_windows(subject: DeapSubject, window_s: float, hop_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows (n, samples, 32) µV, valence/arousal in [-1, 1] (n, 2), trial index (n,)) for one subject."""
    starts = window_starts(subject.eeg_uv.shape[1], subject.rate_hz, window_s, hop_s)
    win = int(round(window_s * subject.rate_hz))
    if not len(starts):
        raise DatasetError(f"deap:{subject.subject}: trials of {subject.eeg_uv.shape[1]} samples are shorter "
                           f"than one {window_s:g} s window")
    idx = starts[:, None] + np.arange(win)[None, :]                    # (w, win)
    windows = subject.eeg_uv[:, idx, :]                                 # (trials, w, win, ch)
    n_trials, n_win = windows.shape[:2]
    targets = rating_to_unit(subject.ratings[:, :2])                    # (trials, 2)
    return (windows.reshape(n_trials * n_win, win, -1), np.repeat(targets, n_win, axis=0),
            np.repeat(np.arange(n_trials), n_win))
