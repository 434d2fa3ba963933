"""The 2018 models read here against the original code's predictions, and what a tied shell does to them.

``../shared/pretrained/reference_predictions.csv`` holds what the original code predicts with each of its eight
models for 200 real structures (150 Materials Project, 50 perovskites; ``tie_at_12th`` marks the 162 where some
atom's 12th and 13th neighbours are equally far). For each model, read with ``nbr_rule="first"`` as it was
trained: the largest difference from the original on the rows without and with a tie, and how many rows differ
by more than 1e-4 relative (and 1e-5 absolute). Then how much the same model's prediction moves when the
structure is given as its 2x1x1 supercell or with its sites listed in reverse order, under the first rule and
under ``nbr_rule="shared"``. One JSON line per model.

    python benchmarks/original_agreement.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from sklearn.base import is_classifier

from common import MP_CSV, PEROV_CSV, RESULTS, SHARED_DATA, emit, hardware, require
from skcgcnn.pretrained import MODELS, load

REFERENCE = SHARED_DATA.parent / "pretrained" / "reference_predictions.csv"


def structures() -> tuple[pd.DataFrame, list[Structure]]:
    """The reference rows and their structures, read from the data sets' CIFs."""
    reference = pd.read_csv(require(REFERENCE), dtype={"id": str})
    cifs = pd.concat([pd.read_csv(require(path), dtype={"id": str}, usecols=["id", "cif"]).assign(dataset=name)
                      for name, path in (("mp_cgcnn_36737", MP_CSV), ("perov_5", PEROV_CSV))])
    rows = reference.merge(cifs, on=["dataset", "id"], how="left", validate="one_to_one")
    if rows.cif.isna().any():
        sys.exit(f"{int(rows.cif.isna().sum())} reference rows have no CIF in the data sets")
    return rows, [Structure.from_str(text, fmt="cif") for text in rows.cif]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS / "original_agreement.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, cells = structures()
        variants = {"supercell_2x1x1": [cell * (2, 1, 1) for cell in cells],
                    "sites_reversed": [Structure.from_sites(list(cell)[::-1]) for cell in cells]}
        tied = rows.tie_at_12th.to_numpy() == 1
        for name in MODELS:
            record = {"benchmark": "original_agreement", "model": name, "rows": len(rows), "tied": int(tied.sum())}
            for rule in ("first", "shared"):
                model = load(name, nbr_rule=rule)
                predict = (lambda X: model.predict_proba(X)[:, 1]) if is_classifier(model) else model.predict
                here = predict(cells)
                if rule == "first":
                    gap = np.abs(here - rows[name].to_numpy())
                    beyond = gap > 1e-4 * np.abs(rows[name].to_numpy()) + 1e-5
                    record.update(max_difference_no_tie=round(float(gap[~tied].max()), 6),
                                  max_difference_tied=round(float(gap[tied].max()), 4),
                                  rows_beyond_1e_4=int(beyond.sum()))
                for variant, moved in variants.items():
                    record[f"{rule}_{variant}_max_change"] = round(float(np.abs(predict(moved) - here).max()), 4)
            emit({**record, "hardware": hardware("cpu"), "command": "python " + shlex.join(sys.argv)}, args.results)


if __name__ == "__main__":
    main()
