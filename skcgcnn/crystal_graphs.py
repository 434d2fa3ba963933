"""The crystal-graph container: :class:`CrystalGraphs`, and :class:`GraphSettings`, the settings it was built with.

Plain numpy arrays (no torch, no pymatgen), so graphs are cheap to pickle, to
slice and to save.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .elements import AtomFeatures

__all__ = ["GraphSettings", "CrystalGraphs", "concat_ranges", "offsets_of", "NBR_RULES", "MAX_RADIUS", "MAX_NUM_NBR",
           "MAX_GAUSSIANS"]


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + c)`` for every ``(s, c)`` pair, without a Python loop.

    Parameters
    ----------
    starts, counts : array-like of int, shape (n,)

    Returns
    -------
    ndarray of int64, shape (sum(counts),)

    Examples
    --------
    >>> concat_ranges([5, 0], [2, 3])
    array([5, 6, 0, 1, 2])
    """
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts - (ends - counts), counts)


#: Neighbour rules accepted by :class:`~skcgcnn.CrystalGraphTransformer` (see its ``nbr_rule``).
NBR_RULES = ("shared", "first")

#: Upper bounds on the settings. Every graph's size grows with them (a cut-off of 1e6 Å or a billion neighbour
#: slots would take the machine, and a model file states them), far above the paper's 8 Å and 12 neighbours.
MAX_RADIUS = 20.0
MAX_NUM_NBR = 256
MAX_GAUSSIANS = 1000


@dataclass(frozen=True)
class GraphSettings:
    """How a set of crystal graphs was built; travels with the graphs to the model.

    Parameters
    ----------
    radius : float
        Neighbour cut-off radius in Å.
    max_num_nbr : int
        Number of neighbour slots per atom (the paper's M).
    dmin : float
        First Gaussian centre of the distance expansion, in Å.
    step : float
        Spacing and width of the Gaussian centres, in Å.
    atom_features : AtomFeatures
        Element -> feature vector table.
    nbr_rule : {"shared", "first"}
        How neighbours tied with the M-th one enter (see :class:`~skcgcnn.CrystalGraphTransformer`).
    tie_tol : float
        Distances within ``tie_tol`` Å of the M-th neighbour's form its shell (``"shared"`` rule).

    Examples
    --------
    >>> from skcgcnn import CrystalGraphTransformer
    >>> settings = CrystalGraphTransformer().settings
    >>> settings.describe()
    "radius=8.0, max_num_nbr=12, dmin=0.0, step=0.2, atom_features='cgcnn', nbr_rule='shared', tie_tol=0.001"
    >>> len(settings.gaussian_centers)
    41
    """

    radius: float
    max_num_nbr: int
    dmin: float
    step: float
    atom_features: AtomFeatures
    nbr_rule: str
    tie_tol: float

    def __post_init__(self):
        if not 0 < self.radius <= MAX_RADIUS:
            raise ValueError(f"radius must lie in (0, {MAX_RADIUS:g}] Å, got {self.radius}")
        if int(self.max_num_nbr) != self.max_num_nbr or not 1 <= self.max_num_nbr <= MAX_NUM_NBR:
            raise ValueError(f"max_num_nbr must be an integer from 1 to {MAX_NUM_NBR}, got {self.max_num_nbr}")
        if not self.step > 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if not 0 <= self.dmin < self.radius:
            raise ValueError(f"dmin must lie in [0, radius), got {self.dmin}")
        if (self.radius - self.dmin) / self.step + 1 > MAX_GAUSSIANS:
            raise ValueError(f"step={self.step} gives more than {MAX_GAUSSIANS} Gaussian centres from dmin to radius; "
                             "choose a larger step")
        if self.nbr_rule not in NBR_RULES:
            raise ValueError(f"nbr_rule must be one of {NBR_RULES}, got {self.nbr_rule!r}")
        if not 0 <= self.tie_tol < self.step:
            raise ValueError(f"tie_tol must lie in [0, step), got {self.tie_tol}")

    def __setstate__(self, state):
        # Models saved before the neighbour rule existed were built with the first-M rule.
        object.__setattr__(self, "__dict__", {"nbr_rule": "first", "tie_tol": 0.0, **state})

    @property
    def gaussian_centers(self) -> np.ndarray:
        """Centres of the Gaussian distance expansion, ``dmin`` to ``radius`` by ``step``."""
        n = int(round((self.radius - self.dmin) / self.step)) + 1
        return np.linspace(self.dmin, self.dmin + (n - 1) * self.step, n)

    def describe(self) -> str:
        return (
            f"radius={self.radius}, max_num_nbr={self.max_num_nbr}, dmin={self.dmin}, "
            f"step={self.step}, atom_features={self.atom_features.name!r}, "
            f"nbr_rule={self.nbr_rule!r}, tie_tol={self.tie_tol}"
        )


class CrystalGraphs:
    """A batch of crystal graphs stored as a few concatenated arrays (CSR-like).

    Crystal ``k`` owns atoms ``offsets[k]:offsets[k + 1]`` of every per-atom
    array and edges ``edge_offsets[k]:edge_offsets[k + 1]`` of every per-edge
    array. Within a crystal, the edges are grouped by centre atom (in atom
    order, ``nbr_count`` per atom) and sorted by distance. The last
    ``nbr_shared`` edges of an atom form a shell tied with its M-th neighbour
    that shares the slots left by the nearer ones (see :meth:`edge_weights`);
    every other edge has weight 1. Neighbour indices are local to their
    crystal. Indexing with an int, slice, integer array or boolean mask
    returns a new ``CrystalGraphs``, so scikit-learn's CV splitters and
    searches keep the container intact.

    Parameters
    ----------
    atomic_numbers : ndarray of uint8, shape (n_atoms,)
    nbr_count : ndarray of int32, shape (n_atoms,)
        Edges of each atom.
    nbr_shared : ndarray of int32, shape (n_atoms,)
        How many of them (the farthest) share the remaining slots; 0 where no
        neighbour is tied with the M-th.
    nbr_idx : ndarray of int32, shape (n_edges,)
        Local index of each edge's neighbour atom.
    nbr_dist : ndarray of float32, shape (n_edges,)
        Edge length in Å.
    offsets : ndarray of int64, shape (n_crystals + 1,)
        Atom offsets of the crystals.
    edge_offsets : ndarray of int64, shape (n_crystals + 1,)
        Edge offsets of the crystals.
    settings : GraphSettings

    Examples
    --------
    >>> from skcgcnn import CrystalGraphTransformer
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, _ = make_ionic_crystals(10, random_state=0)
    >>> graphs = CrystalGraphTransformer().transform(X)
    >>> len(graphs), len(graphs[2:5]), graphs[[0, 3]].n_atoms.tolist() == [len(X[0]), len(X[3])]
    (10, 3, True)
    """

    #: Names of the arrays that hold a batch of graphs.
    ARRAYS = ("atomic_numbers", "nbr_count", "nbr_shared", "nbr_idx", "nbr_dist", "offsets", "edge_offsets")

    def __init__(self, atomic_numbers, nbr_count, nbr_shared, nbr_idx, nbr_dist, offsets, edge_offsets,
                 settings: GraphSettings):
        self.atomic_numbers = atomic_numbers
        self.nbr_count = nbr_count
        self.nbr_shared = nbr_shared
        self.nbr_idx = nbr_idx
        self.nbr_dist = nbr_dist
        self.offsets = offsets
        self.edge_offsets = edge_offsets
        self.settings = settings

    @property
    def shape(self) -> tuple[int]:
        return (len(self.offsets) - 1,)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_atoms(self) -> np.ndarray:
        """Number of atoms of each crystal."""
        return np.diff(self.offsets)

    @property
    def n_edges(self) -> np.ndarray:
        """Number of edges of each crystal."""
        return np.diff(self.edge_offsets)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(getattr(self, name).nbytes for name in self.ARRAYS)

    def atom_feature_vectors(self) -> np.ndarray:
        """Feature vector of every atom, shape ``(n_atoms, n_features)``."""
        return self.settings.atom_features.table[self.atomic_numbers]

    def edge_centers(self) -> np.ndarray:
        """Index (into all atoms of the container) of each edge's centre atom, shape ``(n_edges,)``."""
        return np.repeat(np.arange(len(self.nbr_count)), self.nbr_count)

    def edge_weights(self) -> np.ndarray:
        """Weight of each edge in the convolution's neighbour sum, shape ``(n_edges,)``.

        1 for every edge, except the ``s = nbr_shared`` edges of an atom's
        tied shell: they share the ``M - (nbr_count - s)`` slots its strictly
        nearer neighbours left, equally. Every atom's weights add up to
        ``min(M, neighbours within radius)``.

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> from skcgcnn import CrystalGraphTransformer
        >>> bcc = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        >>> g = CrystalGraphTransformer().transform([bcc])
        >>> g.nbr_count.tolist(), g.nbr_shared.tolist(), [round(float(w), 3) for w in g.edge_weights()[7:14]]
        ([14, 14], [6, 6], [1.0, 0.667, 0.667, 0.667, 0.667, 0.667, 0.667])
        """
        count = self.nbr_count.astype(np.int64)
        shared = self.nbr_shared.astype(np.int64)
        tied = np.flatnonzero(shared)
        weights = np.ones(int(count.sum()), dtype=np.float32)
        if len(tied):
            first = np.cumsum(count) - count
            share = (self.settings.max_num_nbr - (count[tied] - shared[tied])) / shared[tied]
            edges = concat_ranges(first[tied] + count[tied] - shared[tied], shared[tied])
            weights[edges] = np.repeat(share, shared[tied])
        return weights

    def __repr__(self) -> str:
        return (
            f"CrystalGraphs(n_crystals={len(self)}, n_atoms={len(self.atomic_numbers)}, "
            f"n_edges={len(self.nbr_idx)}, {self.settings.describe()})"
        )

    def __getitem__(self, key) -> "CrystalGraphs":
        n = len(self)
        if isinstance(key, tuple) and len(key) == 2 and key[1] is Ellipsis:
            key = key[0]  # scikit-learn indexes arrays as X[key, ...]
        if isinstance(key, (int, np.integer)):
            if not -n <= key < n:
                raise IndexError(f"index {key} is out of range for {n} crystals")
            idx = np.array([key % n])
        elif isinstance(key, slice):
            idx = np.arange(n)[key]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"boolean index of shape {idx.shape} does not match {n} crystals")
                idx = np.flatnonzero(idx)
            elif idx.size == 0:
                idx = idx.astype(np.int64)
            elif not np.issubdtype(idx.dtype, np.integer):
                raise IndexError(f"crystal indices must be integers or booleans, got {idx.dtype}")
            if idx.size and (idx.max() >= n or idx.min() < -n):
                raise IndexError(f"crystal index out of range for {n} crystals")
            idx = idx.ravel() % max(n, 1)
        atom_counts, edge_counts = self.n_atoms[idx], self.n_edges[idx]
        atoms = concat_ranges(self.offsets[idx], atom_counts)
        edges = concat_ranges(self.edge_offsets[idx], edge_counts)
        return CrystalGraphs(
            self.atomic_numbers[atoms],
            self.nbr_count[atoms],
            self.nbr_shared[atoms],
            self.nbr_idx[edges],
            self.nbr_dist[edges],
            offsets_of(atom_counts),
            offsets_of(edge_counts),
            self.settings,
        )

    @classmethod
    def concatenate(cls, parts: list["CrystalGraphs"]) -> "CrystalGraphs":
        """Join several containers built with the same settings, in order."""
        if not parts:
            raise ValueError("nothing to concatenate")
        settings = parts[0].settings
        if any(p.settings != settings for p in parts[1:]):
            raise ValueError("cannot concatenate crystal graphs built with different settings")
        joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.ARRAYS[:5]}
        return cls(
            **joined,
            offsets=offsets_of(np.concatenate([p.n_atoms for p in parts])),
            edge_offsets=offsets_of(np.concatenate([p.n_edges for p in parts])),
            settings=settings,
        )


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive blocks of ``counts`` items, and the total at the end.

    Examples
    --------
    >>> offsets_of(np.array([2, 0, 3])).tolist()
    [0, 2, 2, 5]
    """
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets
