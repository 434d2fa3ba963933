import pickle
import warnings

import numpy as np
import pytest
from ase.build import bulk
from pymatgen.core import Lattice, Structure
from sklearn.model_selection import KFold
from sklearn.utils import _safe_indexing

from conftest import varied_structures
from skcgcnn import CrystalGraphs, CrystalGraphTransformer


def reference_distances(structure, radius, max_num_nbr):
    """Deliberately slow builder: per-atom neighbour objects, sorted, first M."""
    return [
        sorted(n.nn_distance for n in nbrs)[:max_num_nbr]
        for nbrs in structure.get_all_neighbors(radius)
    ]


def per_atom_distances(graphs, k):
    lo, hi = graphs.offsets[k], graphs.offsets[k + 1]
    return [d[m] for d, m in zip(graphs.nbr_dist[lo:hi], graphs.nbr_mask[lo:hi])]


@pytest.fixture(scope="module")
def structures():
    return varied_structures(52)


def test_matches_slow_reference_builder(structures):
    assert any(len(s) == 1 for s in structures) and any(len(s) >= 100 for s in structures)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = CrystalGraphTransformer(radius=6.0).transform(structures)
    assert len(graphs) == len(structures)
    for k, s in enumerate(structures):
        ours = per_atom_distances(graphs, k)
        ref = reference_distances(s, 6.0, 12)
        assert len(ours) == len(ref) == len(s)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_neighbour_indices_point_at_atoms_at_that_distance(structures):
    s = structures[1]
    graphs = CrystalGraphTransformer(radius=5.0).transform([s])
    images = np.array(list(np.ndindex(5, 5, 5))) - 2
    for i in range(len(s)):
        mask = graphs.nbr_mask[i]
        for j, d in zip(graphs.nbr_idx[i][mask], graphs.nbr_dist[i][mask]):
            # some periodic image of atom j lies at distance d from atom i
            dists = [s[i].distance(s[int(j)], jimage=img) for img in images]
            assert np.min(np.abs(np.array(dists) - d)) < 1e-4


def test_site_permutation_permutes_the_graph(ionic):
    s = ionic[0][4] * (2, 1, 1)
    perm = np.random.default_rng(0).permutation(len(s))
    permuted = Structure.from_sites([s[i] for i in perm])
    t = CrystalGraphTransformer()
    g, gp = t.transform([s]), t.transform([permuted])
    np.testing.assert_array_equal(gp.atomic_numbers, g.atomic_numbers[perm])
    np.testing.assert_allclose(gp.nbr_dist, g.nbr_dist[perm], atol=1e-5)
    inverse = np.argsort(perm)
    # neighbour j of permuted atom p is atom perm[j] of the original
    for p in range(len(s)):
        orig_nbrs = sorted(zip(np.round(g.nbr_dist[perm[p]], 4), g.nbr_idx[perm[p]]))
        new_nbrs = sorted(zip(np.round(gp.nbr_dist[p], 4), perm[gp.nbr_idx[p]]))
        assert [d for d, _ in orig_nbrs] == [d for d, _ in new_nbrs]
    assert inverse[perm[0]] == 0


def test_supercell_atoms_see_the_same_neighbour_distances(ionic):
    s = ionic[0][2]
    t = CrystalGraphTransformer()
    g = t.transform([s, s * (2, 1, 1)])
    prim = per_atom_distances(g, 0)
    sup = per_atom_distances(g, 1)
    for i, d in enumerate(sup):
        # make_supercell lists the images of each primitive site consecutively
        np.testing.assert_allclose(np.sort(d), np.sort(prim[i // 2]), atol=1e-5)


def test_mixed_inputs_ase_cif_path_and_text(tmp_path):
    s = Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]])
    path = tmp_path / "cu.cif"
    s.to(filename=str(path))
    inputs = [s, bulk("Cu", "sc", a=4.0), str(path), path, path.read_text()]
    g = CrystalGraphTransformer().transform(inputs)
    assert len(g) == 5
    for k in range(1, 5):
        np.testing.assert_allclose(g.nbr_dist[k], g.nbr_dist[0], atol=1e-5)
    import pandas as pd

    assert len(CrystalGraphTransformer().transform(pd.Series([s, s]))) == 2
    arr = np.empty(2, dtype=object)
    arr[:] = [s, s]
    assert len(CrystalGraphTransformer().transform(arr)) == 2


def test_short_atoms_are_masked_with_one_aggregated_warning():
    lonely = Structure(Lattice.cubic(9.0), ["Na"], [[0, 0, 0]])
    sparse = Structure(Lattice.cubic(5.0), ["Na"], [[0, 0, 0]])
    with pytest.warns(UserWarning) as record:
        g = CrystalGraphTransformer(radius=5.5).transform([lonely, sparse, sparse])
    messages = [str(w.message) for w in record if "max_num_nbr" in str(w.message)]
    assert len(messages) == 1
    assert "3 of 3 atoms in 3 of 3 structures" in messages[0]
    assert not g.nbr_mask[0].any()
    assert g.nbr_mask[1].sum() == 6
    assert (g.nbr_dist[1][~g.nbr_mask[1]] == 0).all()


def test_container_indexing_with_safe_indexing_and_kfold(ionic):
    X = ionic[0][:10]
    g = CrystalGraphTransformer().transform(X)
    assert g.shape == (10,) and len(g) == 10
    ref = [CrystalGraphTransformer().transform([x]) for x in X]
    for key, expected in [(3, [3]), (slice(2, 8, 3), [2, 5]), (np.array([7, 1, 7]), [7, 1, 7]),
                          (np.arange(10) % 3 == 0, [0, 3, 6, 9]), ([-1], [9])]:
        sub = g[key]
        assert isinstance(sub, CrystalGraphs) and len(sub) == len(expected)
        for k, e in enumerate(expected):
            lo, hi = sub.offsets[k], sub.offsets[k + 1]
            np.testing.assert_array_equal(sub.atomic_numbers[lo:hi], ref[e].atomic_numbers)
            np.testing.assert_array_equal(sub.nbr_idx[lo:hi], ref[e].nbr_idx)
            np.testing.assert_array_equal(sub.nbr_dist[lo:hi], ref[e].nbr_dist)
    picked = _safe_indexing(g, np.array([4, 0]))
    assert isinstance(picked, CrystalGraphs)
    np.testing.assert_array_equal(picked.atomic_numbers, g[[4, 0]].atomic_numbers)
    for train, test in KFold(3).split(g):
        assert len(_safe_indexing(g, train)) == len(train)
    assert len(g[np.array([], dtype=int)]) == 0
    with pytest.raises(IndexError):
        g[10]
    with pytest.raises(IndexError):
        g[np.ones(3, dtype=bool)]


def test_pickle_roundtrip_and_bytes_per_atom(ionic):
    g = CrystalGraphTransformer().transform(ionic[0][:20])
    back = pickle.loads(pickle.dumps(g))
    assert back.settings == g.settings
    for name in ("atomic_numbers", "nbr_idx", "nbr_dist", "nbr_mask", "offsets"):
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
    assert g.nbytes / len(g.atomic_numbers) <= 150
    assert g.nbr_dist.dtype == np.float32


def test_n_jobs_does_not_change_the_result(ionic):
    # CIF text is what gets sent to worker processes.
    X = [s.to(fmt="cif") for s in ionic[0][:40]]
    g1 = CrystalGraphTransformer(n_jobs=1).transform(X)
    g2 = CrystalGraphTransformer(n_jobs=2).transform(X)
    for name in ("atomic_numbers", "nbr_idx", "nbr_dist", "nbr_mask", "offsets"):
        np.testing.assert_array_equal(getattr(g1, name), getattr(g2, name))


def test_atom_feature_vectors_come_from_the_chosen_table(ionic):
    g = CrystalGraphTransformer(atom_features="onehot").transform(ionic[0][:3])
    vectors = g.atom_feature_vectors()
    assert vectors.shape == (len(g.atomic_numbers), 100)
    np.testing.assert_array_equal(vectors.argmax(1) + 1, g.atomic_numbers)


def test_graphs_pass_through_only_with_matching_settings(ionic):
    g = CrystalGraphTransformer().transform(ionic[0][:3])
    assert CrystalGraphTransformer().transform(g) is g
    with pytest.raises(ValueError, match="radius=6.0"):
        CrystalGraphTransformer(radius=6.0).transform(g)


def test_stateless_transformer_tags_and_fit_returns_self():
    t = CrystalGraphTransformer()
    assert t.fit([]) is t
    tags = t.__sklearn_tags__()
    assert tags.requires_fit is False and tags.input_tags.two_d_array is False


def test_gaussian_centres_default_to_41():
    assert len(CrystalGraphTransformer().settings.gaussian_centers) == 41
