"""Batches: slices of :class:`~skcgcnn.graphs.CrystalGraphs` -> one disjoint graph of tensors."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .graphs import CrystalGraphs

__all__ = ["GraphBatch", "collate_graphs", "CrystalGraphDataset", "passthrough_collate"]


class GraphBatch:
    """Tensors of several crystals merged into one disjoint graph.

    ``len()`` is the number of crystals (what skorch counts as the batch size);
    :meth:`to` gives the keyword arguments of :meth:`skcgcnn.nn.CGCNN.forward`
    on a device.

    Parameters
    ----------
    tensors : dict of Tensor
        See :func:`collate_graphs`.

    Examples
    --------
    >>> import torch
    >>> batch = GraphBatch({"n_atoms": torch.tensor([2, 3])})
    >>> len(batch), batch.to("cpu")["n_atoms"].tolist()
    (2, [2, 3])
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["n_atoms"])

    def to(self, device, non_blocking: bool = False) -> dict[str, torch.Tensor]:
        """The tensors on ``device``, as a dict."""
        return {k: t.to(device, non_blocking=non_blocking) for k, t in self.tensors.items()}

    def pin_memory(self) -> "GraphBatch":
        """Page-locked copy, used by ``DataLoader(pin_memory=True)`` for asynchronous copies to a GPU."""
        return GraphBatch({k: t.pin_memory() for k, t in self.tensors.items()})


def collate_graphs(graphs: CrystalGraphs) -> GraphBatch:
    """Merge crystals into one disjoint graph with a flat list of weighted edges.

    Neighbour indices are shifted by each crystal's first atom in the batch.

    Parameters
    ----------
    graphs : CrystalGraphs

    Returns
    -------
    GraphBatch
        Holding ``atomic_numbers`` (n_atoms,), ``edge_src`` and ``edge_dst`` (n_edges,)
        atom indices in the batch, ``edge_dist`` (n_edges,) in Å, ``edge_weight``
        (n_edges,) (see :meth:`~skcgcnn.graphs.CrystalGraphs.edge_weights`),
        ``crystal_idx`` (n_atoms,) and ``n_atoms`` (n_crystals,).

    Examples
    --------
    >>> from skcgcnn import CrystalGraphTransformer
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, _ = make_ionic_crystals(3, random_state=0)
    >>> batch = collate_graphs(CrystalGraphTransformer().transform(X))
    >>> batch.tensors["crystal_idx"].unique().tolist(), int(batch.tensors["n_atoms"].sum()) == sum(map(len, X))
    ([0, 1, 2], True)
    """
    n_atoms = graphs.n_atoms
    dst = graphs.nbr_idx + np.repeat(graphs.offsets[:-1], graphs.n_edges)
    return GraphBatch({
        "atomic_numbers": torch.from_numpy(graphs.atomic_numbers.astype(np.int64)),
        "edge_src": torch.from_numpy(graphs.edge_centers()),
        "edge_dst": torch.from_numpy(dst),
        "edge_dist": torch.from_numpy(graphs.nbr_dist),
        "edge_weight": torch.from_numpy(graphs.edge_weights()),
        "crystal_idx": torch.from_numpy(np.repeat(np.arange(len(graphs)), n_atoms)),
        "n_atoms": torch.from_numpy(n_atoms),
    })


def passthrough_collate(batch):
    """Collate function for a dataset whose ``__getitems__`` already returns a whole batch.

    Parameters
    ----------
    batch : tuple
        What :meth:`CrystalGraphDataset.__getitems__` returned.

    Returns
    -------
    tuple
        ``batch`` unchanged.

    Examples
    --------
    >>> passthrough_collate(("graphs", "targets"))
    ('graphs', 'targets')
    """
    return batch


def _ranges(starts: torch.Tensor, counts: torch.Tensor, total: int) -> torch.Tensor:
    """``arange(s, s + c)`` for every pair, concatenated, on the tensors' device (``total`` = sum of counts)."""
    ends = torch.cumsum(counts, 0)
    return torch.arange(total, device=starts.device) + torch.repeat_interleave(starts - (ends - counts), counts,
                                                                               output_size=total)


class _ResidentGraphs:
    """Crystal graphs as tensors on one device, from which batches are gathered on that device.

    Only the batch's crystal indices travel to the device; the sizes that
    shape the batch come from host copies of the per-crystal counts, so
    building a batch never waits for the device.
    """

    def __init__(self, graphs: CrystalGraphs, device):
        batch = collate_graphs(graphs)
        atom_start = torch.from_numpy(graphs.offsets[:-1].astype(np.int64))
        edge_start = torch.from_numpy(graphs.edge_offsets[:-1].astype(np.int64))
        t = batch.tensors
        crystal_of_edge = torch.repeat_interleave(torch.arange(len(graphs)), torch.from_numpy(graphs.n_edges))
        self.n_atoms_host = graphs.n_atoms.astype(np.int64)
        self.n_edges_host = graphs.n_edges.astype(np.int64)
        on = {
            "atomic_numbers": t["atomic_numbers"],
            # crystal-local atom indices fit in 32 bits: 16 bytes per edge on the device instead of 24
            "edge_src": (t["edge_src"] - atom_start[crystal_of_edge]).int(),
            "edge_dst": (t["edge_dst"] - atom_start[crystal_of_edge]).int(),
            "edge_dist": t["edge_dist"],
            "edge_weight": t["edge_weight"],
            "atom_start": atom_start,
            "edge_start": edge_start,
            "n_atoms": torch.from_numpy(self.n_atoms_host),
            "n_edges": torch.from_numpy(self.n_edges_host),
        }
        self.device = torch.device(device)
        self.tensors = {k: v.to(self.device) for k, v in on.items()}

    def batch(self, idx: np.ndarray) -> tuple[GraphBatch, torch.Tensor]:
        """The batch of crystals ``idx``, and ``idx`` on the device (to gather their targets)."""
        n_atoms, n_edges = int(self.n_atoms_host[idx].sum()), int(self.n_edges_host[idx].sum())
        r = self.tensors
        crystals = torch.from_numpy(idx).to(self.device, non_blocking=True)
        atom_counts, edge_counts = r["n_atoms"][crystals], r["n_edges"][crystals]
        atoms = _ranges(r["atom_start"][crystals], atom_counts, n_atoms)
        edges = _ranges(r["edge_start"][crystals], edge_counts, n_edges)
        first_atom = torch.cumsum(atom_counts, 0) - atom_counts
        shift = torch.repeat_interleave(first_atom, edge_counts, output_size=n_edges)
        return GraphBatch({
            "atomic_numbers": r["atomic_numbers"][atoms],
            "edge_src": r["edge_src"][edges].long() + shift,
            "edge_dst": r["edge_dst"][edges].long() + shift,
            "edge_dist": r["edge_dist"][edges],
            "edge_weight": r["edge_weight"][edges],
            "crystal_idx": torch.repeat_interleave(torch.arange(len(idx), device=self.device), atom_counts,
                                                   output_size=n_atoms),
            "n_atoms": atom_counts,
        }), crystals


class CrystalGraphDataset(Dataset):
    """A torch dataset over crystal graphs that builds whole batches at once.

    ``DataLoader`` calls ``__getitems__`` with a batch of indices, so a batch
    is one vectorised gather from the container rather than one Python call
    per crystal; pair it with :func:`passthrough_collate`.

    With a ``device``, the whole data set is copied there once and every
    batch is gathered there with index operations: on a GPU no batch is
    built on the host or copied to the device (the estimators do this by
    default when their ``device`` is a CUDA device).

    Parameters
    ----------
    X : CrystalGraphs
    y : array-like of shape (n_crystals, ...), default=None
    device : str or torch.device, default=None
        Where the data set lives and batches are gathered; ``None``: batches
        are built on the host.

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> from skcgcnn import CrystalGraphTransformer
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(10, random_state=0)
    >>> dataset = CrystalGraphDataset(CrystalGraphTransformer().transform(X), y)
    >>> batch, targets = next(iter(DataLoader(dataset, batch_size=4, collate_fn=passthrough_collate)))
    >>> len(batch), targets.shape
    (4, torch.Size([4]))
    """

    def __init__(self, X: CrystalGraphs, y=None, device=None):
        if not isinstance(X, CrystalGraphs):
            raise TypeError(f"CrystalGraphDataset needs CrystalGraphs, got {type(X).__name__}")
        self.X = X
        self.y = None if y is None else torch.as_tensor(np.asarray(y))
        self.resident = None if device is None else _ResidentGraphs(X, device)
        if self.resident is not None and self.y is not None:
            self.y = self.y.to(self.resident.device)

    def __len__(self) -> int:
        return len(self.X)

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        if self.resident is not None:
            batch, crystals = self.resident.batch(idx)
            return batch, None if self.y is None else self.y[crystals]
        return collate_graphs(self.X[idx]), None if self.y is None else self.y[idx]

    def __getitem__(self, index):
        return self.__getitems__([index])
