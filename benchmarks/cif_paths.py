"""The two CIF readers on every CIF of the benchmark data: the same crystal graphs, the same predictions?

For each data set (Materials Project 36,737, perovskites 7,572, elastic 3,191): the share of CIFs the gemmi path
takes, and, chunk by chunk, the graphs of ``cif_reader="auto"`` against ``cif_reader="pymatgen"`` under both
neighbour rules (arrays identical, largest distance difference) and the predictions of a model of each rule
(the released ``mp-bulk-modulus`` on shared graphs, the 2018 ``formation-energy-per-atom`` on first-M graphs;
largest relative difference). Targets: distances within 1e-4 Å, predictions within 1e-5 relative.

    python benchmarks/cif_paths.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from common import ELASTIC_CSV, MP_CSV, PEROV_CSV, RESULTS, emit, hardware, require
from skcgcnn import CrystalGraphTransformer
from skcgcnn.datasets import load_csv
from skcgcnn.fast_cif import read_cif
from skcgcnn.pretrained import load

MODELS = {"shared": "mp-bulk-modulus", "first": "formation-energy-per-atom"}


def compare(texts, model) -> dict:
    """Graphs (under the model's settings) and predictions of both readers on ``texts``."""
    built = {reader: CrystalGraphTransformer.from_settings(model.graph_settings_, cif_reader=reader).transform(texts)
             for reader in ("auto", "pymatgen")}
    fast, slow = built["auto"], built["pymatgen"]
    same_shape = all(getattr(fast, k).shape == getattr(slow, k).shape for k in fast.ARRAYS)
    identical = same_shape and all(np.array_equal(getattr(fast, k), getattr(slow, k)) for k in fast.ARRAYS)
    gap = float(np.abs(fast.nbr_dist - slow.nbr_dist).max()) if same_shape else float("inf")
    a, b = model.predict(fast), model.predict(slow)
    return {"identical": identical, "max_distance_difference": gap,
            "max_relative_prediction_difference": float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=[MP_CSV, PEROV_CSV, ELASTIC_CSV])
    parser.add_argument("--chunk", type=int, default=2000, help="CIFs compared at a time")
    parser.add_argument("--results", type=Path, default=RESULTS / "cif_paths.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    models = {rule: load(name) for rule, name in MODELS.items()}
    for path in args.data:
        texts = list(load_csv(require(path), target=None, parse=False)[0])
        start = time.perf_counter()
        taken = sum(read_cif(text) is not None for text in texts)
        record = {"benchmark": "cif_paths", "data": path.parent.name, "n": len(texts), "fast_path": taken,
                  "hardware": hardware()}
        for rule, model in models.items():
            parts = [compare(texts[i : i + args.chunk], model) for i in range(0, len(texts), args.chunk)]
            record[rule] = {"chunks_identical": f"{sum(p['identical'] for p in parts)} of {len(parts)}",
                            "max_distance_difference": max(p["max_distance_difference"] for p in parts),
                            "max_relative_prediction_difference":
                                max(p["max_relative_prediction_difference"] for p in parts),
                            "model": MODELS[rule]}
        emit({**record, "seconds": round(time.perf_counter() - start, 1), "target_distance": 1e-4,
              "target_relative_prediction": 1e-5}, args.results)


if __name__ == "__main__":
    main()
