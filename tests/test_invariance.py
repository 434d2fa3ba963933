"""A prediction must not depend on arbitrary choices: site order, origin, orientation, unit cell.

Property-based over real crystals (``data/real_crystals.csv``) and generated ones with degenerate
neighbour shells (cubic perovskite, rock salt, bcc and fcc metals).
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from scipy.spatial.transform import Rotation

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.batching import collate_graphs


def _fcc_primitive(a, species, coords):
    h = a / 2
    return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), species, coords)


GENERATED = [
    Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
              [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
    _fcc_primitive(5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    Structure(Lattice([[-1.435, 1.435, 1.435], [1.435, -1.435, 1.435], [1.435, 1.435, -1.435]]), ["Fe"], [[0, 0, 0]]),
    _fcc_primitive(3.61, ["Cu"], [[0, 0, 0]]),
]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pymatgen notes the coordinates it rounds to ideal values
    REAL = [Structure.from_str(cif, fmt="cif") for cif in
            pd.read_csv(Path(__file__).parent / "data" / "real_crystals.csv").cif]
CRYSTALS = REAL + GENERATED
SUPERCELLS = [[[2, 0, 0], [0, 1, 0], [0, 0, 1]], [[1, 0, 0], [0, 2, 0], [0, 0, 2]], [[1, 1, 0], [-1, 1, 0], [0, 0, 1]],
              [[1, 0, 1], [0, 1, 1], [1, 1, 0]], [[2, 1, 0], [0, 1, 0], [0, 1, 2]], [[1, 0, 0], [0, 1, 0], [0, 0, 3]]]


def fitted(pooling, rule="shared"):
    y = np.linspace(-2.0, -1.0, len(CRYSTALS))
    featurizer = CrystalGraphTransformer(nbr_rule=rule)
    return CGCNNRegressor(pooling=pooling, featurizer=featurizer, max_epochs=15, batch_size=4,
                          random_state=0).fit(CRYSTALS, y)


@pytest.fixture(scope="module")
def model():
    return fitted("mean")


@pytest.fixture(scope="module")
def linear_model():
    return fitted("linear")


@st.composite
def rearranged(draw):
    """A real or generated crystal and the same crystal with another site order, origin, orientation and cell."""
    k = draw(st.integers(0, len(CRYSTALS) - 1))
    s = CRYSTALS[k].copy()
    other = s.copy()
    if draw(st.booleans()):
        other.make_supercell(draw(st.sampled_from(SUPERCELLS)))
    perm = draw(st.permutations(range(len(other))))
    other = Structure.from_sites([other[i] for i in perm])
    shift = draw(st.lists(st.floats(-1, 1), min_size=3, max_size=3))
    other.translate_sites(list(range(len(other))), shift)
    rotvec = draw(st.lists(st.floats(-np.pi, np.pi), min_size=3, max_size=3))
    rotation = Rotation.from_rotvec(rotvec).as_matrix()
    other = Structure(Lattice(other.lattice.matrix @ rotation.T), other.species, other.frac_coords)
    return s, other


@settings(max_examples=40, deadline=None)
@given(pair=rearranged())
def test_prediction_does_not_depend_on_order_origin_orientation_or_cell(model, pair):
    original, other = pair
    y = model.predict([original, other])
    np.testing.assert_allclose(y[1], y[0], rtol=1e-5)


@pytest.mark.parametrize("k", range(len(CRYSTALS)))
def test_primitive_and_conventional_standard_cells_predict_the_same(model, k):
    analyzer = SpacegroupAnalyzer(CRYSTALS[k])
    primitive = analyzer.get_primitive_standard_structure()
    conventional = analyzer.get_conventional_standard_structure()
    y = model.predict([primitive, conventional, CRYSTALS[k]])
    np.testing.assert_allclose(y[1], y[0], rtol=1e-5)
    # the standard cells are symmetrised, so they may differ from the stored one in the last digits
    np.testing.assert_allclose(y[2], y[0], rtol=1e-4)


def test_the_first_m_rule_depends_on_the_site_order_where_a_shell_is_tied():
    """Shows the tests above can fail: the original rule changes predictions when the sites are listed anew."""
    model = fitted("mean", rule="first")
    differences = [abs(float(np.diff(model.predict([s, Structure.from_sites(list(s)[::-1])]))[0])) for s in CRYSTALS]
    assert max(differences) > 1e-4


@pytest.fixture(scope="module")
def sum_model():
    return fitted("sum")


@settings(max_examples=20, deadline=None)
@given(k=st.integers(0, len(CRYSTALS) - 1), matrix=st.sampled_from(SUPERCELLS))
def test_sum_pooled_crystal_vector_scales_with_the_number_of_cells(sum_model, k, matrix):
    s = CRYSTALS[k]
    big = s.copy()
    big.make_supercell(matrix)
    batch = collate_graphs(CrystalGraphTransformer().transform([s, big])).tensors
    module = sum_model.module_.eval()
    graph = {name: batch[name] for name in ("atomic_numbers", "edge_src", "edge_dst", "edge_dist", "edge_weight")}
    with torch.no_grad():
        v = module.atom_vectors(**graph)
    pooled = torch.zeros(2, v.shape[1]).index_add_(0, batch["crystal_idx"], v)
    n_cells = round(abs(np.linalg.det(matrix)))
    torch.testing.assert_close(pooled[1], n_cells * pooled[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k", range(len(CRYSTALS)))
def test_symmetry_equivalent_sites_contribute_equally(linear_model, k):
    s = CRYSTALS[k] * (1, 1, 2)
    sites = linear_model.predict_contributions([s]).contribution.to_numpy()
    groups = SpacegroupAnalyzer(s).get_symmetrized_structure().equivalent_indices
    assert sum(len(g) for g in groups) == len(s)
    for group in groups:
        np.testing.assert_allclose(sites[group], sites[group[0]], rtol=1e-5, atol=1e-6)
    assert len(groups) == 1 or np.ptp(sites) > 1e-6
