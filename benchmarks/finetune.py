"""Where fine-tuning a released model pays: a learning curve on a target none of them was trained on.

perov_5 ``heat_ref`` (eV per 5-atom cell), a fixed test set (20 %, seed 0)
and training sets of ``--sizes`` cells drawn from the rest (seed 0). Three
routes with the same epoch budget:

``scratch``
    The default ``CGCNNRegressor`` from random weights.
``fine_tuned``
    ``CGCNNRegressor.from_pretrained("formation-energy-per-atom")``, all
    layers trained.
``embeddings``
    The released model kept fixed; its crystal vectors (``transform``) feed
    a scikit-learn ``RidgeCV`` and a ``HistGradientBoostingRegressor``.

    python benchmarks/finetune.py --sizes 100 300 1000 3000 --epochs 100
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common import PEROV_CSV, RESULTS, emit, hardware, require
from skcgcnn import CGCNNRegressor, CrystalGraphTransformer, pretrained
from skcgcnn.datasets import load_csv

BASE = "formation-energy-per-atom"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=PEROV_CSV)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--fine-tune-lr", type=float, default=1e-3)
    parser.add_argument("--results", type=Path, default=RESULTS / "finetune.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()

    texts, y, _ = load_csv(require(args.data), target="heat_ref", parse=False)
    pool, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0)
    fine_tuner = CGCNNRegressor.from_pretrained(BASE, max_epochs=args.epochs, lr=args.fine_tune_lr, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = {"scratch": CrystalGraphTransformer(n_jobs=2).transform(texts),
                  "pretrained": fine_tuner.featurizer.set_params(n_jobs=2).transform(texts)}
    frozen = pretrained.load(BASE, nbr_rule="shared")
    embeddings = frozen.transform(graphs["pretrained"])
    rng = np.random.default_rng(0)
    order = rng.permutation(pool)
    for size in args.sizes:
        train = order[:size]
        common = {"benchmark": "finetune", "data": "perov_5 heat_ref", "n_train": size, "n_test": len(test),
                  "epochs": args.epochs, "hardware": hardware()}
        routes = {
            "scratch": (CGCNNRegressor(max_epochs=args.epochs, random_state=0), graphs["scratch"]),
            "fine_tuned": (fine_tuner, graphs["pretrained"]),
            "embeddings_ridge": (make_pipeline(StandardScaler(), RidgeCV(np.logspace(-4, 2, 13))), embeddings),
            "embeddings_boosting": (HistGradientBoostingRegressor(random_state=0), embeddings),
        }
        for name, (model, X) in routes.items():
            start = time.perf_counter()
            model.fit(X[train], y[train])
            fit_s = time.perf_counter() - start
            mae = mean_absolute_error(y[test], model.predict(X[test]))
            emit({**common, "route": name, "test_mae": round(float(mae), 4), "fit_s": round(fit_s, 1)}, args.results)


if __name__ == "__main__":
    main()
