"""Crystal graphs: the :class:`CrystalGraphs` container and the transformer that builds it.

This module needs numpy and pymatgen only (no torch), so featurizing stays cheap
to pickle and to run in joblib workers.
"""

from __future__ import annotations

import warnings
from os import PathLike
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from pymatgen.optimization.neighbors import find_points_in_spheres
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from .elements import AtomFeatures
from .structures import as_input_list, as_structure, chunk_size

__all__ = ["GraphSettings", "CrystalGraphs", "CrystalGraphTransformer", "concat_ranges"]


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


@dataclass(frozen=True)
class GraphSettings:
    """How a set of crystal graphs was built; travels with the graphs to the model.

    Parameters
    ----------
    radius : float
        Neighbour cut-off radius in Å.
    max_num_nbr : int
        Largest number of neighbours kept per atom (the nearest ones).
    dmin : float
        First Gaussian centre of the distance expansion, in Å.
    step : float
        Spacing and width of the Gaussian centres, in Å.
    atom_features : AtomFeatures
        Element -> feature vector table.

    Examples
    --------
    >>> settings = CrystalGraphTransformer().settings
    >>> settings.describe()
    "radius=8.0, max_num_nbr=12, dmin=0.0, step=0.2, atom_features='cgcnn'"
    >>> len(settings.gaussian_centers)
    41
    """

    radius: float
    max_num_nbr: int
    dmin: float
    step: float
    atom_features: AtomFeatures

    def __post_init__(self):
        if not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius}")
        if int(self.max_num_nbr) != self.max_num_nbr or self.max_num_nbr < 1:
            raise ValueError(f"max_num_nbr must be a positive integer, got {self.max_num_nbr}")
        if not self.step > 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if not 0 <= self.dmin < self.radius:
            raise ValueError(f"dmin must lie in [0, radius), got {self.dmin}")

    @property
    def gaussian_centers(self) -> np.ndarray:
        """Centres of the Gaussian distance expansion, ``dmin`` to ``radius`` by ``step``."""
        n = int(round((self.radius - self.dmin) / self.step)) + 1
        return np.linspace(self.dmin, self.dmin + (n - 1) * self.step, n)

    def describe(self) -> str:
        return (
            f"radius={self.radius}, max_num_nbr={self.max_num_nbr}, dmin={self.dmin}, "
            f"step={self.step}, atom_features={self.atom_features.name!r}"
        )


class CrystalGraphs:
    """A batch of crystal graphs stored as a few concatenated arrays (CSR-like).

    Crystal ``k`` owns atoms ``offsets[k]:offsets[k + 1]`` of every per-atom
    array. Neighbour indices are local to their crystal. Indexing with an int,
    slice, integer array or boolean mask returns a new ``CrystalGraphs``, so
    scikit-learn's CV splitters and searches keep the container intact.

    Parameters
    ----------
    atomic_numbers : ndarray of uint8, shape (n_atoms,)
    nbr_idx : ndarray of int32, shape (n_atoms, max_num_nbr)
        Local index of each neighbour (0 in masked slots).
    nbr_dist : ndarray of float32, shape (n_atoms, max_num_nbr)
        Neighbour distance in Å, ascending per atom (0 in masked slots).
    nbr_mask : ndarray of bool, shape (n_atoms, max_num_nbr)
        Which slots hold a real neighbour within ``radius``.
    offsets : ndarray of int64, shape (n_crystals + 1,)
    settings : GraphSettings

    Examples
    --------
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, _ = make_ionic_crystals(10, random_state=0)
    >>> graphs = CrystalGraphTransformer().transform(X)
    >>> len(graphs), len(graphs[2:5]), graphs[[0, 3]].n_atoms.tolist() == [len(X[0]), len(X[3])]
    (10, 3, True)
    """

    def __init__(self, atomic_numbers, nbr_idx, nbr_dist, nbr_mask, offsets, settings: GraphSettings):
        self.atomic_numbers = atomic_numbers
        self.nbr_idx = nbr_idx
        self.nbr_dist = nbr_dist
        self.nbr_mask = nbr_mask
        self.offsets = offsets
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
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(
            a.nbytes for a in (self.atomic_numbers, self.nbr_idx, self.nbr_dist, self.nbr_mask, self.offsets)
        )

    def atom_feature_vectors(self) -> np.ndarray:
        """Feature vector of every atom, shape ``(n_atoms, n_features)``."""
        return self.settings.atom_features.table[self.atomic_numbers]

    def __repr__(self) -> str:
        return f"CrystalGraphs(n_crystals={len(self)}, n_atoms={len(self.atomic_numbers)}, {self.settings.describe()})"

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
        counts = self.n_atoms[idx]
        atoms = concat_ranges(self.offsets[idx], counts)
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return CrystalGraphs(
            self.atomic_numbers[atoms],
            self.nbr_idx[atoms],
            self.nbr_dist[atoms],
            self.nbr_mask[atoms],
            offsets,
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
        sizes = [p.n_atoms for p in parts]
        offsets = np.zeros(sum(len(s) for s in sizes) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(sizes), out=offsets[1:])
        return cls(
            np.concatenate([p.atomic_numbers for p in parts]),
            np.concatenate([p.nbr_idx for p in parts]),
            np.concatenate([p.nbr_dist for p in parts]),
            np.concatenate([p.nbr_mask for p in parts]),
            offsets,
            settings,
        )


def _neighbour_list(structure, radius: float, max_num_nbr: int):
    """(centre, neighbour, image, distance) pairs that include every atom's nearest ``max_num_nbr``.

    Calls the compiled kernel behind ``Structure.get_neighbor_list`` directly
    (its wrapper adds per-pair Python work). The search starts in a sphere
    expected to hold about three times ``max_num_nbr`` atoms at the cell's
    mean density and falls back to ``radius`` when any atom has fewer than
    ``max_num_nbr`` neighbours in it: the ``max_num_nbr`` nearest within the
    smaller sphere are then exactly the nearest within ``radius``, while a
    search to 8 Å would return about ten times more pairs to sort.
    """
    cart = np.ascontiguousarray(structure.cart_coords, dtype=float)
    lattice = np.ascontiguousarray(structure.lattice.matrix, dtype=float)
    pbc = np.ascontiguousarray(structure.pbc, dtype=np.int64)
    volume_per_atom = abs(np.linalg.det(lattice)) / len(cart)
    r = min(radius, (9 * max_num_nbr * volume_per_atom / (4 * np.pi)) ** (1 / 3))
    while True:
        centers, points, images, dists = find_points_in_spheres(cart, cart, r=r, pbc=pbc, lattice=lattice, tol=1e-8)
        real = ((centers != points) | (dists > 1e-8)) & (dists <= radius)
        centers, points, images, dists = centers[real], points[real], images[real], dists[real]
        if r >= radius or np.bincount(centers, minlength=len(cart)).min() >= max_num_nbr:
            return centers, points, images, dists
        r = radius


def _check_elements(numbers: np.ndarray, crystal: np.ndarray, structures, start: int, settings) -> None:
    known = settings.atom_features.known
    bad = (numbers < 0) | (numbers >= len(known))
    bad[~bad] = ~known[numbers[~bad]]
    if bad.any():
        first = int(crystal[np.flatnonzero(bad)[0]])
        local = bad[crystal == first]
        symbols = sorted({structures[first][i].species_string for i in np.flatnonzero(local)})
        raise ValueError(
            f"input {start + first}: element(s) {', '.join(symbols)} absent from the "
            f"{settings.atom_features.name!r} atom feature table"
        )


def _graphs_of_chunk(items, start: int, settings: GraphSettings) -> CrystalGraphs:
    """Crystal graphs of consecutive inputs, ranked and packed in one vectorised pass.

    Only the neighbour search runs per structure; ordering and truncation to
    the ``max_num_nbr`` nearest happen once over the whole chunk, because the
    fixed cost of a dozen small numpy calls per structure would otherwise
    dominate on cells of a few atoms.
    """
    structures = [as_structure(obj, start + i) for i, obj in enumerate(items)]
    counts = np.fromiter((len(s) for s in structures), dtype=np.int64, count=len(structures))
    offsets = np.zeros(len(structures) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    crystal = np.repeat(np.arange(len(structures)), counts)
    numbers = np.fromiter((site.specie.Z for s in structures for site in s), dtype=np.int64, count=offsets[-1])
    _check_elements(numbers, crystal, structures, start, settings)

    lists = [_neighbour_list(s, settings.radius, settings.max_num_nbr) for s in structures]
    shift = np.repeat(offsets[:-1], [len(c) for c, _, _, _ in lists])
    centers = np.concatenate([c for c, _, _, _ in lists]) + shift
    points = np.concatenate([p for _, p, _, _ in lists]) + shift
    images = np.concatenate([i for _, _, i, _ in lists]).reshape(-1, 3)
    dists = np.concatenate([d for _, _, _, d in lists])
    # Deterministic order: by centre, then distance, then neighbour index and image.
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], points, dists, centers))
    centers, points, dists = centers[order], points[order] - shift[order], dists[order]
    n, m = int(offsets[-1]), settings.max_num_nbr
    first = np.searchsorted(centers, np.arange(n))
    rank = np.arange(len(centers)) - first[centers]
    keep = rank < m
    rows, cols = centers[keep], rank[keep]
    nbr_idx = np.zeros((n, m), dtype=np.int32)
    nbr_dist = np.zeros((n, m), dtype=np.float32)
    nbr_mask = np.zeros((n, m), dtype=bool)
    nbr_idx[rows, cols] = points[keep]
    nbr_dist[rows, cols] = dists[keep]
    nbr_mask[rows, cols] = True
    return CrystalGraphs(numbers.astype(np.uint8), nbr_idx, nbr_dist, nbr_mask, offsets, settings)


class CrystalGraphTransformer(TransformerMixin, BaseEstimator):
    """Turn crystal structures into crystal graphs.

    Each atom is linked to its ``max_num_nbr`` nearest neighbours within
    ``radius`` (periodic images included); distances are stored as such and
    expanded on Gaussians inside the model. Atoms with fewer neighbours get
    masked slots, reported by one warning per call. Stateless: ``fit`` does
    nothing.

    Parameters
    ----------
    radius : float, default=8.0
        Neighbour cut-off radius in Å.
    max_num_nbr : int, default=12
        Largest number of neighbours kept per atom (the paper's M).
    dmin : float, default=0.0
        First Gaussian centre of the distance expansion, in Å.
    step : float, default=0.2
        Spacing and width of the Gaussians, in Å (41 centres with the defaults).
    atom_features : str, dict or path, default="cgcnn"
        ``"cgcnn"`` (92-d, the paper's), ``"group_period"`` (26-d),
        ``"onehot"`` (100-d), a ``{Z: vector}`` dict, or a path to a JSON file
        in the original ``atom_init.json`` layout.
    n_jobs : int, default=None
        Processes used to parse and featurize (joblib semantics; ``None`` = 1).
        The result does not depend on it. Only inputs that need parsing (CIF
        text, file paths) are sent to worker processes: for ready-made
        ``Structure``/``Atoms`` objects, shipping them to a worker costs more
        than building their graphs (see ``benchmarks/featurize.py``).
    verbose : int, default=0
        Show a progress bar when positive.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graphs = CrystalGraphTransformer(radius=6.0).transform([nacl])
    >>> len(graphs), graphs.nbr_idx.shape
    (1, (2, 12))
    """

    def __init__(self, radius=8.0, max_num_nbr=12, dmin=0.0, step=0.2, atom_features="cgcnn", n_jobs=None, verbose=0):
        self.radius = radius
        self.max_num_nbr = max_num_nbr
        self.dmin = dmin
        self.step = step
        self.atom_features = atom_features
        self.n_jobs = n_jobs
        self.verbose = verbose

    @property
    def settings(self) -> GraphSettings:
        """The :class:`GraphSettings` these parameters describe."""
        return GraphSettings(
            float(self.radius),
            int(self.max_num_nbr) if float(self.max_num_nbr).is_integer() else self.max_num_nbr,
            float(self.dmin),
            float(self.step),
            AtomFeatures.from_spec(self.atom_features),
        )

    def fit(self, X=None, y=None):
        """Do nothing and return self (the transformer is stateless)."""
        return self

    def transform(self, X) -> CrystalGraphs:
        """Build the crystal graphs of ``X``.

        Parameters
        ----------
        X : sequence of Structure, ase.Atoms, CIF path or CIF text, or CrystalGraphs
            A ``CrystalGraphs`` built with the same settings passes through.

        Returns
        -------
        CrystalGraphs
        """
        settings = self.settings
        if isinstance(X, CrystalGraphs):
            if X.settings != settings:
                raise ValueError(
                    f"these crystal graphs were built with {X.settings.describe()}, "
                    f"not with this transformer's {settings.describe()}"
                )
            return X
        items = as_input_list(X)
        n_jobs = self.n_jobs if any(isinstance(obj, (str, PathLike)) for obj in items) else None
        chunk = chunk_size(len(items), n_jobs)
        starts = range(0, len(items), chunk)
        jobs = (delayed(_graphs_of_chunk)(items[s : s + chunk], s, settings) for s in starts)
        results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
        if self.verbose:
            results = tqdm(results, total=len(starts), desc="crystal graphs", unit="chunk")
        graphs = CrystalGraphs.concatenate(list(results))
        _warn_short(graphs)
        return graphs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


def _warn_short(graphs: CrystalGraphs) -> None:
    short = ~graphs.nbr_mask[:, -1]
    n_short = int(short.sum())
    if n_short:
        crystal_of_atom = np.repeat(np.arange(len(graphs)), graphs.n_atoms)
        n_crystals = len(np.unique(crystal_of_atom[short]))
        s = graphs.settings
        warnings.warn(
            f"{n_short} of {len(short)} atoms in {n_crystals} of {len(graphs)} structures have fewer "
            f"than max_num_nbr={s.max_num_nbr} neighbours within radius={s.radius} Å; their missing "
            "slots are masked. Increase radius to give them more neighbours.",
            UserWarning,
            stacklevel=3,
        )
