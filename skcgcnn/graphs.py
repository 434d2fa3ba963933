"""Crystal graphs built from structures: :class:`CrystalGraphTransformer` and its neighbour search.

The container it fills, :class:`~skcgcnn.crystal_graphs.CrystalGraphs`, and its
:class:`~skcgcnn.crystal_graphs.GraphSettings` are importable from here too.

This module needs numpy and pymatgen only (no torch), so featurizing stays cheap
to pickle and to run in joblib workers.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
from joblib import Parallel, delayed
from pymatgen.optimization.neighbors import find_points_in_spheres
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from ._jobs import capped_jobs
from .crystal_graphs import NBR_RULES, CrystalGraphs, GraphSettings, concat_ranges, offsets_of
from .crystals import Crystal
from .elements import AtomFeatures, covalent_radii
from .fast_cif import read_cif
from .structures import as_input_list, as_structure, chunk_size, cif_text
from .warn import warn

__all__ = ["GraphSettings", "CrystalGraphs", "CrystalGraphTransformer", "concat_ranges", "NBR_RULES", "MIN_DISTANCE"]


#: Atoms closer than this (in Å) are refused as bad geometry: no real crystal
#: puts two nuclei this close (the shortest bond, H-H, is 0.74 Å), while a
#: duplicated site or a unit mix-up (Bohr for Å, fractional for Cartesian) does.
MIN_DISTANCE = 0.5

#: Atoms closer than this fraction of the sum of their covalent radii are reported as squeezed: in the elastic,
#: perovskite and (first 8,000) formation-energy crystals of the benchmarks no pair comes below 63 % of it, while a
#: cell given in the wrong unit or a structure made up by hand goes far below.
SQUEEZED = 0.5

#: Atoms further from their cell than this many cells are refused: wrapping them back would cost precision and
#: leaving them would make the neighbour search's cost grow with the distance.
MAX_CELLS_AWAY = 1000


#: Neighbour searches expected to find more pairs than this are refused before they start: a pair costs about
#: 50 bytes while the search runs, so this caps one structure's search at about a gigabyte (a 100,000-atom cell
#: needs about 4 million pairs under the default settings).
MAX_PAIRS = 20_000_000


def _check_search_size(n_atoms: int, volume_per_atom: float, r: float, position: int) -> None:
    expected = n_atoms * 4 / 3 * np.pi * r**3 / volume_per_atom
    if expected > MAX_PAIRS:
        raise ValueError(f"input {position}: a neighbour search of {n_atoms} atoms within {r:.3g} Å would find "
                         f"about {expected:.2g} pairs (more than {MAX_PAIRS:.0e}); give a smaller cell or radius")


#: Values of ``CrystalGraphTransformer(cif_reader=...)``.
CIF_READERS = ("auto", "pymatgen")


def _crystal(obj, position: int, cif_reader: str) -> Crystal:
    """The crystal of one input: CIF read by gemmi where it gives pymatgen's structure, else through pymatgen."""
    if cif_reader == "auto" and (text := cif_text(obj)) is not None and (crystal := read_cif(text)) is not None:
        return crystal
    # Where gemmi could read the input, it did above.
    return Crystal.from_structure(as_structure(obj, position, cif_reader="pymatgen"))


def _neighbour_list(structure: Crystal, settings: GraphSettings, position: int):
    """(centre, neighbour, image, distance) pairs that include every atom's kept neighbours.

    Calls the compiled kernel behind ``Structure.get_neighbor_list`` directly
    (its wrapper adds per-pair Python work). The search starts in a sphere
    expected to hold about three times ``max_num_nbr`` atoms at the cell's
    mean density and falls back to ``radius`` when any atom has fewer than
    ``max_num_nbr`` neighbours within that sphere less ``tie_tol``: its kept
    neighbours (the M nearest and any tied with the M-th) then all lie in
    the smaller sphere, while a search to 8 Å would return about ten times
    more pairs to sort.
    """
    lattice = np.ascontiguousarray(structure.lattice, dtype=float)
    if not (np.isfinite(lattice).all() and np.isfinite(cart := structure.cart_coords).all()):
        raise ValueError(f"input {position}: the lattice or the coordinates hold NaN or infinite values")
    volume_per_atom = abs(np.linalg.det(lattice)) / len(cart)
    if not volume_per_atom > MIN_DISTANCE**3:
        raise ValueError(
            f"input {position}: the cell volume is {volume_per_atom * len(cart):.3g} Å^3 for "
            f"{len(cart)} atoms; the lattice vectors are degenerate or not in Å"
        )
    pbc = np.ascontiguousarray(structure.pbc, dtype=np.int64)
    cart = _wrapped(cart, lattice, pbc.astype(bool), position)
    radius, m, tol = settings.radius, settings.max_num_nbr, settings.tie_tol
    r = min(radius, (9 * m * volume_per_atom / (4 * np.pi)) ** (1 / 3) + tol)
    while True:
        _check_search_size(len(cart), volume_per_atom, r, position)
        centers, points, images, dists = find_points_in_spheres(cart, cart, r=r, pbc=pbc, lattice=lattice, tol=1e-8)
        itself = (centers == points) & ~images.any(axis=1)
        close = ~itself & (dists < MIN_DISTANCE)
        if close.any():
            k = np.flatnonzero(close)[0]
            i, j = int(centers[k]), int(points[k])
            what = f"atom {i} ({structure.symbol(i)}) and " + (
                "its own periodic image" if i == j else f"atom {j} ({structure.symbol(j)})"
            )
            raise ValueError(
                f"input {position}: {what} are {dists[k]:.3f} Å apart, closer than {MIN_DISTANCE} Å; "
                "check for duplicated sites, the units, or fractional coordinates given as Cartesian"
            )
        real = ~itself & (dists <= radius)
        centers, points, images, dists = centers[real], points[real], images[real], dists[real]
        if r >= radius or np.bincount(centers[dists <= r - tol], minlength=len(cart)).min() >= m:
            return centers, points, images, dists
        r = radius


def _wrapped(cart: np.ndarray, lattice: np.ndarray, periodic: np.ndarray, position: int) -> np.ndarray:
    """Cartesian coordinates moved into the cell along its periodic axes (the crystal is the same).

    The neighbour search's cost grows with how far atoms lie outside the cell, so coordinates more than
    ``MAX_CELLS_AWAY`` cells away (a unit or format mistake, never a real file) are refused.
    """
    frac = np.linalg.solve(lattice.T, cart.T).T
    far = np.abs(frac[:, periodic]) > MAX_CELLS_AWAY
    if far.any():
        atom = int(np.flatnonzero(far.any(axis=1))[0])
        raise ValueError(f"input {position}: atom {atom} lies {np.abs(frac[atom]).max():.3g} cells away from the "
                         f"cell (more than {MAX_CELLS_AWAY}); check the coordinates and their units")
    frac[:, periodic] -= np.floor(frac[:, periodic])
    return np.ascontiguousarray(frac @ lattice, dtype=float)


def _check_elements(numbers: np.ndarray, crystal: np.ndarray, structures, start: int, settings) -> None:
    known = settings.atom_features.known
    bad = (numbers < 0) | (numbers >= len(known))
    bad[~bad] = ~known[numbers[~bad]]
    if bad.any():
        first = int(crystal[np.flatnonzero(bad)[0]])
        local = bad[crystal == first]
        symbols = sorted({structures[first].symbol(i) for i in np.flatnonzero(local)})
        raise ValueError(
            f"input {start + first}: element(s) {', '.join(symbols)} absent from the "
            f"{settings.atom_features.name!r} atom feature table"
        )


def _select_neighbours(centers, dists, n_atoms: int, settings: GraphSettings):
    """Which sorted pairs are kept, and each atom's edge and shared-shell counts.

    ``centers`` and ``dists`` are sorted by centre, then distance.
    """
    m = settings.max_num_nbr
    found = np.bincount(centers, minlength=n_atoms)
    first = np.cumsum(found) - found
    if settings.nbr_rule == "first":
        keep = np.arange(len(centers)) - first[centers] < m
        count = np.minimum(found, m)
        return keep, count, np.zeros(n_atoms, dtype=np.int64)
    # Distance of each atom's M-th neighbour; atoms with fewer keep all they have.
    d_m = np.full(n_atoms, np.inf)
    full = found >= m
    d_m[full] = dists[first[full] + m - 1]
    keep = dists <= d_m[centers] + settings.tie_tol
    count = np.bincount(centers[keep], minlength=n_atoms)
    strict = np.bincount(centers[dists < d_m[centers] - settings.tie_tol], minlength=n_atoms)
    shared = np.where(count > m, count - strict, 0)
    return keep, count, shared


def _packed(points: np.ndarray, images: np.ndarray) -> np.ndarray:
    """One integer per pair that sorts as (neighbour index, image) do: the deterministic order after the distance.

    A sort by one key instead of four is the costliest step of a chunk saved twice over.
    """
    if not len(points):
        return points
    low = images.astype(np.int64)
    low -= low.min(axis=0)
    base = int(low.max()) + 1
    if (int(points.max()) + 1) * base**3 >= 2**62:
        ranks = np.empty(len(points), dtype=np.int64)
        ranks[np.lexsort((low[:, 2], low[:, 1], low[:, 0], points))] = np.arange(len(points))
        return ranks
    return ((points * base + low[:, 0]) * base + low[:, 1]) * base + low[:, 2]


def _graphs_of_chunk(items, start: int, settings: GraphSettings, cif_reader: str = "auto") -> CrystalGraphs:
    """Crystal graphs of consecutive inputs, ranked and packed in one vectorised pass.

    Only the neighbour search runs per structure; ordering and selection of
    the kept neighbours happen once over the whole chunk, because the fixed
    cost of a dozen small numpy calls per structure would otherwise dominate
    on cells of a few atoms.
    """
    structures = [_crystal(obj, start + i, cif_reader) for i, obj in enumerate(items)]
    counts = np.fromiter((len(s) for s in structures), dtype=np.int64, count=len(structures))
    offsets = offsets_of(counts)
    crystal = np.repeat(np.arange(len(structures)), counts)
    numbers = np.concatenate([s.numbers for s in structures])
    _check_elements(numbers, crystal, structures, start, settings)

    lists = [_neighbour_list(s, settings, start + i) for i, s in enumerate(structures)]
    shift = np.repeat(offsets[:-1], [len(c) for c, _, _, _ in lists])
    centers = np.concatenate([c for c, _, _, _ in lists]) + shift
    points = np.concatenate([p for _, p, _, _ in lists]) + shift
    images = np.concatenate([i for _, _, i, _ in lists]).reshape(-1, 3)
    dists = np.concatenate([d for _, _, _, d in lists])
    # Ranked by the distance as stored (float32): neighbours whose float64 distances differ only in the last
    # bits, as another CIF reader's or another CPU's rounding leaves them, are equally far and fall to the
    # index-and-image order, so the first-M rule keeps the same ones.
    order = np.lexsort((_packed(points, images), dists.astype(np.float32), centers))
    centers, points, dists = centers[order], points[order] - shift[order], dists[order]
    keep, count, shared = _select_neighbours(centers, dists, int(offsets[-1]), settings)
    edge_counts = np.bincount(crystal, weights=count, minlength=len(structures)).astype(np.int64)
    return CrystalGraphs(
        numbers.astype(np.uint8),
        count.astype(np.int32),
        shared.astype(np.int32),
        points[keep].astype(np.int32),
        dists[keep].astype(np.float32),
        offsets,
        offsets_of(edge_counts),
        settings,
    )


class CrystalGraphTransformer(TransformerMixin, BaseEstimator):
    """Turn crystal structures into crystal graphs.

    Each atom is linked to its ``max_num_nbr`` (M) nearest neighbours within
    ``radius`` (periodic images included); distances are stored as such and
    expanded on Gaussians inside the model. Atoms with fewer neighbours keep
    all they have, reported by one warning per call. Stateless: ``fit`` does
    nothing.

    In symmetric crystals the M-th and the (M+1)-th neighbours are often
    equally far (162 of 200 Materials Project structures). The default
    ``nbr_rule="shared"`` keeps the graph independent of the site order and
    of the unit cell chosen: the neighbours strictly nearer than the M-th
    enter with weight 1, and all neighbours at the M-th distance (within
    ``tie_tol``) enter together, sharing the slots left equally. Without a
    tie this is exactly the paper's graph. ``nbr_rule="first"`` keeps the
    first M after sorting by distance, then by site index and periodic
    image, as the original CGCNN code does: use it for models trained that
    way (imported checkpoints), knowing that their predictions can change
    with the cell or the site order where a shell is tied.

    Parameters
    ----------
    radius : float, default=8.0
        Neighbour cut-off radius in Å.
    max_num_nbr : int, default=12
        Neighbour slots per atom (the paper's M).
    dmin : float, default=0.0
        First Gaussian centre of the distance expansion, in Å.
    step : float, default=0.2
        Spacing and width of the Gaussians, in Å (41 centres with the defaults).
    atom_features : str, dict or path, default="cgcnn"
        ``"cgcnn"`` (92-d, the paper's), ``"group_period"`` (26-d),
        ``"onehot"`` (100-d), a ``{Z: vector}`` dict, or a path to a JSON file
        in the original ``atom_init.json`` layout.
    nbr_rule : {"shared", "first"}, default="shared"
        How neighbours tied with the M-th nearest enter the graph (above).
    tie_tol : float, default=1e-3
        Neighbours within ``tie_tol`` Å of the M-th neighbour's distance form
        its shell. Far below the Gaussian width, above the rounding of
        symmetric distances in CIF files (8 decimals of fractional coordinates
        give about 1e-7 Å).
    n_jobs : int, default=None
        Processes used to parse and featurize (joblib semantics; ``None`` = 1).
        The result does not depend on it. Only inputs that need parsing (CIF
        text, file paths) are sent to worker processes: for ready-made
        ``Structure``/``Atoms`` objects, shipping them to a worker costs more
        than building their graphs (see ``benchmarks/featurize.py``).
    cif_reader : {"auto", "pymatgen"}, default="auto"
        Who reads CIF text and ``.cif`` files. ``"auto"``: gemmi, for the
        CIFs it represents as pymatgen does (one data block, no symmetry to
        expand, fully occupied sites of plain element symbols: the CIFs of
        the Materials Project and of most generated data sets), many times
        faster and with the same graphs (:mod:`skcgcnn.fast_cif`); pymatgen
        for every other CIF and where gemmi is not installed.
        ``"pymatgen"``: always pymatgen. Other inputs are read by pymatgen
        either way.
    verbose : int, default=0
        Show a progress bar when positive.

    Raises
    ------
    ValueError
        From :meth:`transform`, naming the input: two atoms closer than
        :data:`MIN_DISTANCE` Å (duplicated sites), NaN or infinite
        coordinates or lattice, a degenerate cell, or an element absent from
        the feature table.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graphs = CrystalGraphTransformer(radius=6.0).transform([nacl])
    >>> len(graphs), graphs.nbr_count.tolist()
    (1, [14, 14])
    >>> round(float(graphs.edge_weights()[:14].sum()), 4)
    12.0
    """

    def __init__(self, radius=8.0, max_num_nbr=12, dmin=0.0, step=0.2, atom_features="cgcnn", nbr_rule="shared",
                 tie_tol=1e-3, n_jobs=None, cif_reader="auto", verbose=0):
        self.radius = radius
        self.max_num_nbr = max_num_nbr
        self.dmin = dmin
        self.step = step
        self.atom_features = atom_features
        self.nbr_rule = nbr_rule
        self.tie_tol = tie_tol
        self.n_jobs = n_jobs
        self.cif_reader = cif_reader
        self.verbose = verbose

    @classmethod
    def from_settings(cls, settings: GraphSettings, **params) -> CrystalGraphTransformer:
        """A transformer that builds graphs under ``settings`` (a fitted model's ``graph_settings_``).

        Parameters
        ----------
        settings : GraphSettings
        **params
            ``n_jobs``, ``cif_reader``, ``verbose``.

        Returns
        -------
        CrystalGraphTransformer
        """
        return cls(radius=settings.radius, max_num_nbr=settings.max_num_nbr, dmin=settings.dmin, step=settings.step,
                   atom_features=settings.atom_features, nbr_rule=settings.nbr_rule, tie_tol=settings.tie_tol,
                   **params)

    @property
    def settings(self) -> GraphSettings:
        """The :class:`GraphSettings` these parameters describe."""
        return GraphSettings(
            float(self.radius),
            int(self.max_num_nbr) if float(self.max_num_nbr).is_integer() else self.max_num_nbr,
            float(self.dmin),
            float(self.step),
            AtomFeatures.from_spec(self.atom_features),
            self.nbr_rule,
            float(self.tie_tol),
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
        if self.cif_reader not in CIF_READERS:
            raise ValueError(f"cif_reader must be one of {CIF_READERS}, got {self.cif_reader!r}")
        items = as_input_list(X)
        n_jobs = capped_jobs(self.n_jobs) if any(isinstance(obj, (str, PathLike)) for obj in items) else None
        chunk = chunk_size(len(items), n_jobs)
        starts = range(0, len(items), chunk)
        jobs = (delayed(_graphs_of_chunk)(items[s : s + chunk], s, settings, self.cif_reader) for s in starts)
        results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
        if self.verbose:
            results = tqdm(results, total=len(starts), desc="crystal graphs", unit="chunk")
        graphs = CrystalGraphs.concatenate(list(results))
        _warn_short(graphs)
        _warn_squeezed(graphs)
        return graphs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


def _warn_squeezed(graphs: CrystalGraphs) -> None:
    """Warn, naming the inputs, where an atom's nearest neighbour is nearer than ``SQUEEZED`` covalent radii sums."""
    if not len(graphs.nbr_dist):
        return
    centers = graphs.edge_centers()
    crystal_of_atom = np.repeat(np.arange(len(graphs)), graphs.n_atoms)
    neighbours = graphs.offsets[crystal_of_atom[centers]] + graphs.nbr_idx
    radii = covalent_radii()[graphs.atomic_numbers]
    ratio = graphs.nbr_dist / (radii[centers] + radii[neighbours])
    squeezed = np.unique(crystal_of_atom[centers[ratio < SQUEEZED]])
    if len(squeezed):
        k = np.flatnonzero(crystal_of_atom[centers] == squeezed[0])
        worst = k[np.nanargmin(ratio[k])]
        warn(f"{len(squeezed)} of {len(graphs)} structures (input {int(squeezed[0])} first) put atoms closer "
             f"than {SQUEEZED:.0%} of the sum of their covalent radii (there {graphs.nbr_dist[worst]:.2f} Å, "
             f"{ratio[worst]:.0%}); no real crystal is that compressed: check the cell's units and scale")


def _warn_short(graphs: CrystalGraphs) -> None:
    short = graphs.nbr_count < graphs.settings.max_num_nbr
    n_short = int(short.sum())
    if n_short:
        crystal_of_atom = np.repeat(np.arange(len(graphs)), graphs.n_atoms)
        n_crystals = len(np.unique(crystal_of_atom[short]))
        s = graphs.settings
        warn(
            f"{n_short} of {len(short)} atoms in {n_crystals} of {len(graphs)} structures have fewer "
            f"than max_num_nbr={s.max_num_nbr} neighbours within radius={s.radius} Å; they keep "
            "the ones they have. Increase radius to give them more neighbours."
        )
