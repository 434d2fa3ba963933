"""Where a model applies: the elements its training crystals held, and the inputs that hold others."""

from __future__ import annotations

import numpy as np

from .graphs import CrystalGraphs
from .warn import warn

__all__ = ["unseen_elements", "warn_unseen"]


def unseen_elements(elements, graphs: CrystalGraphs) -> list[list[str]]:
    """Per crystal, the symbols of its elements that are not in ``elements``.

    Parameters
    ----------
    elements : array-like of int or None
        Atomic numbers seen in training (a model's ``elements_``); ``None``
        (a model that did not record them) flags nothing.
    graphs : CrystalGraphs

    Returns
    -------
    list of list of str
        Empty lists where every element was seen; symbols in order of atomic number.
    """
    from pymatgen.core import Element

    out = [[] for _ in range(len(graphs))]
    if elements is None:
        return out
    atoms = np.flatnonzero(~np.isin(graphs.atomic_numbers, elements))
    crystal_of_atom = np.repeat(np.arange(len(graphs)), graphs.n_atoms)
    for crystal, z in sorted({(int(crystal_of_atom[a]), int(graphs.atomic_numbers[a])) for a in atoms}):
        out[crystal].append(Element.from_Z(z).symbol)
    return out


def warn_unseen(unseen: list[list[str]]) -> None:
    """Warn, at the caller's line, that the inputs holding unseen elements are predicted by extrapolation."""
    flagged = [i for i, symbols in enumerate(unseen) if symbols]
    if flagged:
        symbols = sorted({s for i in flagged for s in unseen[i]})
        warn(
            f"{len(flagged)} of {len(unseen)} inputs hold elements absent from the training data "
            f"({', '.join(symbols[:10])}{', ...' if len(symbols) > 10 else ''}): their predictions are "
            "extrapolations; unseen_elements(X) lists them per input"
        )
