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


def reference_distances(structure, radius, max_num_nbr, tol=None):
    """Deliberately slow builder: per-atom neighbour objects, sorted; first M, or all within tol of the M-th."""
    out = []
    for nbrs in structure.get_all_neighbors(radius):
        d = sorted(n.nn_distance for n in nbrs)
        keep = max_num_nbr if tol is None or len(d) < max_num_nbr else sum(x <= d[max_num_nbr - 1] + tol for x in d)
        out.append(d[:keep])
    return out


def per_atom(graphs, k, values):
    """``values`` (one per edge) of crystal ``k``, split into one array per atom."""
    g = graphs[k]
    return np.split(values[graphs.edge_offsets[k] : graphs.edge_offsets[k + 1]], np.cumsum(g.nbr_count)[:-1])


def per_atom_distances(graphs, k):
    return per_atom(graphs, k, graphs.nbr_dist)


@pytest.fixture(scope="module")
def structures():
    return varied_structures(52)


@pytest.mark.parametrize("rule", ["first", "shared"])
def test_matches_slow_reference_builder(structures, rule):
    assert any(len(s) == 1 for s in structures) and any(len(s) >= 100 for s in structures)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = CrystalGraphTransformer(radius=6.0, nbr_rule=rule).transform(structures)
    assert len(graphs) == len(structures)
    tol = 1e-3 if rule == "shared" else None
    for k, s in enumerate(structures):
        ours = per_atom_distances(graphs, k)
        ref = reference_distances(s, 6.0, 12, tol)
        assert len(ours) == len(ref) == len(s)
        for a, b in zip(ours, ref):
            np.testing.assert_allclose(a, b, atol=1e-5)
    weights = graphs.edge_weights()
    sums = np.bincount(graphs.edge_centers(), weights=weights, minlength=len(graphs.nbr_count))
    np.testing.assert_allclose(sums, np.minimum(graphs.nbr_count, 12) if rule == "first" else
                               np.where(graphs.nbr_shared > 0, 12, graphs.nbr_count), rtol=1e-6)


def test_neighbour_indices_point_at_atoms_at_that_distance(structures):
    s = structures[1]
    graphs = CrystalGraphTransformer(radius=5.0).transform([s])
    images = np.array(list(np.ndindex(5, 5, 5))) - 2
    for i, j, d in zip(graphs.edge_centers(), graphs.nbr_idx, graphs.nbr_dist):
        # some periodic image of atom j lies at distance d from atom i
        dists = [s[int(i)].distance(s[int(j)], jimage=img) for img in images]
        assert np.min(np.abs(np.array(dists) - d)) < 1e-4


def test_site_permutation_permutes_the_graph(ionic):
    s = ionic[0][4] * (2, 1, 1)
    perm = np.random.default_rng(0).permutation(len(s))
    permuted = Structure.from_sites([s[i] for i in perm])
    t = CrystalGraphTransformer()
    g, gp = t.transform([s]), t.transform([permuted])
    np.testing.assert_array_equal(gp.atomic_numbers, g.atomic_numbers[perm])
    dist, dist_p = per_atom_distances(g, 0), per_atom_distances(gp, 0)
    nbrs, nbrs_p = per_atom(g, 0, g.nbr_idx), per_atom(gp, 0, gp.nbr_idx)
    weights, weights_p = per_atom(g, 0, g.edge_weights()), per_atom(gp, 0, gp.edge_weights())
    # neighbour j of permuted atom p is atom perm[j] of the original, with the same distance and weight
    for p in range(len(s)):
        original = sorted(zip(np.round(dist[perm[p]], 4), nbrs[perm[p]], np.round(weights[perm[p]], 6)))
        permuted_ = sorted(zip(np.round(dist_p[p], 4), perm[nbrs_p[p]], np.round(weights_p[p], 6)))
        assert original == permuted_


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
        np.testing.assert_allclose(g[k].nbr_dist, g[0].nbr_dist, atol=1e-5)
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
    assert g.nbr_count.tolist() == [0, 6, 6] and g.nbr_shared.tolist() == [0, 0, 0]
    np.testing.assert_allclose(g[1].nbr_dist, 5.0, rtol=1e-6)
    np.testing.assert_array_equal(g.edge_weights(), 1.0)


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
            one = sub[k]
            for name in ("atomic_numbers", "nbr_count", "nbr_shared", "nbr_idx", "nbr_dist", "offsets", "edge_offsets"):
                np.testing.assert_array_equal(getattr(one, name), getattr(ref[e], name))
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
    for name in CrystalGraphs.ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(g, name))
    assert g.nbytes / len(g.atomic_numbers) <= 150
    assert g.nbr_dist.dtype == np.float32


def test_n_jobs_does_not_change_the_result(ionic):
    # CIF text is what gets sent to worker processes.
    X = [s.to(fmt="cif") for s in ionic[0][:40]]
    g1 = CrystalGraphTransformer(n_jobs=1).transform(X)
    g2 = CrystalGraphTransformer(n_jobs=2).transform(X)
    for name in CrystalGraphs.ARRAYS:
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


def _cubic(a, species, coords):
    return Structure(Lattice.cubic(a), species, coords)


@pytest.mark.parametrize("name, structure, expected", [
    # (edges, shared) per atom: the 12th and 13th neighbours tie in all but fcc
    ("bcc Fe", _cubic(2.87, ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]), [(14, 6), (14, 6)]),
    ("fcc Cu", Structure(Lattice([[0, 1.805, 1.805], [1.805, 0, 1.805], [1.805, 1.805, 0]]), ["Cu"], [[0, 0, 0]]),
     [(12, 0)]),
    ("rock salt", Structure(Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]), ["Na", "Cl"],
                            [[0, 0, 0], [0.5, 0.5, 0.5]]), [(18, 12), (18, 12)]),
    ("cubic perovskite", _cubic(3.9, ["Sr", "Ti", "O", "O", "O"],
                                [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
     [(12, 0), (14, 8)] + [(14, 12)] * 3),
])
def test_tied_shells_share_the_remaining_slots(name, structure, expected):
    g = CrystalGraphTransformer().transform([structure])
    assert list(zip(g.nbr_count.tolist(), g.nbr_shared.tolist())) == expected, name
    weights = per_atom(g, 0, g.edge_weights())
    dists = per_atom_distances(g, 0)
    for (count, shared), w, d in zip(expected, weights, dists):
        assert w.sum() == pytest.approx(12, rel=1e-6)
        np.testing.assert_array_equal(w[: count - shared], 1.0)
        if shared:
            np.testing.assert_allclose(w[count - shared :], (12 - (count - shared)) / shared, rtol=1e-6)
            # the shared shell is the M-th neighbour's, and it is complete
            np.testing.assert_allclose(d[count - shared :], d[11], atol=1e-3)
    first = CrystalGraphTransformer(nbr_rule="first").transform([structure])
    assert first.nbr_count.tolist() == [12] * len(structure) and not first.nbr_shared.any()
    np.testing.assert_array_equal(first.edge_weights(), 1.0)


def test_tied_neighbours_keep_their_order_under_last_bit_noise():
    # bcc's 12th and 13th neighbours tie: which of them the first rule keeps must not hang on float64 rounding,
    # such as another CIF reader's coordinates or a translation by 1e-12 Å leave
    crystal = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (3, 3, 3)
    transformer = CrystalGraphTransformer(nbr_rule="first")
    expected = transformer.transform([crystal]).nbr_idx
    rng = np.random.default_rng(0)
    for _ in range(5):
        moved = crystal.copy()
        moved.translate_sites(range(len(moved)), rng.normal(size=3) * 1e-12)
        np.testing.assert_array_equal(transformer.transform([moved]).nbr_idx, expected)


def test_tie_tolerance_groups_nearly_equal_distances():
    # a tetragonal distortion of 1e-4 Å splits the bcc second shell into 4 + 2
    distorted = Structure(Lattice.tetragonal(2.87, 2.8701), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert CrystalGraphTransformer(tie_tol=1e-3).transform([distorted]).nbr_shared.tolist() == [6, 6]
    assert CrystalGraphTransformer(tie_tol=1e-5).transform([distorted]).nbr_shared.tolist() == [0, 0]


def test_settings_pickled_before_the_neighbour_rule_read_as_the_first_rule():
    settings = CrystalGraphTransformer().settings
    state = {k: v for k, v in vars(settings).items() if k not in ("nbr_rule", "tie_tol")}
    old = object.__new__(type(settings))
    old.__setstate__(state)
    assert old.nbr_rule == "first" and old.radius == settings.radius
    assert pickle.loads(pickle.dumps(settings)) == settings
