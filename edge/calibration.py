"""Per-user baseline from a rest period (``calibration.rest_s``).

During the first ``rest_s`` seconds of the source clock every estimate is recorded; after that
each modality's rest-period mean is subtracted: stress outputs (eda, cardiac) become
``p - baseline + rest_stress`` (so the user's own rest maps to ``rest_stress``), valence and
arousal outputs (eeg) become ``x - baseline`` (rest maps to neutral). Face expressions are not
calibrated (a neutral face is already the expression classifier's zero). States published
after the rest period carry ``calibrated: true``.
"""

from __future__ import annotations

import dataclasses

from edge.fusion import ModalityEstimate


class Calibrator:
    def __init__(self, rest_s: float, rest_stress: float = 0.2):
        self.rest_s = float(rest_s)
        self.rest_stress = float(rest_stress)
        self.start_unix: float | None = None
        self._sums: dict[str, dict[str, float]] = {}
        self._counts: dict[str, int] = {}
        self.baseline: dict[str, dict[str, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rest_s > 0

    def start(self, first_sample_unix: float) -> None:
        if self.start_unix is None:
            self.start_unix = first_sample_unix

    def is_calibrated(self, ts_unix: float) -> bool:
        return self.enabled and self.start_unix is not None and ts_unix >= self.start_unix + self.rest_s

    def apply(self, estimate: ModalityEstimate) -> ModalityEstimate:
        """Record (during rest) or correct (after rest) one estimate; returns the estimate to fuse."""
        if not self.enabled or estimate.modality == "face":
            return estimate
        self.start(estimate.ts_unix)
        values = {k: getattr(estimate, k) for k in ("valence", "arousal", "stress") if getattr(estimate, k) is not None}
        if not self.is_calibrated(estimate.ts_unix):
            if estimate.quality > 0:
                sums = self._sums.setdefault(estimate.modality, {})
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                self._counts[estimate.modality] = self._counts.get(estimate.modality, 0) + 1
            return estimate
        base = self._baseline_for(estimate.modality)
        if not base:
            return estimate
        changes = {}
        for k, v in values.items():
            if k not in base:
                continue
            if k == "stress":
                changes[k] = min(1.0, max(0.0, v - base[k] + self.rest_stress))
            else:
                changes[k] = min(1.0, max(-1.0, v - base[k]))
        return dataclasses.replace(estimate, **changes)

    def _baseline_for(self, modality: str) -> dict[str, float]:
        if modality not in self.baseline and self._counts.get(modality):
            n = self._counts[modality]
            self.baseline[modality] = {k: s / n for k, s in self._sums[modality].items()}
        return self.baseline.get(modality, {})
