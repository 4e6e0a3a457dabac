"""Score ``edge.features.cardiac.ecg_r_peaks`` against a WFDB record's reference beat annotations.

``python -m edge.tools.rpeak_check /path/to/mitbih/100 [--seconds N] [--lead 0]`` prints sensitivity and
positive predictivity at a 150 ms match tolerance (the usual R-peak detector figures; cf. ANSI/AAMI
EC57's beat-by-beat comparison). The detector runs over the whole stretch at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


from edge.features.cardiac import ecg_r_peaks
from firmware_bridge.protocols.wfdb import beat_annotations, read_wfdb_annotations, read_wfdb_record
from edge.tools.metrics import beat_detection_scores

TOLERANCE_S = 0.150


def rpeak_check(record_path: str, seconds: float | None = None, lead: int = 0,
                tolerance_s: float = TOLERANCE_S) -> dict[str, float]:
    """Detect R-peaks on one lead of a record (or its first ``seconds``) and score them."""
    signals, rate_hz, names, _ = read_wfdb_record(record_path)
    samples, symbols = read_wfdb_annotations(record_path, "atr")
    reference = beat_annotations(samples, symbols)
    n = len(signals) if seconds is None else min(len(signals), int(seconds * rate_hz))
    ecg = signals[:n, lead]
    t0 = time.perf_counter()
    detected = ecg_r_peaks(ecg, rate_hz)
    elapsed = time.perf_counter() - t0
    # beats within half a tolerance of the stretch's ends cannot be judged fairly either way
    margin = int(tolerance_s * rate_hz)
    reference = reference[(reference >= margin) & (reference < n - margin)]
    detected = detected[(detected >= margin) & (detected < n - margin)]
    scores = beat_detection_scores(reference, detected, int(round(tolerance_s * rate_hz)))
    scores.update({"record": str(record_path), "lead": names[lead], "seconds": n / rate_hz,
                   "reference_beats": int(len(reference)), "detected_beats": int(len(detected)),
                   "detector_s": elapsed})
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.tools.rpeak_check", description=__doc__.splitlines()[0])
    parser.add_argument("record", help="WFDB record path without extension, e.g. data/mitbih/100")
    parser.add_argument("--seconds", type=float, default=None, help="only the first N seconds")
    parser.add_argument("--lead", type=int, default=0, help="signal column (default 0: MLII on MIT-BIH)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    scores = rpeak_check(args.record, args.seconds, args.lead)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"{scores['record']} lead {scores['lead']}, {scores['seconds']:.0f} s: "
              f"sensitivity {100 * scores['sensitivity']:.2f} %  positive predictivity "
              f"{100 * scores['positive_predictivity']:.2f} %  (TP {scores['tp']}, FP {scores['fp']}, "
              f"FN {scores['fn']}; {scores['reference_beats']} reference beats; detector {scores['detector_s']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
