"""How often the neighbour rule matters: structures whose graph differs between ``"shared"`` and ``"first"``.

The two rules give the same graph unless some atom's M-th and (M+1)-th
neighbours are equally far (within ``tie_tol``), so one featurization with
the shared rule tells which structures differ (``nbr_shared > 0`` on some
atom). For every data set: that fraction, the fraction of atoms with a
shared shell, the edges the shared rule adds, and bytes stored per atom
under both rules.

    python benchmarks/neighbour_rules.py
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
from skcgcnn.structures import as_structure_list


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=[MP_CSV, PEROV_CSV, ELASTIC_CSV])
    parser.add_argument("--tie-tol", type=float, default=1e-3)
    parser.add_argument("--limit", type=int, default=None, help="read only the first N rows of each file")
    parser.add_argument("--results", type=Path, default=RESULTS / "neighbour_rules.jsonl",
                        help="file the JSON lines are appended to (default %(default)s)")
    args = parser.parse_args()
    for path in args.data:
        texts, _, _ = load_csv(require(path), target=None, parse=False, nrows=args.limit)
        structures = as_structure_list(texts, n_jobs=2)
        built = {}
        for rule in ("shared", "first"):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built[rule] = CrystalGraphTransformer(nbr_rule=rule, tie_tol=args.tie_tol).transform(structures)
            built[rule + "_s"] = time.perf_counter() - start
        shared, first = built["shared"], built["first"]
        tied_atom = shared.nbr_shared > 0
        crystal_of_atom = np.repeat(np.arange(len(shared)), shared.n_atoms)
        tied_crystals = np.bincount(crystal_of_atom, weights=tied_atom, minlength=len(shared)) > 0
        n_atoms = len(shared.atomic_numbers)
        emit({"benchmark": "neighbour_rules", "data": path.parent.name, "tie_tol": args.tie_tol,
              "n_structures": len(shared), "n_atoms": n_atoms,
              "structures_that_differ": round(float(tied_crystals.mean()), 4),
              "atoms_with_shared_shell": round(float(tied_atom.mean()), 4),
              "edges_first": len(first.nbr_idx), "edges_shared": len(shared.nbr_idx),
              "extra_edges": round(len(shared.nbr_idx) / len(first.nbr_idx) - 1, 4),
              "bytes_per_atom_first": round(first.nbytes / n_atoms, 1),
              "bytes_per_atom_shared": round(shared.nbytes / n_atoms, 1),
              "graphs_s_first": round(built["first_s"], 1), "graphs_s_shared": round(built["shared_s"], 1),
              "hardware": hardware()}, args.results)


if __name__ == "__main__":
    main()
