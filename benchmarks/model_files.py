"""Size and load time of a saved model: the skcgcnn model file against a joblib pickle.

The model is what ``skcgcnn fit`` trains with its defaults on perov_5: a
``Pipeline`` of the transformer and a default ``CGCNNRegressor`` with a
``HeldOutScore`` callback on a 10 % validation split (``--epochs`` epochs;
weights and sizes do not depend on how long it trained).

    python benchmarks/model_files.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import joblib
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from common import PEROV_CSV, RESULTS, emit, hardware, require
from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.callbacks import HeldOutScore
from skcgcnn.datasets import load_csv
from skcgcnn.persistence import save_model

LOAD = {"skcgcnn": "from skcgcnn.persistence import load_model as load", "joblib": "from joblib import load"}


def load_seconds(kind: str, path: Path, repeats: int = 5) -> float:
    """Best time to load the file in a fresh process (imports excluded)."""
    code = "\n".join([
        "import time", LOAD[kind], "import skcgcnn.estimators", "times = []",
        f"for _ in range({repeats}):",
        f"    start = time.perf_counter(); load({str(path)!r}); times.append(time.perf_counter() - start)",
        "print(min(times))",
    ])
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=PEROV_CSV)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--results", type=Path, default=RESULTS / "model_files.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    texts, y, _ = load_csv(require(args.data), target="heat_ref", parse=False)
    transformer = CrystalGraphTransformer(n_jobs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = transformer.transform(texts)
    train, val = train_test_split(np.arange(len(y)), test_size=0.1, random_state=0)
    net = CGCNNRegressor(max_epochs=args.epochs, random_state=0,
                         callbacks=[("held_out", HeldOutScore(graphs[val], y[val]))]).fit(graphs[train], y[train])
    model = Pipeline([("graph", transformer), ("cgcnn", net)])
    weights = sum(t.numel() * t.element_size() for t in net.module_.state_dict().values())
    with tempfile.TemporaryDirectory() as folder:
        paths = {"skcgcnn": save_model(model, Path(folder) / "model.skcgcnn"), "joblib": Path(folder) / "m.joblib"}
        joblib.dump(model, paths["joblib"])
        for kind, path in paths.items():
            emit({"benchmark": "model_files", "format": kind, "n_validation_crystals": len(val),
                  "bytes": path.stat().st_size, "weights_bytes": weights,
                  "load_s": round(load_seconds(kind, path), 4), "hardware": hardware()}, args.results)


if __name__ == "__main__":
    main()
