"""Crystals that appear more than once in a data set (what leaks across a split), and the time to find them.

For every data set: its graphs are built, then :func:`skcgcnn.leakage.find_duplicates` groups the crystals by
reduced formula and compares each group with pymatgen's StructureMatcher (default tolerances). Reported: the
number of groups (crystals present more than once), the entries in them, the share of the data set, and the
seconds spent (featurizing apart from matching).

    python benchmarks/duplicates.py
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from common import MP_CSV, PEROV_CSV, RESULTS, emit, hardware, require
from skcgcnn import CrystalGraphTransformer
from skcgcnn.datasets import load_csv
from skcgcnn.leakage import find_duplicates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=[MP_CSV, PEROV_CSV])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="read only the first N rows of each file")
    parser.add_argument("--results", type=Path, default=RESULTS / "duplicates.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    for path in args.data:
        texts, _, _ = load_csv(require(path), target=None, parse=False, nrows=args.limit)
        start = time.perf_counter()
        graphs = CrystalGraphTransformer(n_jobs=args.n_jobs).transform(texts)
        featurize_s = time.perf_counter() - start
        start = time.perf_counter()
        groups = find_duplicates(texts, graphs=graphs, n_jobs=args.n_jobs)
        match_s = time.perf_counter() - start
        entries = sum(len(group) for group in groups)
        emit({"benchmark": "duplicates", "data": path.name, "n_crystals": len(texts), "groups": len(groups),
              "entries": entries, "share_of_data": round(entries / len(texts), 4),
              "featurize_s": round(featurize_s, 1), "match_s": round(match_s, 1), "n_jobs": args.n_jobs,
              "hardware": hardware()}, args.results)


if __name__ == "__main__":
    main()
