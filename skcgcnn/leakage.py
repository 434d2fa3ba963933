"""The same crystal twice in a data set, or on both sides of a split: found with pymatgen's StructureMatcher.

A crystal in the test set that also sits in the training set (under another
id, another cell or another site order) is predicted from memory, and makes
every score look better than it is. Materials databases hold such
duplicates: polymorph entries relaxed to the same structure, the same
compound from two sources.
"""

from __future__ import annotations

from collections import defaultdict
from math import gcd

import numpy as np
from joblib import Parallel, delayed

from ._jobs import capped_jobs
from .graphs import CrystalGraphs
from .structures import as_structure, as_input_list

__all__ = ["find_duplicates", "leaks_across", "copies_to_drop"]


def _formula_keys(X, graphs: CrystalGraphs | None) -> list[tuple]:
    """Each crystal's reduced composition, as sorted (Z, count) pairs."""
    if graphs is None:
        return [tuple(sorted((el.Z, int(n)) for el, n in as_structure(x, i).composition.reduced_composition.items()))
                for i, x in enumerate(X)]
    keys = []
    for start, stop in zip(graphs.offsets[:-1], graphs.offsets[1:]):
        z, counts = np.unique(graphs.atomic_numbers[start:stop], return_counts=True)
        divisor = gcd(*counts.tolist())
        keys.append(tuple(zip(z.tolist(), (counts // divisor).tolist())))
    return keys


def _match_group(items: list, positions: list[int], matcher) -> list[list[int]]:
    structures = [as_structure(x, p) for x, p in zip(items, positions)]
    for s, p in zip(structures, positions):
        s.properties["_position"] = p  # group_structures returns structures; this maps them back
    groups = matcher.group_structures(structures)
    return [sorted(s.properties["_position"] for s in group) for group in groups if len(group) > 1]


def find_duplicates(X, graphs: CrystalGraphs | None = None, matcher=None,
                    n_jobs: int | None = None) -> list[np.ndarray]:
    """Groups of inputs that are the same crystal, up to cell choice, site order, translation and rotation.

    Crystals are first grouped by reduced formula (cheap, and read from
    ``graphs`` when given), then compared within each group by
    :class:`pymatgen.analysis.structure_matcher.StructureMatcher`, so the
    cost grows with the sizes of the formula groups, not with the square of
    the data set.

    Parameters
    ----------
    X : sequence of structures
        Anything :class:`~skcgcnn.CrystalGraphTransformer` reads; only
        crystals that share a formula with another are parsed.
    graphs : CrystalGraphs, default=None
        The graphs of ``X``, if already built: their compositions replace a
        first parse of every structure.
    matcher : StructureMatcher, default=None
        pymatgen's default tolerances (``ltol=0.2``, ``stol=0.3``,
        ``angle_tol=5``, volumes scaled, primitive cells compared).
    n_jobs : int, default=None
        Processes comparing formula groups.

    Returns
    -------
    list of ndarray of int
        Each array the positions of one crystal's copies (two or more),
        sorted; groups in order of their first position.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> kcl = Structure(Lattice.cubic(6.29), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> moved = nacl.copy()
    >>> _ = moved.translate_sites(range(2), [0.1, 0.2, 0.3])
    >>> [group.tolist() for group in find_duplicates([nacl, kcl, moved * (2, 1, 1)])]
    [[0, 2]]
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    items = as_input_list(X)
    if graphs is not None and len(graphs) != len(items):
        raise ValueError(f"X holds {len(items)} crystals but graphs {len(graphs)}")
    by_formula = defaultdict(list)
    for position, key in enumerate(_formula_keys(items, graphs)):
        by_formula[key].append(position)
    candidates = [positions for positions in by_formula.values() if len(positions) > 1]
    matcher = matcher or StructureMatcher()
    jobs = (delayed(_match_group)([items[p] for p in positions], positions, matcher) for positions in candidates)
    groups = [group for found in Parallel(n_jobs=capped_jobs(n_jobs))(jobs) for group in found]
    return [np.asarray(group) for group in sorted(groups)]


def leaks_across(groups: list[np.ndarray], sets) -> list[tuple[int, int]]:
    """Pairs of copies of one crystal that lie in different sets of a split.

    Parameters
    ----------
    groups : list of ndarray of int
        From :func:`find_duplicates`.
    sets : array-like of str
        The set of each crystal, e.g. ``"train"``, ``"val"``, ``"test"``.

    Returns
    -------
    list of (int, int)
        Positions ``(i, j)``, ``i < j``, of copies in different sets.

    Examples
    --------
    >>> leaks_across([np.array([0, 3]), np.array([1, 2])], ["train", "train", "train", "test"])
    [(0, 3)]
    """
    sets = np.asarray(sets)
    return [(int(i), int(j)) for group in groups for a, i in enumerate(group) for j in group[a + 1:]
            if sets[i] != sets[j]]


def copies_to_drop(groups: list[np.ndarray], sets) -> list[int]:
    """Positions to drop so that one copy of each crystal is left: a training copy where there is one.

    Keeping the training copy leaves the held-out sets free of crystals the
    model trained on, and no crystal is lost from training.

    Parameters
    ----------
    groups : list of ndarray of int
        From :func:`find_duplicates`.
    sets : array-like of str
        The set of each crystal (``"train"`` for training).

    Returns
    -------
    list of int

    Examples
    --------
    >>> copies_to_drop([np.array([0, 3]), np.array([1, 2])], ["test", "val", "val", "train"])
    [0, 2]
    """
    sets = np.asarray(sets)
    dropped = []
    for group in groups:
        trained = [i for i in group if sets[i] == "train"]
        keep = trained[0] if trained else group[0]
        dropped += [int(i) for i in group if i != keep]
    return dropped
