"""Train the released skcgcnn models: a fixed split per data set, then ensemble members one at a time.

Each data set gets one split, written once to ``skcgcnn/data/released/splits/<data>.csv.gz`` (columns ``id``
and ``part``: train, val, calibration, test, or duplicate). Crystals present more than once
(:func:`skcgcnn.leakage.find_duplicates`) keep their first copy; the others are marked ``duplicate`` and used
nowhere. The training part holds at most as many crystals as the paper's (Table I), at most 70 % of the rest;
validation, calibration and test share what remains equally.

Members are trained one per seed, each keeping its best validation epoch, and written as model files to
``benchmarks/release/<task>/member-<seed>.skcgcnn``; a member already there is skipped, so a long family is
built over several runs, each committing what it finished.

    python benchmarks/release.py --task bulk_modulus --seeds 0 1 2 3 4 --epochs 150
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import RESULTS, emit, hardware, require
from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.callbacks import HeldOutScore
from skcgcnn.datasets import load_csv
from skcgcnn.leakage import find_duplicates
from skcgcnn.persistence import save_model
from table1 import TASKS

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ROOT / "skcgcnn" / "data" / "released" / "splits"
MEMBERS = Path(__file__).resolve().parent / "release"
PARTS = ("train", "val", "calibration", "test")


def make_split(ids: list[str], graphs, texts, max_train: int, seed: int = 0) -> pd.DataFrame:
    """One part per crystal: duplicates after their first copy apart, then a seeded shuffle cut into parts."""
    part = np.full(len(ids), "", dtype=object)
    for group in find_duplicates(texts, graphs=graphs, n_jobs=2):
        part[group[1:]] = "duplicate"
    kept = np.flatnonzero(part == "")
    order = np.random.default_rng(seed).permutation(kept)
    n_train = min(max_train, int(0.7 * len(order)))
    rest = len(order) - n_train
    bounds = np.cumsum([n_train, rest // 3, rest // 3])
    for name, rows in zip(PARTS, np.split(order, bounds)):
        part[rows] = name
    return pd.DataFrame({"id": ids, "part": part})


def split_of(data: str, ids: list[str], graphs, texts, max_train: int) -> pd.DataFrame:
    """The data set's published split, made on first use."""
    path = SPLITS / f"{data}.csv.gz"
    if path.exists():
        split = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        split = make_split(ids, graphs, texts, max_train)
        SPLITS.mkdir(parents=True, exist_ok=True)
        split.to_csv(path, index=False)
    return split


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="members to train")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for featurizing")
    parser.add_argument("--results", type=Path, default=RESULTS / "release.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path, column, query, transform, metric, _, published_n, unit = TASKS[args.task]
    # The split covers the whole data set, so that every task of one data set shares it.
    texts, _, ids = load_csv(require(path), target=None, parse=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = CrystalGraphTransformer(n_jobs=args.n_jobs).transform(texts)
    max_train = max(n for p, *_, n, _ in TASKS.values() if p == path)
    split = split_of(path.parent.name, ids, graphs, texts, max_train)
    if split["id"].tolist() != list(ids):
        sys.exit(f"the split file of {path.parent.name} does not list the data set's ids in order")
    _, y, task_ids = load_csv(path, target=column, query=query, missing="drop", parse=False)
    if transform is not None:
        y = transform(y)
    position = {crystal: i for i, crystal in enumerate(ids)}
    rows = np.array([position[crystal] for crystal in task_ids])
    part = split["part"].to_numpy()[rows]
    train, val = rows[part == "train"], rows[part == "val"]
    y_train, y_val = y[part == "train"], y[part == "val"]
    cls = CGCNNClassifier if metric == "roc_auc" else CGCNNRegressor
    out = MEMBERS / args.task
    for seed in args.seeds:
        target = out / f"member-{seed}.skcgcnn"
        if target.exists():
            continue
        held_out = HeldOutScore(graphs[val], y_val, scoring="roc_auc" if metric == "roc_auc" else None)
        net = cls(max_epochs=args.epochs, device=args.device, random_state=seed, callbacks=[("held_out", held_out)])
        start = time.perf_counter()
        net.fit(graphs[train], y_train)
        train_s = time.perf_counter() - start
        if net.interrupted_:
            sys.exit(f"member {seed} was interrupted; nothing written")
        save_model(net, target)
        scores = net.history[:, "held_out_score"]
        emit({"benchmark": "release", "task": args.task, "seed": seed, "unit": unit, "n_train": len(train),
              "n_val": len(val), "epochs": args.epochs, "best_epoch": int(np.argmax(scores)) + 1,
              "val_score": round(float(np.max(scores)), 5), "train_s": round(train_s, 1),
              "file_kib": round(target.stat().st_size / 1024, 1), "device": args.device,
              "hardware": hardware(args.device), "command": "python " + shlex.join(sys.argv)}, args.results)


if __name__ == "__main__":
    main()
