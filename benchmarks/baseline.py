"""A straightforward CGCNN implementation kept as the speed baseline of ``train.py``.

Same architecture as ``skcgcnn.nn.CGCNN`` on the paper's padded graphs (each
atom's first M neighbours, as the original code builds them), written the
direct way: each sample is collated on its own (features looked up and
Gaussian-expanded per crystal), the convolution applies one Linear to the
concatenation ``[v_i, v_j, u_ij]`` on every (atom, neighbour slot) pair, and
pooling loops over crystals in Python. The Gaussians are computed in float64
and cast to float32, so their far tails stay subnormal numbers (slow on x86
CPUs); ``train.py --flush-denormal`` times it without that cost.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset


def padded(graphs, m: int):
    """Neighbour indices, distances and mask as (n_atoms, m) arrays: each atom's first m edges, unweighted."""
    count = graphs.nbr_count.astype(np.int64)
    rank = np.arange(len(graphs.nbr_idx)) - np.repeat(np.cumsum(count) - count, count)
    keep = rank < m
    rows, cols = graphs.edge_centers()[keep], rank[keep]
    idx = np.zeros((len(count), m), dtype=np.int64)
    dist = np.zeros((len(count), m), dtype=np.float32)
    mask = np.zeros((len(count), m), dtype=bool)
    idx[rows, cols], dist[rows, cols], mask[rows, cols] = graphs.nbr_idx[keep], graphs.nbr_dist[keep], True
    return idx, dist, mask


class SampleDataset(Dataset):
    """One crystal per item: (atom features, expanded neighbour features, neighbour indices, mask), y."""

    def __init__(self, graphs, y):
        self.graphs = graphs
        self.y = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(len(graphs), -1))
        s = graphs.settings
        self.table = s.atom_features.table
        self.centers = s.gaussian_centers
        self.width = s.step

    def __len__(self):
        return len(self.graphs)

    def __getitem__(self, i):
        g = self.graphs[i]
        idx, dist, mask = padded(g, g.settings.max_num_nbr)
        expanded = np.exp(-(((dist[..., None] - self.centers) / self.width) ** 2)).astype(np.float32)
        return (
            torch.from_numpy(self.table[g.atomic_numbers]),
            torch.from_numpy(expanded),
            torch.from_numpy(idx),
            torch.from_numpy(mask),
        ), self.y[i]


def collate_samples(samples):
    atoms, nbrs, idxs, masks, crystals, ys = [], [], [], [], [], []
    start = 0
    for (atom, nbr, idx, mask), y in samples:
        n = len(atom)
        atoms.append(atom)
        nbrs.append(nbr)
        idxs.append(idx + start)
        masks.append(mask)
        crystals.append(torch.arange(start, start + n))
        ys.append(y)
        start += n
    return (torch.cat(atoms), torch.cat(nbrs), torch.cat(idxs), torch.cat(masks), crystals), torch.stack(ys)


class ConcatConv(nn.Module):
    def __init__(self, atom_fea_len, nbr_fea_len):
        super().__init__()
        self.fc = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn_edge = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn_sum = nn.BatchNorm1d(atom_fea_len)

    def forward(self, v, nbr_fea, nbr_idx, mask):
        n, m = nbr_idx.shape
        z = torch.cat([v[:, None, :].expand(n, m, v.shape[1]), v[nbr_idx], nbr_fea], dim=2)
        z = self.bn_edge(self.fc(z).view(n * m, -1)).view(n, m, -1)
        gate, core = z.chunk(2, dim=2)
        messages = torch.sigmoid(gate) * F.softplus(core) * mask[..., None]
        return F.softplus(v + self.bn_sum(messages.sum(dim=1)))


class NaiveCGCNN(nn.Module):
    def __init__(self, orig_atom_fea_len, nbr_fea_len, atom_fea_len=64, n_conv=3, h_fea_len=128):
        super().__init__()
        self.embedding = nn.Linear(orig_atom_fea_len, atom_fea_len)
        self.convs = nn.ModuleList(ConcatConv(atom_fea_len, nbr_fea_len) for _ in range(n_conv))
        self.conv_to_fc = nn.Linear(atom_fea_len, h_fea_len)
        self.out = nn.Linear(h_fea_len, 1)

    def forward(self, atom_fea, nbr_fea, nbr_idx, mask, crystals):
        v = self.embedding(atom_fea)
        for conv in self.convs:
            v = conv(v, nbr_fea, nbr_idx, mask)
        pooled = torch.stack([v[idx].mean(dim=0) for idx in crystals])
        return self.out(F.softplus(self.conv_to_fc(F.softplus(pooled))))


def train_epochs(graphs, y, epochs, batch_size=64, lr=1e-3, seed=0):
    """Train the baseline with AdamW and MSE on standardised targets; return per-epoch seconds."""
    import time

    torch.manual_seed(seed)
    y = np.asarray(y, dtype=np.float64)
    dataset = SampleDataset(graphs, (y - y.mean()) / y.std())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_samples)
    model = NaiveCGCNN(dataset.table.shape[1], len(dataset.centers))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    durations = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for inputs, target in loader:
            optimizer.zero_grad()
            loss = F.mse_loss(model(*inputs), target)
            loss.backward()
            optimizer.step()
        durations.append(time.perf_counter() - start)
    return durations
