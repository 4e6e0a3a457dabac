"""The wearer's own recent past as the reference for their features (no calibration step).

Physiology differs more between people than between one person's calm and stressed minutes:
wrist skin conductance spans an order of magnitude, resting heart rate tens of beats. A model
that sees only absolute features must learn one threshold for everybody. ``TrailingBaseline``
keeps the feature vectors of one stream's recent usable windows and hands the model, beside
each window's absolute features, their deviation from the mean of the trailing ``span_s``
(this window included). It is causal, so the daemon computes exactly what training saw, and
it needs no rest period. The absolute half stays because a purely relative model would read
a long stretch of stress as the new normal.

Training and evaluation call ``with_trailing_deviation`` over a recording's windows in time
order; the daemon keeps one ``TrailingBaseline`` per stream and calls ``model_input`` each hop.
Both go through ``model_input``, so they cannot drift apart.
"""

from __future__ import annotations

from collections import deque

import numpy as np

TRAILING_SPAN_S = 1200.0  # chosen by subject-wise CV on Stress-Predict (see models/eda.md)
_RESUM_EVERY = 1024  # the running sum is recomputed from the rows this often, so rounding cannot build up
DEVIATION_SUFFIX = "_vs_trailing"


def input_names(feature_names: tuple[str, ...] | list[str]) -> list[str]:
    """Names of the model's inputs: the features, then their deviations from the trailing mean."""
    return list(feature_names) + [f"{n}{DEVIATION_SUFFIX}" for n in feature_names]


def trailing_span_s(preprocessing: dict) -> float:
    """The span a model's manifest asks for (``preprocessing.trailing_baseline.span_s``); 0 = none."""
    return float(((preprocessing or {}).get("trailing_baseline") or {}).get("span_s", 0.0))


class TrailingBaseline:
    """Mean of the usable feature vectors whose windows ended in ``(t - span_s, t]``."""

    def __init__(self, span_s: float = TRAILING_SPAN_S):
        if span_s <= 0:
            raise ValueError(f"trailing baseline span must be > 0 s, got {span_s}")
        self.span_s = float(span_s)
        self._ends: deque[float] = deque()
        self._rows: deque[np.ndarray] = deque()
        self._sum: np.ndarray | None = None  # of the rows, kept as they come and go (stacking 240 rows costs ~0.2 ms)
        self._updates = 0

    def __len__(self) -> int:
        return len(self._rows)

    def reset(self) -> None:
        self._ends.clear()
        self._rows.clear()
        self._sum = None
        self._updates = 0

    def model_input(self, end_unix: float, features: np.ndarray, usable: bool = True) -> np.ndarray:
        """``[features, features - trailing mean]`` (float32); a usable window joins the baseline first.

        With no usable window in the span (start-up, or after a long drop-out) the reference is
        the window itself, so the deviations are 0.
        """
        features = np.asarray(features, dtype=np.float64).reshape(-1)
        if self._ends and end_unix < self._ends[-1]:
            self.reset()  # the source clock went back (a new recording or replay): start over
        if usable and np.all(np.isfinite(features)):
            self._ends.append(float(end_unix))
            self._rows.append(features)
            self._sum = features.copy() if self._sum is None else self._sum + features
            self._updates += 1
        while self._ends and self._ends[0] <= end_unix - self.span_s:
            self._ends.popleft()
            self._sum -= self._rows.popleft()
            self._updates += 1
        if not self._rows:
            self._sum = None
            reference = features
        else:
            if self._updates >= _RESUM_EVERY:
                self._sum = np.sum(np.stack(self._rows), axis=0)
                self._updates = 0
            reference = self._sum / len(self._rows)
        return np.concatenate([features, features - reference]).astype(np.float32)

    def state(self) -> dict:
        """What a restart needs to resume this baseline: the span, and each kept window's end and features
        (to 7 significant digits: float32's precision, which is what the model is given)."""
        rows = [[float(f"{v:.7g}") for v in row] for row in self._rows]
        return {"span_s": self.span_s, "ends": list(self._ends), "rows": rows}

    @classmethod
    def from_state(cls, state: dict, n_features: int) -> "TrailingBaseline":
        """The baseline ``state()`` saved; ValueError (one line) if it is not one of ``n_features`` features."""
        try:
            baseline = cls(float(state["span_s"]))
            ends = [float(t) for t in state["ends"]]
            rows = np.asarray(state["rows"], dtype=np.float64).reshape(len(ends), n_features)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a trailing baseline of {n_features} features ({type(exc).__name__}: {exc})") from None
        if not np.all(np.isfinite(rows)) or not np.all(np.isfinite(ends)) or any(b < a for a, b in zip(ends, ends[1:])):
            raise ValueError("trailing baseline with non-finite rows or unordered window ends")
        baseline._ends.extend(ends)
        baseline._rows.extend(rows)
        if len(rows):
            baseline._sum = rows.sum(axis=0)
        return baseline


def with_trailing_deviation(ends: np.ndarray, features: np.ndarray, usable: np.ndarray,
                            span_s: float = TRAILING_SPAN_S) -> np.ndarray:
    """Model inputs (n, 2 x features) for one recording's windows, ending at ``ends`` (ascending)."""
    baseline = TrailingBaseline(span_s)
    if len(ends) == 0:
        return np.zeros((0, 2 * features.shape[1]), np.float32)
    return np.stack([baseline.model_input(t, x, bool(u)) for t, x, u in zip(ends, features, usable)])
