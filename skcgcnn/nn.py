"""The CGCNN model in plain PyTorch (no pymatgen, no scikit-learn)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GaussianExpansion", "CGConv", "CGCNN", "POOLINGS", "GAUSSIAN_CUTOFF"]

#: Pooling names accepted by :class:`CGCNN`.
POOLINGS = ("mean", "sum", "max", "linear")


#: Gaussians are zero beyond this many squared widths from their centre (``exp(-80)`` is about 1.8e-35).
#: Left as they are, the tails below float32's smallest normal number (about 1.2e-38) are subnormal
#: numbers, which x86 processors handle in slow microcode: they made ``exp`` and the matrix products
#: over the expanded distances several times slower, and a CPU training epoch almost twice as long.
GAUSSIAN_CUTOFF = 80.0


class GaussianExpansion(nn.Module):
    """Expand distances on Gaussians centred ``dmin, dmin + step, ..., radius``, of width ``step``.

    A Gaussian further than ``sqrt(GAUSSIAN_CUTOFF)`` (about 8.9) widths from
    a distance is exactly zero there instead of a number below 1e-35.

    Parameters
    ----------
    dmin, radius, step : float
        First centre, last centre and spacing, in Å.

    Examples
    --------
    >>> expand = GaussianExpansion(0.0, 8.0, 0.2)
    >>> u = expand(torch.tensor([2.0, 3.1]))
    >>> tuple(u.shape), round(float(u[0, 10]), 6)
    ((2, 41), 1.0)
    """

    def __init__(self, dmin: float = 0.0, radius: float = 8.0, step: float = 0.2):
        super().__init__()
        n = int(round((radius - dmin) / step)) + 1
        self.register_buffer("centers", torch.linspace(dmin, dmin + (n - 1) * step, n))
        self.width = step

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        sq = ((distances[..., None] - self.centers) / self.width).square_()
        # clamping first also keeps exp off its slow path for arguments that underflow
        return torch.exp(sq.clamp(max=GAUSSIAN_CUTOFF).neg_()).masked_fill(sq > GAUSSIAN_CUTOFF, 0.0)


def _batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, channels: slice = slice(None)) -> torch.Tensor:
    """Apply ``bn``, or its ``channels`` alone, to ``x``; in eval mode as one fused multiply-add.

    With running statistics, batch normalisation is an affine map, and
    ``addcmul`` computes it several times faster than PyTorch's CPU kernel
    does for 2-D inputs. In training mode the batch statistics normalise
    ``x`` and update the running ones of ``channels`` (``_count_batch``
    counts the batch). A batch of fewer than two rows (a last batch
    holding one crystal of one atom) has no variance to normalise by: it
    is normalised with the running statistics, which it leaves as they
    are, instead of stopping training.
    """
    weight, bias = bn.weight[channels], bn.bias[channels]
    if bn.running_mean is None:
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, bn.eps)
    mean, var = bn.running_mean[channels], bn.running_var[channels]
    if bn.training and x.shape[0] > 1:
        return F.batch_norm(x, mean, var, weight, bias, True, bn.momentum, bn.eps)
    scale = weight * torch.rsqrt(var + bn.eps)
    return torch.addcmul(bias - mean * scale, x, scale)


def _count_batch(bn: nn.BatchNorm1d, x: torch.Tensor) -> None:
    """Count a training batch in ``bn.num_batches_tracked``, as ``bn(x)`` does."""
    if bn.training and bn.num_batches_tracked is not None and x.shape[0] > 1:
        bn.num_batches_tracked.add_(1)


class CGConv(nn.Module):
    """One gated crystal graph convolution.

    For atom ``i`` with neighbours ``j``: ``z = W [v_i, v_j, u_ij] + b``,
    batch-normalised and split into a filter and a core;
    ``v_i <- softplus(v_i + BN(sum_j w_ij sigmoid(filter) * softplus(core)))``,
    where the edge weights ``w_ij`` are 1 except on a neighbour shell that
    shares the last slots (see :meth:`skcgcnn.graphs.CrystalGraphs.edge_weights`).
    The linear map is applied in its factorised form
    ``W_1 v_i + W_2 v_j + W_3 u_ij``: the atom terms once per atom, only the
    edge term per edge.

    Parameters
    ----------
    atom_fea_len : int
        Length of the atom vectors ``v``.
    nbr_fea_len : int
        Length of the edge vectors ``u`` (number of Gaussians).

    Examples
    --------
    >>> conv = CGConv(atom_fea_len=8, nbr_fea_len=41)
    >>> v, u = torch.randn(3, 8), torch.randn(4, 41)
    >>> src, dst = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 0])
    >>> tuple(conv(v, u, src, dst).shape)
    (3, 8)
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int):
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.fc = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn_edge = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn_sum = nn.BatchNorm1d(atom_fea_len)

    def forward(
        self,
        v: torch.Tensor,
        u: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        f = self.atom_fea_len
        weight = self.fc.weight
        atom_weight = torch.cat((weight[:, :f], weight[:, f : 2 * f]), dim=0)
        self_term, nbr_term = F.linear(v, atom_weight).split(2 * f, dim=1)
        self_term = self_term + self.fc.bias
        # The filter and the core are computed apart: each is contiguous for the element-wise work that
        # follows, and the backward pass needs no concatenation of their gradients.
        gate, core = (self._edge_half(half, self_term, nbr_term, u, edge_src, edge_dst)
                      for half in (slice(0, f), slice(f, 2 * f)))
        messages = torch.sigmoid(gate) * F.softplus(core)
        if edge_weight is not None:
            messages = messages * edge_weight[:, None].to(messages.dtype)
        summed = messages.new_zeros((v.shape[0], f)).index_add_(0, edge_src, messages)
        _count_batch(self.bn_edge, gate)
        _count_batch(self.bn_sum, summed)
        return F.softplus(v + _batch_norm(self.bn_sum, summed))

    def _edge_half(self, rows, self_term, nbr_term, u, edge_src, edge_dst):
        """Rows ``rows`` of ``W [v_i, v_j, u_ij] + b`` for every edge, batch-normalised."""
        # index_select rather than x[idx]: its backward is a scatter-add, while
        # advanced indexing backpropagates through a much slower index_put.
        z = self_term[:, rows].index_select(0, edge_src).add_(nbr_term[:, rows].index_select(0, edge_dst))
        w_u = self.fc.weight[rows, 2 * self.atom_fea_len :].t()
        # Adding the edge term in place saves a copy of z; autocast does not cast in-place products,
        # so under autocast it stays out of place.
        z = torch.addmm(z, u, w_u) if torch.is_autocast_enabled(z.device.type) else z.addmm_(u, w_u)
        return _batch_norm(self.bn_edge, z, rows)


class CGCNN(nn.Module):
    """Crystal graph convolutional neural network (Xie & Grossman, PRL 2018).

    Atom vectors are looked up from ``atom_feature_table`` and embedded, updated
    by ``n_conv`` :class:`CGConv` layers, pooled per crystal and passed through
    ``n_h`` hidden layers to ``n_out`` outputs. With ``pooling="linear"`` the
    hidden layers act on every atom and the per-atom outputs are averaged, so
    each prediction is the mean of per-site contributions.

    Parameters
    ----------
    atom_feature_table : array-like of shape (n_elements, n_features)
        Row ``Z`` is the feature vector of atomic number ``Z``.
    dmin, radius, step : float
        Gaussian distance expansion (see :class:`GaussianExpansion`).
    atom_fea_len : int, default=64
    n_conv : int, default=3
    h_fea_len : int, default=128
    n_h : int, default=1
    n_out : int, default=1
        Targets (regression) or classes (logits).
    pooling : {"mean", "sum", "max", "linear"}, default="mean"
    dropout : float, default=0.0
        Dropout before the output layer.

    Examples
    --------
    >>> from skcgcnn import CrystalGraphTransformer
    >>> from skcgcnn.batching import collate_graphs
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, _ = make_ionic_crystals(4, random_state=0)
    >>> graphs = CrystalGraphTransformer().transform(X)
    >>> model = CGCNN(graphs.settings.atom_features.table).eval()
    >>> tuple(model(**collate_graphs(graphs).tensors).shape)
    (4, 1)
    """

    def __init__(
        self,
        atom_feature_table,
        dmin: float = 0.0,
        radius: float = 8.0,
        step: float = 0.2,
        atom_fea_len: int = 64,
        n_conv: int = 3,
        h_fea_len: int = 128,
        n_h: int = 1,
        n_out: int = 1,
        pooling: str = "mean",
        dropout: float = 0.0,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if n_h < 1:
            raise ValueError(f"n_h must be at least 1, got {n_h}")
        table = torch.tensor(atom_feature_table, dtype=torch.float32)  # a copy the module owns
        self.register_buffer("atom_table", table)
        self.pooling = pooling
        self.embedding = nn.Linear(table.shape[1], atom_fea_len)
        self.expansion = GaussianExpansion(dmin, radius, step)
        n_gauss = len(self.expansion.centers)
        self.convs = nn.ModuleList(CGConv(atom_fea_len, n_gauss) for _ in range(n_conv))
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        self.hidden = nn.ModuleList(nn.Linear(h_fea_len, h_fea_len) for _ in range(n_h - 1))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(h_fea_len, n_out)

    def atom_vectors(self, atomic_numbers, edge_src, edge_dst, edge_dist, edge_weight=None) -> torch.Tensor:
        """Atom vectors after the convolutions, shape (n_atoms, atom_fea_len).

        ``edge_weight`` (n_edges,) weighs each edge in the neighbour sums; ``None`` weighs all by 1.
        """
        # Embedding the table once and gathering equals embedding every atom's vector.
        v = self.embedding(self.atom_table).index_select(0, atomic_numbers)
        u = self.expansion(edge_dist)
        for conv in self.convs:
            v = conv(v, u, edge_src, edge_dst, edge_weight)
        return v

    def _pool(self, x, crystal_idx, n_atoms, how):
        out = x.new_zeros((n_atoms.shape[0], x.shape[1]))
        if how == "max":
            index = crystal_idx[:, None].expand_as(x)
            return out.scatter_reduce_(0, index, x, reduce="amax", include_self=False)
        out.index_add_(0, crystal_idx, x)
        return out if how == "sum" else out / n_atoms[:, None].to(x.dtype)

    def _first_hidden(self, x):
        return F.softplus(self.conv_to_fc(F.softplus(x)))

    def _head(self, h):
        for layer in self.hidden:
            h = F.softplus(layer(h))
        return self.out(self.dropout(h))

    def crystal_features(self, atomic_numbers, edge_src, edge_dst, edge_dist, crystal_idx, n_atoms, edge_weight=None):
        """Crystal vectors after pooling and the first hidden layer, shape (n_crystals, h_fea_len)."""
        v = self.atom_vectors(atomic_numbers, edge_src, edge_dst, edge_dist, edge_weight)
        if self.pooling == "linear":
            return self._pool(self._first_hidden(v), crystal_idx, n_atoms, "mean")
        return self._first_hidden(self._pool(v, crystal_idx, n_atoms, self.pooling))

    def site_contributions(self, atomic_numbers, edge_src, edge_dst, edge_dist, crystal_idx, n_atoms, edge_weight=None):
        """Per-atom outputs whose crystal means are the predictions (``pooling="linear"`` only)."""
        if self.pooling != "linear":
            raise ValueError(f"site contributions need pooling='linear', this model uses {self.pooling!r}")
        v = self.atom_vectors(atomic_numbers, edge_src, edge_dst, edge_dist, edge_weight)
        return self._head(self._first_hidden(v))

    def forward(self, atomic_numbers, edge_src, edge_dst, edge_dist, crystal_idx, n_atoms, edge_weight=None):
        graph = (atomic_numbers, edge_src, edge_dst, edge_dist, crystal_idx, n_atoms, edge_weight)
        if self.pooling == "linear":
            return self._pool(self.site_contributions(*graph), crystal_idx, n_atoms, "mean")
        return self._head(self.crystal_features(*graph))
