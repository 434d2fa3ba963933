"""What the graph builder reads of a crystal: its lattice, Cartesian coordinates and atomic numbers.

Inputs become a :class:`Crystal` either through pymatgen (any structure, file or text it reads) or, for CIF text
that gemmi represents the same way, straight from gemmi's parser (:mod:`skcgcnn.fast_cif`), with no pymatgen
object on the way (see ``CrystalGraphTransformer(cif_reader=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Crystal"]


@dataclass(frozen=True, eq=False)
class Crystal:
    """A periodic crystal as the graph builder reads it.

    Parameters
    ----------
    lattice : ndarray of shape (3, 3)
        Lattice vectors as rows, in Å.
    cart_coords : ndarray of shape (n_atoms, 3)
        Cartesian coordinates in Å.
    numbers : ndarray of int64, shape (n_atoms,)
        Atomic numbers.
    pbc : ndarray of bool, shape (3,)
        Periodic directions.
    """

    lattice: np.ndarray
    cart_coords: np.ndarray
    numbers: np.ndarray
    pbc: np.ndarray

    def __len__(self) -> int:
        return len(self.numbers)

    def symbol(self, i: int) -> str:
        """The element symbol of atom ``i`` (for messages)."""
        from pymatgen.core.periodic_table import Element

        return Element.from_Z(int(self.numbers[i])).symbol

    @classmethod
    def from_structure(cls, structure) -> Crystal:
        """The crystal of an ordered pymatgen structure."""
        lattice = np.asarray(structure.lattice.matrix, dtype=float)
        # An infinite lattice has no Cartesian coordinates (pymatgen would warn computing them); the builder
        # refuses it by its lattice.
        cart = (np.asarray(structure.cart_coords, dtype=float) if np.isfinite(lattice).all()
                else np.full((len(structure), 3), np.nan))
        return cls(lattice, cart, np.fromiter((site.specie.Z for site in structure), dtype=np.int64,
                                              count=len(structure)), np.asarray(structure.pbc, dtype=bool))
