"""How much a released model's members gain from a local correction: the measurement behind its choice.

The members miss their own training crystals by a residual (target minus their mean). A new crystal's
prediction can add a share of its nearest training crystals' residuals, found in the members' crystal-feature
space as the released models measure distances (averaged over members, standardised on the training crystals,
16 principal components). Candidates: a Gaussian-kernel-weighted mean of the 10 nearest residuals with a kernel
width of 0.25 to 4 times the validation crystals' median distance to their nearest training crystal
(``kernel_w<m>``, what :class:`skcgcnn.calibrated.CalibratedEnsembleRegressor` chooses among for 0.5, 1 and 2),
the same with k nearest residuals in n principal components (``kernel_w<m>_k<k>_pc<n>``, the last n all
features), and the plain mean of the k nearest residuals (``mean_k<k>``). For each the share (0 to 1.5) with the least
validation MAE is kept, and the MAE printed on the validation, calibration and test crystals (one JSON line per
candidate, the first for the members' mean alone).

    python benchmarks/local_correction.py --task formation_energy
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from common import RESULTS, emit, hardware
from table1 import TASKS
from uncertainty_scores import PARTS, members_on_split

SHARES = np.linspace(0.0, 1.5, 31)


def candidates(data) -> dict[str, dict[str, np.ndarray]]:
    """Each candidate correction (before its share) of every part's crystals."""
    y_train, p_train, f_train = data["train"]
    center, scale = f_train.mean(axis=0), f_train.std(axis=0)
    scale[scale == 0] = 1.0
    residual = y_train - p_train.mean(axis=0)
    out = {}
    for n_components in (16, 32, 64, f_train.shape[1]):
        pca = PCA(n_components=n_components, random_state=0).fit((f_train - center) / scale)
        index = NearestNeighbors(n_neighbors=30).fit(pca.transform((f_train - center) / scale))
        near = {p: index.kneighbors(pca.transform((data[p][2] - center) / scale)) for p in PARTS}
        typical = float(np.median(near["val"][0][:, 0]))
        widths = (0.25, 0.5, 1.0, 2.0, 4.0) if n_components == 16 else (0.5, 1.0)
        for k, width in [(k, w) for k in (10, 30) for w in widths]:
            name = f"kernel_w{width:g}" + ("" if (k, n_components) == (10, 16) else f"_k{k}_pc{n_components}")
            out[name] = {}
            for p, (distance, nearest) in near.items():
                kernel = np.exp(-(distance[:, :k] / (width * typical)) ** 2)
                kernel = np.where(kernel.sum(axis=1, keepdims=True) > 0, kernel, 1.0)
                out[name][p] = (kernel * residual[nearest[:, :k]]).sum(axis=1) / kernel.sum(axis=1)
        if n_components == 16:
            for k in (1, 3, 10):
                out[f"mean_k{k}"] = {p: residual[nearest[:, :k]].mean(axis=1) for p, (_, nearest) in near.items()}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TASKS), required=True)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for featurizing")
    parser.add_argument("--results", type=Path, default=RESULTS / "local_correction.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if TASKS[args.task][4] == "roc_auc":
        sys.exit("the local correction is measured for regression tasks")
    data, n_members = members_on_split(args.task, args.n_jobs)
    mean = {p: data[p][1].mean(axis=0) for p in PARTS}

    def mae(p, correction, share):
        return round(float(np.mean(np.abs(mean[p] + share * correction[p] - data[p][0]))), 5)

    none = {p: np.zeros_like(mean[p]) for p in PARTS}
    for name, correction in [("members' mean", none), *candidates(data).items()]:
        share = min(SHARES, key=lambda s: mae("val", correction, s))
        emit({"benchmark": "local_correction", "task": args.task, "members": n_members, "correction": name,
              "share": round(float(share), 2), **{f"mae_{p}": mae(p, correction, share) for p in PARTS},
              "hardware": hardware("cpu"), "command": "python " + shlex.join(sys.argv)}, args.results)


if __name__ == "__main__":
    main()
