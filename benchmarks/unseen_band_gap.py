"""Band gaps of crystals that neither the released band-gap model nor the 2018 one trained on.

The 2018 band-gap model trained on 16,458 of the 27,430 crystals of the paper's band-gap list, and that list holds
every crystal of ``mp-band-gap``'s split: the 2018 model has likely seen about 60 % of the test crystals it is
compared on. ``mp_cgcnn_36737`` also holds crystals outside the list that have a band gap in its newer data. Neither
model trained on them, nor on a copy of them (crystals with a copy on the list are left out), so they compare the
two without that advantage. They are not a sample of the list's crystals: most were metals when the list was made
and have small gaps now, so the scores are given by band-gap range too.

    python benchmarks/unseen_band_gap.py
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from common import MP_CSV, RESULTS, emit, hardware, require
from skcgcnn import CrystalGraphTransformer, pretrained
from skcgcnn.datasets import load_csv
from skcgcnn.leakage import find_duplicates

RANGES = [(0.0, 0.5), (0.5, 2.0), (2.0, np.inf)]  # eV


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for featurizing and comparing crystals")
    parser.add_argument("--results", type=Path, default=RESULTS / "unseen_band_gap.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    texts, _, ids = load_csv(require(MP_CSV), target=None, parse=False)
    table = pd.read_csv(MP_CSV, usecols=["id", "band_gap", "in_cgcnn_bandgap_ids"]).set_index("id").loc[ids]
    gap = table["band_gap"].to_numpy()
    listed = table["in_cgcnn_bandgap_ids"].to_numpy() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = CrystalGraphTransformer(n_jobs=args.n_jobs).transform(texts)
        copied = np.zeros(len(ids), dtype=bool)
        for group in find_duplicates(texts, graphs=graphs, n_jobs=args.n_jobs):
            copied[group] = copied[group] | listed[group].any()
        rows = np.flatnonzero(~listed & (gap > 0) & ~copied)
        released = pretrained.load("mp-band-gap").predict(graphs[rows])
        old = pretrained.load("band-gap").predict([texts[i] for i in rows])  # the original rule, from the text
    y = gap[rows]
    for low, high in [(0.0, np.inf), *RANGES]:
        inside = (y >= low) & (y < high)
        emit({"benchmark": "unseen_band_gap", "gap_from_eV": low, "gap_below_eV": None if np.isinf(high) else high,
              "n": int(inside.sum()), "median_gap_eV": round(float(np.median(y[inside])), 4),
              "mae_released": round(float(np.mean(np.abs(released[inside] - y[inside]))), 4),
              "mae_2018_model": round(float(np.mean(np.abs(old[inside] - y[inside]))), 4),
              "left_out_as_copies_of_listed": int((~listed & (gap > 0) & copied).sum()),
              "hardware": hardware("cpu")}, args.results)


if __name__ == "__main__":
    main()
