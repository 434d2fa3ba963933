import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch.nn import functional as F

from skcgcnn import CrystalGraphTransformer
from skcgcnn.batching import collate_graphs
from skcgcnn.nn import CGCNN, CGConv, GaussianExpansion


def model_for(graphs, **kw):
    s = graphs.settings
    torch.manual_seed(0)
    model = CGCNN(s.atom_features.table, s.dmin, s.radius, s.step, **kw)
    model.eval()
    # non-trivial running statistics so that eval-mode BatchNorm is not the identity
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def predict(model, graphs):
    with torch.no_grad():
        return model(**collate_graphs(graphs).tensors).numpy()


def test_gaussian_expansion_matches_formula():
    g = GaussianExpansion(0.0, 8.0, 0.2)
    assert len(g.centers) == 41
    d = torch.tensor([0.0, 1.3, 7.9])
    expected = np.exp(-((d.numpy()[:, None] - np.linspace(0, 8, 41)) ** 2) / 0.2**2)
    np.testing.assert_allclose(g(d).numpy(), expected, rtol=1e-5, atol=1e-7)


def test_gaussian_tails_are_zero_not_subnormal():
    """Subnormal floats slow CPU arithmetic several-fold; the far tails are cut to exact zeros instead."""
    g = GaussianExpansion(0.0, 8.0, 0.2)
    d = torch.linspace(0.0, 9.0, 9001)
    u = g(d)
    tiny = torch.finfo(u.dtype).tiny
    assert not ((u > 0) & (u < tiny)).any()
    far = ((d[:, None] - g.centers) / 0.2) ** 2 > 80.0
    assert far.any() and (u[far] == 0).all()
    formula = torch.exp(-(((d[:, None] - g.centers) / 0.2) ** 2))
    assert torch.equal(u[~far], formula[~far]) and (u[~far] > 0).all()
    exact = torch.exp(-(((d.double()[:, None] - g.centers.double()) / 0.2) ** 2))
    assert exact[far].max() < 2e-35


def test_factorised_convolution_equals_linear_over_concatenation():
    torch.manual_seed(1)
    conv = CGConv(8, 5)
    conv.train()
    v = torch.randn(6, 8)
    u = torch.rand(11, 5)
    src = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5])
    dst = torch.tensor([1, 2, 0, 3, 4, 5, 0, 1, 2, 3, 0])
    conv2 = CGConv(8, 5)
    conv2.train()
    before = {key: value.clone() for key, value in conv.state_dict().items()}
    conv2.load_state_dict(before)
    z = conv.fc(torch.cat([v[src], v[dst], u], dim=1))
    gate, core = conv.bn_edge(z).chunk(2, dim=1)
    summed = torch.zeros_like(v).index_add_(0, src, torch.sigmoid(gate) * F.softplus(core))
    reference = F.softplus(v + conv.bn_sum(summed))
    torch.testing.assert_close(conv2(v, u, src, dst), reference, rtol=1e-5, atol=1e-5)
    # the running statistics and the batch count move as those of the plain batch norms
    after = conv.state_dict()
    for key, value in conv2.state_dict().items():
        torch.testing.assert_close(value, after[key], rtol=1e-5, atol=1e-6, msg=key)
    assert int(conv2.bn_edge.num_batches_tracked) == int(conv2.bn_sum.num_batches_tracked) == 1
    assert not torch.equal(after["bn_edge.running_var"], before["bn_edge.running_var"])


def test_convolution_sums_over_real_neighbours_with_their_weights():
    """Equals a per-atom loop over real neighbours, a shared shell weighted (here Ti's 8 Sr share 6 slots)."""
    s = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    lonely = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.warns(UserWarning, match="fewer than"):
        graphs = CrystalGraphTransformer(radius=4.5).transform([s, lonely])
    assert graphs.nbr_shared.any() and (graphs.nbr_count < 12).any()
    model = model_for(graphs, n_conv=1)
    batch = collate_graphs(graphs).tensors
    conv = model.convs[0]
    v = model.embedding(model.atom_table)[batch["atomic_numbers"]]
    out = torch.zeros_like(v)
    centres, weights = graphs.edge_centers(), graphs.edge_weights()
    shift = np.repeat(graphs.offsets[:-1], graphs.n_atoms)
    with torch.no_grad():
        for i in range(len(v)):
            terms = []
            for e in np.flatnonzero(centres == i):
                j = int(graphs.nbr_idx[e] + shift[i])
                u = model.expansion(torch.tensor([float(graphs.nbr_dist[e])]))
                z = conv.fc(torch.cat([v[i : i + 1], v[j][None], u], dim=1))
                gate, core = conv.bn_edge(z).chunk(2, dim=1)
                terms.append(float(weights[e]) * torch.sigmoid(gate) * F.softplus(core))
            total = torch.cat(terms).sum(0, keepdim=True)
            out[i] = F.softplus(v[i : i + 1] + conv.bn_sum(total))[0]
        ours = conv(v, model.expansion(batch["edge_dist"]), batch["edge_src"], batch["edge_dst"], batch["edge_weight"])
    torch.testing.assert_close(ours, out, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def perovskite():
    return Structure(
        Lattice.cubic(3.9),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def test_invariances_in_eval_mode(perovskite):
    s = perovskite.copy()
    s.perturb(0.1, min_distance=0.05)
    rotated = Structure(
        Lattice(s.lattice.matrix @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)),
        s.species,
        s.frac_coords,
    )
    translated = s.copy()
    translated.translate_sites(list(range(len(s))), [0.31, 0.12, 0.77])
    permuted = Structure.from_sites([s[i] for i in [3, 0, 4, 2, 1]])
    supercell = s * (2, 1, 1)
    t = CrystalGraphTransformer()
    graphs = t.transform([s, rotated, translated, permuted, supercell])
    for pooling in ("mean", "max"):
        y = predict(model_for(graphs, pooling=pooling), graphs)
        np.testing.assert_allclose(y[1:], np.repeat(y[:1], 4, axis=0), atol=1e-5)


def test_sum_pooling_doubles_on_the_supercell_trunk(perovskite):
    graphs = CrystalGraphTransformer().transform([perovskite, perovskite * (2, 1, 1)])
    model = model_for(graphs, pooling="sum")
    batch = collate_graphs(graphs).tensors
    with torch.no_grad():
        v = model.atom_vectors(batch["atomic_numbers"], batch["edge_src"], batch["edge_dst"], batch["edge_dist"],
                               batch["edge_weight"])
        pooled = model._pool(v, batch["crystal_idx"], batch["n_atoms"], "sum")
    torch.testing.assert_close(pooled[1], 2 * pooled[0], rtol=1e-5, atol=1e-4)


def test_batch_of_one_and_hundred_atom_crystals_equals_separate_predictions(perovskite):
    small = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])
    big = perovskite * (4, 5, 1)
    assert len(big) == 100
    graphs = CrystalGraphTransformer().transform([small, big, small])
    model = model_for(graphs, n_out=2)
    together = predict(model, graphs)
    assert together.shape == (3, 2)
    for k in range(3):
        np.testing.assert_allclose(predict(model, graphs[[k]]), together[k : k + 1], rtol=1e-5, atol=1e-6)


def test_linear_pooling_is_the_mean_of_site_contributions(perovskite):
    graphs = CrystalGraphTransformer().transform([perovskite, perovskite * (1, 1, 2)])
    model = model_for(graphs, pooling="linear")
    batch = collate_graphs(graphs).tensors
    with torch.no_grad():
        sites = model.site_contributions(**batch)
        y = model(**batch)
    torch.testing.assert_close(y[0], sites[:5].mean(0))
    torch.testing.assert_close(y[1], sites[5:].mean(0))
    with pytest.raises(ValueError, match="pooling='linear'"):
        model_for(graphs).site_contributions(**batch)


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="pooling"):
        CGCNN(np.zeros((3, 2)), pooling="median")
    with pytest.raises(ValueError, match="n_h"):
        CGCNN(np.zeros((3, 2)), n_h=0)


def test_eval_batch_norm_as_multiply_add_equals_batch_norm():
    from skcgcnn.nn import _batch_norm as batch_norm

    bn = torch.nn.BatchNorm1d(6)
    for _ in range(3):
        bn(torch.randn(50, 6) * 3 + 1)
    bn.weight.data.uniform_(0.5, 2.0)
    bn.bias.data.uniform_(-1.0, 1.0)
    bn.eval()
    x = torch.randn(40, 6)
    torch.testing.assert_close(batch_norm(bn, x), bn(x))
    bn.train()
    torch.testing.assert_close(batch_norm(bn, x), bn(x))


def test_a_single_row_in_training_is_normalised_with_the_running_statistics():
    from skcgcnn.nn import _batch_norm as batch_norm

    bn = torch.nn.BatchNorm1d(4)
    bn(torch.randn(30, 4) * 2 + 1)
    before = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(1, 4)
    out = batch_norm(bn, x)
    bn.eval()
    torch.testing.assert_close(out, bn(x))
    torch.testing.assert_close((bn.running_mean, bn.running_var), before)
    assert batch_norm(bn.train(), torch.zeros(0, 4)).shape == (0, 4)
