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


class CrystalGraphDataset(Dataset):
    """A torch dataset over crystal graphs that builds whole batches at once.

    ``DataLoader`` calls ``__getitems__`` with a batch of indices, so a batch
    is one vectorised gather from the container rather than one Python call
    per crystal; pair it with :func:`passthrough_collate`.

    Parameters
    ----------
    X : CrystalGraphs
    y : array-like of shape (n_crystals, ...), default=None

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

    def __init__(self, X: CrystalGraphs, y=None):
        if not isinstance(X, CrystalGraphs):
            raise TypeError(f"CrystalGraphDataset needs CrystalGraphs, got {type(X).__name__}")
        self.X = X
        self.y = None if y is None else torch.as_tensor(np.asarray(y))

    def __len__(self) -> int:
        return len(self.X)

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        return collate_graphs(self.X[idx]), None if self.y is None else self.y[idx]

    def __getitem__(self, index):
        return self.__getitems__([index])
