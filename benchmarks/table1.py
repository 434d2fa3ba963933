"""Reproduce the CGCNN paper's Table I with the public API.

Protocol for every task: drop rows with a missing target, seeded random
60/20/20 train/validation/test split (seed 0), keep the epoch that scores
best on validation (:class:`skcgcnn.callbacks.HeldOutScore`), report the
test MAE (ROC-AUC for the metal/non-metal classification).

    python benchmarks/table1.py --task formation_energy --time-budget 60
    python benchmarks/table1.py --task all --epochs 300 --device cuda
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import mean_absolute_error, roc_auc_score
from sklearn.model_selection import train_test_split

from common import ELASTIC_CSV, MP_CSV, PEROV_CSV, RESULTS, SHARED_DATA, emit, hardware, require
from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.callbacks import HeldOutScore, TimeBudget
from skcgcnn.datasets import load_csv
from skcgcnn.graphs import NBR_RULES

# name: (data file, column, row filter, transform, metric, published value, published training size, unit)
TASKS = {
    "formation_energy": (MP_CSV, "formation_energy_per_atom", None, None, "mae", 0.039, 28046, "eV/atom"),
    "band_gap": (MP_CSV, "band_gap", "in_cgcnn_bandgap_ids == 1", None, "mae", 0.388, 16458, "eV"),
    "fermi_energy": (MP_CSV, "efermi", None, None, "mae", 0.363, 28046, "eV"),
    "bulk_modulus": (ELASTIC_CSV, "K_VRH", None, np.log10, "mae", 0.054, 2041, "log10(GPa)"),
    "shear_modulus": (ELASTIC_CSV, "G_VRH", None, np.log10, "mae", 0.087, 2041, "log10(GPa)"),
    "poisson_ratio": (ELASTIC_CSV, "poisson_ratio", None, None, "mae", 0.030, 2041, ""),
    "metal_classification": (MP_CSV, "band_gap", None, lambda gap: gap == 0, "roc_auc", 0.96, 28046, ""),
    "perovskites": (PEROV_CSV, "heat_ref", None, None, "mae", 0.099, 11357, "eV (per 5-atom cell, see README)"),
}


def split(n: int, seed: int = 0):
    indices = np.arange(n)
    train, rest = train_test_split(indices, train_size=0.6, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, random_state=seed)
    return train, val, test


def estimator(metric: str, epochs: int, graphs_val, y_val, args):
    cls = CGCNNClassifier if metric == "roc_auc" else CGCNNRegressor
    held_out = HeldOutScore(graphs_val, y_val, scoring="roc_auc" if metric == "roc_auc" else None)
    callbacks = [("held_out", held_out)]
    if args.time_budget:
        callbacks.append(("time_budget", TimeBudget(args.time_budget)))
    return cls(max_epochs=epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, random_state=0,
               callbacks=callbacks, verbose=args.verbose)


def run(task: str, args) -> None:
    path, column, query, transform, metric, published, published_n, unit = TASKS[task]
    texts, y, _ = load_csv(require(args.data_dir / path.relative_to(SHARED_DATA) if args.data_dir else path),
                           target=column, query=query, missing="drop", parse=False, nrows=args.limit)
    if transform is not None:
        y = transform(y)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = CrystalGraphTransformer(nbr_rule=args.nbr_rule, n_jobs=args.n_jobs).transform(texts)
    featurize_s = time.perf_counter() - start
    train, val, test = split(len(graphs))
    epochs = args.epochs
    if args.time_budget:
        # Time one epoch first, so the cosine schedule spans the epochs expected to fit in the
        # budget; TimeBudget stops training when the machine turns out slower than that.
        probe = estimator(metric, 1, graphs[val], y[val], args)
        t0 = time.perf_counter()
        probe.fit(graphs[train], y[train])
        per_epoch = time.perf_counter() - t0
        epochs = max(1, min(epochs, int(args.time_budget * 60 / per_epoch)))
    net = estimator(metric, epochs, graphs[val], y[val], args)
    start = time.perf_counter()
    net.fit(graphs[train], y[train])
    train_s = time.perf_counter() - start
    if metric == "roc_auc":
        score = roc_auc_score(y[test], net.predict_proba(graphs[test])[:, list(net.classes_).index(True)])
    else:
        score = mean_absolute_error(y[test], net.predict(graphs[test]))
    best_epoch = int(np.argmax(net.history[:, "held_out_score"])) + 1
    epochs_run = len(net.history)
    emit({"benchmark": "table1", "task": task, "nbr_rule": args.nbr_rule, "metric": metric,
          "test": round(float(score), 4), "published": published, "unit": unit, "n_train": len(train),
          "n_val": len(val), "n_test": len(test),
          "published_n_train": published_n, "epochs": epochs_run, "planned_epochs": epochs, "best_epoch": best_epoch,
          "featurize_s": round(featurize_s, 1), "train_s": round(train_s, 1), "device": args.device,
          "hardware": hardware(args.device), "command": "python " + shlex.join(sys.argv)}, args.results)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=[*TASKS, "all"], required=True)
    parser.add_argument("--epochs", type=int, default=300, help="most epochs to train (default 300)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="minutes of training; fewer epochs are run when they would not fit")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for featurizing")
    parser.add_argument("--nbr-rule", choices=NBR_RULES, default="shared", help="neighbour rule of the graphs")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="read only the first N rows (smoke tests)")
    parser.add_argument("--data-dir", type=Path, default=None, help=f"the data folder (default {SHARED_DATA})")
    parser.add_argument("--results", type=Path, default=RESULTS / "table1.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    for task in TASKS if args.task == "all" else [args.task]:
        run(task, args)


if __name__ == "__main__":
    main()
