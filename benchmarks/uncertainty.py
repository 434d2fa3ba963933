"""Deep ensembles and conformal intervals on the Table I splits (formation energy, band gap).

Protocol: the 60/20/20 split of ``table1.py`` (seed 0). ``--members`` networks, each keeping its best
validation epoch, form a :class:`skcgcnn.ensemble.CGCNNEnsembleRegressor`. On the test set: the ensemble's MAE
and the mean MAE of its members alone, the Spearman rank correlation between |error| and the ensemble's
standard deviation, and the miscalibration area. For conformal intervals the test set is halved at random
(seed 0): one half calibrates, the other is scored, for 90 % and 95 % intervals, constant and scaled by the
standard deviation (empirical coverage and mean width).

    python benchmarks/uncertainty.py --task band_gap --epochs 5
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from common import RESULTS, emit, hardware, require
from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.callbacks import HeldOutScore
from skcgcnn.datasets import load_csv
from skcgcnn.ensemble import CGCNNEnsembleRegressor
from skcgcnn.uncertainty import ConformalRegressor, miscalibration_area
from table1 import TASKS, split


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["formation_energy", "band_gap"], required=True)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=1, help="members trained at once")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N rows")
    parser.add_argument("--results", type=Path, default=RESULTS / "uncertainty.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    path, column, query, _, _, _, _, unit = TASKS[args.task]
    texts, y, _ = load_csv(require(path), target=column, query=query, missing="drop", parse=False, nrows=args.limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = CrystalGraphTransformer(n_jobs=2).transform(texts)
    train, val, test = split(len(graphs))
    member = CGCNNRegressor(max_epochs=args.epochs, device=args.device,
                            callbacks=[("held_out", HeldOutScore(graphs[val], y[val]))])
    start = time.perf_counter()
    ensemble = CGCNNEnsembleRegressor(member, n_estimators=args.members, n_jobs=args.n_jobs, random_state=0)
    ensemble.fit(graphs[train], y[train])
    train_s = time.perf_counter() - start
    mean, std = ensemble.predict(graphs[test], return_std=True)
    error = np.abs(mean - y[test])
    singles = [np.mean(np.abs(m.predict(graphs[test]) - y[test])) for m in ensemble.estimators_]
    record = {"benchmark": "uncertainty", "task": args.task, "unit": unit, "members": args.members,
              "epochs": args.epochs, "n_train": len(train), "n_test": len(test),
              "ensemble_mae": round(float(error.mean()), 4), "member_mae_mean": round(float(np.mean(singles)), 4),
              "member_mae_best": round(float(np.min(singles)), 4),
              "spearman_error_std": round(float(spearmanr(error, std).statistic), 3),
              "miscalibration_area": round(miscalibration_area(y[test], mean, std), 3)}
    halves = np.random.default_rng(0).permutation(test)
    calibration, scored = halves[: len(halves) // 2], halves[len(halves) // 2:]
    for level in (0.9, 0.95):
        for scaled in (False, True):
            conformal = ConformalRegressor(ensemble, confidence_level=level, scaled=scaled)
            _, interval = conformal.conformalize(graphs[calibration], y[calibration]).predict_interval(graphs[scored])
            inside = (interval[:, 0] <= y[scored]) & (y[scored] <= interval[:, 1])
            key = f"conformal_{int(level * 100)}{'_scaled' if scaled else ''}"
            record[key + "_coverage"] = round(float(inside.mean()), 4)
            record[key + "_width"] = round(float(np.mean(interval[:, 1] - interval[:, 0])), 4)
    record.update(train_s=round(train_s, 1), device=args.device, hardware=hardware(args.device),
                  command="python " + shlex.join(sys.argv))
    emit(record, args.results)


if __name__ == "__main__":
    main()
