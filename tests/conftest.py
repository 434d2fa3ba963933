import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from skcgcnn.datasets import make_ionic_crystals

#: A network small enough to train in seconds, for tests of what surrounds training (ensembles, intervals).
FAST = dict(max_epochs=3, batch_size=32, atom_fea_len=16, h_fea_len=16, n_conv=2)
#: The command line's options for the smallest network.
TINY_OPTIONS = ["--batch-size", "16", "--atom-fea-len", "8", "--h-fea-len", "8", "--n-conv", "1"]


def write_original_layout(folder, structures, targets, prefix: str = "mp-"):
    """A folder in the original CGCNN layout: ``<prefix><i>.cif`` files and their ``id_prop.csv``."""
    folder.mkdir()
    for i, s in enumerate(structures):
        s.to(filename=str(folder / f"{prefix}{i}.cif"))
    (folder / "id_prop.csv").write_text("".join(f"{prefix}{i},{t}\n" for i, t in enumerate(targets)))
    return folder


def varied_structures(n: int, seed: int = 0) -> list[Structure]:
    """1-atom cells, skewed triclinic cells, small ionic cells and 100+ atom supercells."""
    rng = np.random.default_rng(seed)
    ionic, _ = make_ionic_crystals(n, random_state=seed)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(Structure(Lattice.cubic(rng.uniform(2.2, 3.5)), [rng.choice(["Cu", "Fe", "Al"])], [[0, 0, 0]]))
        elif kind == 1:
            lattice = Lattice.from_parameters(*rng.uniform(3.0, 6.0, 3), *rng.uniform(60, 120, 3))
            n_sites = int(rng.integers(2, 6))
            while True:  # random positions, redrawn until no two atoms overlap
                s = Structure(lattice, list(rng.choice(["O", "Si", "Mg", "Li"], n_sites)), rng.random((n_sites, 3)))
                if s.distance_matrix[np.triu_indices(n_sites, 1)].min() > 1.0:
                    break
            out.append(s)
        elif kind == 2:
            out.append(ionic[i])
        else:
            out.append(ionic[i] * (3, 3, 2) if len(ionic[i]) >= 8 else ionic[i] * (4, 4, 4))
    return out


@pytest.fixture(scope="session")
def ionic():
    return make_ionic_crystals(90, random_state=0)


@pytest.fixture(scope="session")
def ionic_graphs():
    """240 generated ionic crystals: their graphs, targets and structures."""
    from skcgcnn import CrystalGraphTransformer

    X, y = make_ionic_crystals(240, random_state=7)
    return CrystalGraphTransformer().transform(X), y, X
