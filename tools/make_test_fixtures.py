"""Write the real crystals the tests use, which must run without ``../shared``.

``tests/data/real_crystals.csv``: ten small Materials Project and perovskite
cells among the 200 structures of ``../shared/pretrained/reference_predictions.csv``,
chosen to cover the shapes that stress a crystal graph: one-atom bcc, rock
salt, cubic and tetragonal perovskites, hexagonal and orthorhombic cells,
with and without a neighbour shell tied at the 12th neighbour.

``tests/data/reference_predictions_no_tie.csv``: the first ``N_NO_TIE // 2`` rows of each data set
in that file without such a tie, with their CIF and what the original code
predicts for them with each released model.

    python tools/make_test_fixtures.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CHOSEN = {
    "mp_cgcnn_36737": ["mp-1", "mp-1000", "mp-10010", "mp-1001571", "mp-1001113", "mp-1001787", "mp-1002114",
                       "mp-1001835"],
    "perov_5": ["15400", "8226"],
}
N_NO_TIE = 16
SOURCES = {"mp_cgcnn_36737": "mp_cgcnn_36737/mp_cgcnn_36737.csv.gz", "perov_5": "perov_5/perov_5_val_test.csv.gz"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    reference = pd.read_csv(args.shared / "pretrained" / "reference_predictions.csv", dtype={"id": str})
    data = {name: pd.read_csv(args.shared / "data" / path, dtype={"id": str}, usecols=["id", "cif"]).set_index("id")
            for name, path in SOURCES.items()}
    chosen = pd.DataFrame([(d, i) for d, ids in CHOSEN.items() for i in ids], columns=["dataset", "id"])
    no_tie = reference[reference.tie_at_12th == 0].groupby("dataset").head(N_NO_TIE // 2)
    for table, name in ((chosen.merge(reference[["dataset", "id", "tie_at_12th"]]), "real_crystals.csv"),
                        (no_tie, "reference_predictions_no_tie.csv")):
        table = table.assign(cif=[data[d].cif[i] for d, i in zip(table.dataset, table.id)])
        out = ROOT / "tests" / "data" / name
        table.to_csv(out, index=False)
        print(f"wrote {len(table)} crystals to {out}")


if __name__ == "__main__":
    main()
