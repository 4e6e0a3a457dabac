"""Does skin temperature or wrist movement add to eda + cardiac stress? Subject-wise CV on Stress-Predict.

``python -m edge.tools.wrist_cv --dataset PATH [--cache DIR] [--epochs 40] [--out FILE.json]``

The 13 folds of ``edge.tools.train_physio`` (two held-out subjects each, the same seeds), one
small MLP per design and fold (the shipped models' architecture and training, float predictions):

- ``today``: eda and cardiac models, quality-weighted mean (the shipped 1.1.0 rule);
- ``eda_wrist``: the eda model given ``edge.features.wrist`` features (temp, acc) and their
  trailing-baseline deviations beside its own, fused with cardiac as today;
- ``eda_wrist+cardiac_wrist``: both models given the wrist features;
- ``joint``: one MLP over eda + cardiac + wrist inputs; ``joint_nowrist``: the same without wrist;
- ``today+motion_gate``: today's rule with both qualities x ``wrist.motion_weight(motion_share)``.

Prints pooled AUROC (all windows, complete windows) and the mean / minimum within-subject AUROC
over complete windows, for folds 0-6 (where choices were made), folds 7-12 and all 26 subjects.
Results of issue 18 are in docs/wrist.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from edge.features.baseline import TRAILING_SPAN_S, with_trailing_deviation
from edge.tools import metrics
from edge.tools import stress_predict as sp
from edge.tools import train_physio as tp

log = logging.getLogger(__name__)

DESIGNS = {  # name: (input groups, cardiac beat sources trained on)
    "eda": (["eda"], "bvp"), "cardiac": (["cardiac"], "both"),
    "eda_wrist": (["eda", "wrist"], "bvp"), "cardiac_wrist": (["cardiac", "wrist"], "both"),
    "joint": (["eda", "cardiac", "wrist"], "both"), "joint_nowrist": (["eda", "cardiac"], "both"),
}
TUNE_FOLDS = 7  # folds 0-6: where designs were compared; 7-12 only checked


def _add_inputs(root: Path, tables: list[dict], cache: Path | None) -> None:
    for s in sorted(tables[0]):
        w = sp.wrist_window_features(root, s, tables[0][s]["ends"], cache_dir=cache)
        for tabs in tables:
            t = tabs[s]
            t.update(w)
            t["q_wrist"] = np.minimum(w["q_temp"], w["q_acc"])
            t["ok_wrist"] = np.isfinite(t["x_wrist"]).all(axis=1) & (t["q_wrist"] >= tp.QUALITY_MIN)
            joins = t["ok_wrist"] & sp.complete_windows(t["ends"], sp.WRIST_WINDOW_S)
            t["in_wrist"] = with_trailing_deviation(t["ends"], np.nan_to_num(t["x_wrist"]), joins, TRAILING_SPAN_S)
            t["in_eda"] = tp.model_inputs(t, "eda", TRAILING_SPAN_S)
            t["in_cardiac"] = tp.model_inputs(t, "cardiac", TRAILING_SPAN_S)


def _ok(t: dict, parts: list[str]) -> np.ndarray:
    ok = t["coverage"] >= tp.COVERAGE_MIN
    for m in parts:
        ok = ok & (t["ok_wrist"] if m == "wrist" else tp.usable(t, m))
    return ok


def out_of_fold(bvp: dict, ibi: dict, epochs: int) -> dict[str, dict[str, np.ndarray]]:
    sids = sorted(bvp)
    oof: dict[str, dict[str, np.ndarray]] = {d: {} for d in DESIGNS}
    for k, test in enumerate(tp.subject_folds(sids, tp.DEFAULT_FOLDS)):
        train = [s for s in sids if s not in test]
        for d, (parts, src) in DESIGNS.items():
            rows = [(tabs[s], s) for tabs in ([bvp] if src == "bvp" else [bvp, ibi]) for s in train]
            x = np.concatenate([np.concatenate([t[f"in_{p}"] for p in parts], axis=1)[_ok(t, parts)] for t, _ in rows])
            y = np.concatenate([t["y"][_ok(t, parts)] for t, _ in rows])
            model, mean, std = tp.fit(x.astype(np.float32), y, k, epochs)
            for s in test:
                t = bvp[s]
                ok = np.ones(len(t["y"]), bool)  # scored wherever the inputs are usable, labelled or not
                for m in parts:
                    ok &= t["ok_wrist"] if m == "wrist" else tp.usable(t, m)
                p = np.full(len(t["y"]), np.nan, np.float32)
                if ok.any():
                    xin = np.concatenate([t[f"in_{q}"] for q in parts], axis=1)[ok]
                    p[ok] = model.predict(((xin - mean) / std).astype(np.float32), verbose=0, batch_size=1024)[:, 0]
                oof[d][s] = p
        log.info("fold %d (%s) done", k, "+".join(test))
    return oof


def report(bvp: dict, oof: dict[str, dict[str, np.ndarray]]) -> dict:
    sids = sorted(bvp)
    folds = tp.subject_folds(sids, tp.DEFAULT_FOLDS)
    tune = [s for f in folds[:TUNE_FOLDS] for s in f]

    def fused(a: str, b: str, gate: bool = False) -> dict[str, np.ndarray]:
        out = {}
        for s in sids:
            w = 1.0 - 0.75 * np.clip(bvp[s]["motion_share"], 0.0, 1.0) if gate else 1.0  # wrist.motion_weight
            out[s] = tp.fuse(oof[a][s], bvp[s]["q_eda"] * w, oof[b][s], bvp[s]["q_cardiac"] * w)
        return out

    cands = {"today": fused("eda", "cardiac"), "today+motion_gate": fused("eda", "cardiac", True),
             "eda_wrist+cardiac": fused("eda_wrist", "cardiac"),
             "eda_wrist+cardiac_wrist": fused("eda_wrist", "cardiac_wrist"),
             **{d: oof[d] for d in DESIGNS}}
    out = {}
    for name, preds in cands.items():
        per = {}
        for s in sids:
            t = bvp[s]
            m = np.isfinite(preds[s]) & (t["coverage"] >= tp.COVERAGE_MIN) & sp.complete_windows(t["ends"], 300.0)
            per[s] = metrics.auroc(t["y"][m], preds[s][m])
        r = tp.score(bvp, preds)
        out[name] = {"auroc": r["auroc"], "auroc_complete_windows": r["auroc_complete_windows"],
                     "subject_mean": float(np.nanmean(list(per.values()))),
                     "subject_min": float(np.nanmin(list(per.values()))),
                     "subject_mean_folds_0_6": float(np.nanmean([per[s] for s in tune])),
                     "subject_mean_folds_7_12": float(np.nanmean([per[s] for s in sids if s not in tune])),
                     "per_subject": per}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.tools.wrist_cv", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="Stress-Predict folder (Raw_data, Processed_data)")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    parser.add_argument("--epochs", type=int, default=tp.DEFAULT_EPOCHS)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bvp = sp.load_dataset(args.dataset, cache_dir=args.cache)
    ibi = sp.load_dataset(args.dataset, cache_dir=args.cache, cardiac_source="ibi")
    _add_inputs(args.dataset, [bvp, ibi], args.cache)
    result = report(bvp, out_of_fold(bvp, ibi, args.epochs))
    for name, r in result.items():
        print(f"{name:26s} AUROC {r['auroc']:.3f} (complete windows {r['auroc_complete_windows']:.3f}); within-subject "
              f"mean {r['subject_mean']:.3f} min {r['subject_min']:.3f} (folds 0-6 {r['subject_mean_folds_0_6']:.3f}, "
              f"7-12 {r['subject_mean_folds_7_12']:.3f})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
