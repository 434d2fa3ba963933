"""Write ``tests/data/real_crystals.csv``: a few real crystals for the tests, which must run without ``../shared``.

Ten small Materials Project and perovskite cells among the 200 structures of
``../shared/pretrained/reference_predictions.csv``, chosen to cover the
shapes that stress a crystal graph: one-atom bcc, rock salt, cubic and
tetragonal perovskites, hexagonal and orthorhombic cells, with and without
a neighbour shell tied at the 12th neighbour.

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
SOURCES = {"mp_cgcnn_36737": "mp_cgcnn_36737/mp_cgcnn_36737.csv.gz", "perov_5": "perov_5/perov_5_val_test.csv.gz"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    reference = pd.read_csv(args.shared / "pretrained" / "reference_predictions.csv", dtype={"id": str})
    parts = []
    for dataset, ids in CHOSEN.items():
        data = pd.read_csv(args.shared / "data" / SOURCES[dataset], dtype={"id": str}, usecols=["id", "cif"])
        rows = data[data.id.isin(ids)].set_index("id").loc[ids].reset_index()
        rows.insert(0, "dataset", dataset)
        parts.append(rows)
    table = pd.concat(parts, ignore_index=True)
    ties = reference.set_index(["dataset", "id"]).tie_at_12th
    table.insert(2, "tie_at_12th", [int(ties[(d, i)]) for d, i in zip(table.dataset, table.id)])
    out = ROOT / "tests" / "data" / "real_crystals.csv"
    table.to_csv(out, index=False)
    print(f"wrote {len(table)} crystals to {out}")


if __name__ == "__main__":
    main()
