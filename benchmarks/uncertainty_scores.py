"""Which uncertainty score ranks the errors of a released model's members: the measurement behind the choice.

On a task's fixed split (``release.py``) and its trained members, each candidate score is computed for the
validation, calibration and test crystals, and its Spearman rank correlation with the ensemble's |error| printed
per part (one JSON line per score). Scores from the members' crystal features (averaged over members,
standardised on the training crystals, reduced to principal components):

- ``spread``: the members' standard deviation;
- ``distance_k<k>_pc<n>``: mean distance to the k nearest training crystals in n components;
- ``neighbour_target_std``: spread of the 10 nearest training crystals' targets (16 components);
- ``nearest_target_deviation``: |target of the nearest training crystal - the ensemble's prediction|;
- ``neighbour_val_error``: mean |error| of the 20 nearest validation crystals (itself left out);
- ``gp_std``: predictive standard deviation of a Gaussian process fitted to 1,000 training crystals' targets;
- ``gp_residual_std``: the same of a Gaussian process fitted to the validation residuals;
- ``fit(...)``: ``log |error|`` fitted on the validation crystals as a linear function of the logs of the named
  scores (the released models' error model: ``fit(spread, distance_k10_pc16, neighbour_target_std,
  distance_k1_pc16, nearest_target_deviation)``; before it ``fit(spread, distance_k10_pc16,
  neighbour_target_std)`` and ``fit(spread, distance_k5_pc16)``), or by gradient boosting on the four scores
  of ``fit(..., neighbour_val_error)`` and the components (``boosting``).

    python benchmarks/uncertainty_scores.py --task band_gap
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import NearestNeighbors

from common import RESULTS, emit, hardware, require
from release import MEMBERS, SPLITS, task_rows
from skcgcnn import CrystalGraphTransformer
from skcgcnn.datasets import load_csv
from skcgcnn.persistence import load_model
from table1 import TASKS

PARTS = ("val", "calibration", "test")


def members_on_split(task: str, n_jobs: int):
    """Each part's targets, the members' predictions (members x crystals) and mean crystal features."""
    path = TASKS[task][0]
    texts, _, ids = load_csv(require(path), target=None, parse=False)
    split = pd.read_csv(SPLITS / f"{path.parent.name}.csv.gz", dtype=str, keep_default_na=False)
    y, rows, part = task_rows(task, ids, split)
    files = sorted((MEMBERS / task).glob("member-*.skcgcnn"))
    members = [load_model(f) for f in files]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("train", *PARTS):
            graphs = CrystalGraphTransformer(n_jobs=n_jobs).transform([texts[i] for i in rows[part == name]])
            out[name] = (y[part == name], np.stack([m.predict(graphs) for m in members]),
                         np.mean([m.transform(graphs) for m in members], axis=0))
    return out, len(files)


def scores(data) -> tuple[dict, dict]:
    """Each part's |error| and every candidate score."""
    y_train, _, f_train = data["train"]
    center, scale = f_train.mean(axis=0), f_train.std(axis=0)
    scale[scale == 0] = 1.0
    error = {p: np.abs(data[p][1].mean(axis=0) - data[p][0]) for p in PARTS}
    score = {p: {"spread": data[p][1].std(axis=0)} for p in PARTS}
    components = {}
    for n in (16, 32):
        pca = PCA(n_components=n, random_state=0).fit((f_train - center) / scale)
        components[n] = {p: pca.transform((data[p][2] - center) / scale) for p in ("train", *PARTS)}
        for k in (1, 5, 10):
            index = NearestNeighbors(n_neighbors=k).fit(components[n]["train"])
            for p in PARTS:
                score[p][f"distance_k{k}_pc{n}"] = index.kneighbors(components[n][p])[0].mean(axis=1)
    z = components[16]
    train_index = NearestNeighbors(n_neighbors=10).fit(z["train"])
    val_index = NearestNeighbors(n_neighbors=21).fit(z["val"])
    sample = np.random.default_rng(0).choice(len(y_train), min(1000, len(y_train)), replace=False)
    kernel = ConstantKernel() * RBF(1.0) + WhiteKernel()
    gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(z["train"][sample], y_train[sample])
    residual = data["val"][1].mean(axis=0) - data["val"][0]
    gp_residual = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(z["val"], residual)
    least = 1e-3 * y_train.std()
    for p in PARTS:
        nearest = train_index.kneighbors(z[p])[1]
        score[p]["neighbour_target_std"] = np.maximum(y_train[nearest].std(axis=1), least)
        score[p]["nearest_target_deviation"] = np.maximum(np.abs(y_train[nearest[:, 0]] - data[p][1].mean(axis=0)),
                                                          least)
        near = val_index.kneighbors(z[p])[1]
        near = near[:, 1:] if p == "val" else near[:, :-1]
        score[p]["neighbour_val_error"] = error["val"][near].mean(axis=1)
        score[p]["gp_std"] = gp.predict(z[p], return_std=True)[1]
        score[p]["gp_residual_std"] = gp_residual.predict(z[p], return_std=True)[1]

    def logs(p, names):
        return np.column_stack([np.log(np.maximum(score[p][n], 1e-12)) for n in names])

    target = np.log(np.maximum(error["val"], 1e-3 * error["val"].mean()))
    fits = [("spread", "distance_k5_pc16"), ("spread", "distance_k1_pc16"), ("spread", "distance_k1_pc32"),
            ("spread", "distance_k10_pc16", "neighbour_val_error"),
            ("spread", "distance_k10_pc16", "neighbour_target_std"),
            ("spread", "distance_k10_pc16", "neighbour_target_std", "neighbour_val_error"),
            ("spread", "distance_k10_pc16", "neighbour_target_std", "nearest_target_deviation"),
            ("spread", "distance_k10_pc16", "neighbour_target_std", "distance_k1_pc16", "nearest_target_deviation")]
    for names in fits:
        model = LinearRegression().fit(logs("val", names), target)
        for p in PARTS:
            score[p][f"fit({', '.join(names)})"] = np.exp(model.predict(logs(p, names)))
    names = fits[5]
    boosting = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, min_samples_leaf=40, random_state=0)
    boosting.fit(np.column_stack([logs("val", names), z["val"]]), target)
    for p in PARTS:
        score[p]["boosting"] = np.exp(boosting.predict(np.column_stack([logs(p, names), z[p]])))
    return error, score


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), required=True)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for featurizing")
    parser.add_argument("--results", type=Path, default=RESULTS / "uncertainty_scores.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if TASKS[args.task][4] == "roc_auc":
        sys.exit("uncertainty scores are compared for regression tasks")
    data, n_members = members_on_split(args.task, args.n_jobs)
    error, score = scores(data)
    for name in score["test"]:
        emit({"benchmark": "uncertainty_scores", "task": args.task, "members": n_members, "score": name,
              **{f"spearman_{p}": round(float(spearmanr(error[p], score[p][name]).statistic), 3) for p in PARTS},
              "hardware": hardware("cpu"), "command": "python " + shlex.join(sys.argv)}, args.results)


if __name__ == "__main__":
    main()
