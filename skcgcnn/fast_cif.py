"""CIF text read by gemmi straight into a :class:`~skcgcnn.crystals.Crystal`, where it gives pymatgen's structure.

pymatgen's CIF parser builds Python objects site by site; gemmi's C++ reader is about 38 times faster on the
Materials Project CIFs. The fast path takes the CIFs that both read the same way: one data block, no symmetry
to expand (P1: only the identity operation, or no operation and no other space group named), fractional
coordinates, every site fully occupied by one element given by its plain symbol. (A site listed twice, which
pymatgen refuses as overfull, is refused by the graph builder as two atoms closer than 0.5 Å.)
For those it repeats what pymatgen does to the numbers (coordinates within 1e-4 relative of 1/3 or 2/3 set to
them, coordinates wrapped into the cell, sites sorted by electronegativity, the same lattice from the cell
parameters), so that both give the same crystal graphs. Anything else returns None and is read by pymatgen.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from .crystals import Crystal

__all__ = ["read_cif", "read_cif_structure"]

_IDENTITY = "x,y,z"
_SYMOPS = ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz")
_GROUP_NAMES = ("_symmetry_space_group_name_H-M", "_space_group_name_H-M_alt")
_GROUP_NUMBERS = ("_symmetry_Int_Tables_number", "_space_group_IT_number")
_CELL = ("_cell_length_a", "_cell_length_b", "_cell_length_c", "_cell_angle_alpha", "_cell_angle_beta",
         "_cell_angle_gamma")


@lru_cache(maxsize=None)
def _elements() -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Symbol -> Z, and by Z the two keys pymatgen sorts sites by: electronegativity, then the symbol's rank."""
    from pymatgen.core.periodic_table import Element

    z = {el.symbol: el.Z for el in Element}
    x = np.full(max(z.values()) + 1, np.nan)
    rank = np.zeros(max(z.values()) + 1, dtype=np.int64)
    for position, symbol in enumerate(sorted(z)):
        rank[z[symbol]] = position
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about elements without an electronegativity
        for symbol, number in z.items():
            x[number] = Element(symbol).X
    return z, x, rank


def _number(value) -> float:
    import gemmi

    return gemmi.cif.as_number(value) if value is not None else float("nan")


def _is_p1(block) -> bool:
    import gemmi

    for tag in _SYMOPS:
        ops = block.find_values(tag)
        if len(ops):
            return all(gemmi.cif.as_string(op).replace(" ", "").lower() == _IDENTITY for op in ops)
    for tag in _GROUP_NAMES:
        name = block.find_value(tag)
        if name is not None and gemmi.cif.as_string(name).replace(" ", "").lower() not in ("p1", "?", "."):
            return False
    for tag in _GROUP_NUMBERS:
        number = _number(block.find_value(tag))
        if not (np.isnan(number) or number == 1.0):
            return False
    return True


def _lattice(a, b, c, alpha, beta, gamma) -> np.ndarray:
    """Lattice vectors from cell parameters: c along z, a in the xz plane (pymatgen's convention).

    Computed with pymatgen's operations in its order: the last bits of the vectors decide the order of neighbours
    at equal distances under ``nbr_rule="first"``.
    """
    cos_alpha, cos_beta, cos_gamma = np.cos(np.radians([alpha, beta, gamma]))
    sin_alpha, sin_beta, _ = np.sin(np.radians([alpha, beta, gamma]))
    gamma_star = np.arccos(min(1.0, max(-1.0, (cos_alpha * cos_beta - cos_gamma) / (sin_alpha * sin_beta))))
    return np.array([[a * sin_beta, 0.0, a * cos_beta],
                     [-b * sin_alpha * np.cos(gamma_star), b * sin_alpha * np.sin(gamma_star), b * cos_alpha],
                     [0.0, 0.0, float(c)]])


def _numbers(column) -> np.ndarray:
    """The numbers of a CIF column; NaN for '?' and '.', standard uncertainties (``1.234(5)``) dropped."""
    values = list(column)
    try:
        return np.array(values, dtype=float)
    except ValueError:
        return np.array([_number(v) for v in values])


def _parse(text: str, with_labels: bool = False):
    """(lattice, fractional coordinates, atomic numbers, site labels or None) in pymatgen's site order, or None."""
    try:
        import gemmi
    except ImportError:
        return None
    try:
        document = gemmi.cif.read_string(text)
    except (RuntimeError, ValueError):
        return None
    if len(document) != 1:
        return None
    block = document[0]
    if not _is_p1(block) or len(block.find_values("_atom_site_attached_hydrogens")):
        return None
    cell = [_number(block.find_value(tag)) for tag in _CELL]
    if not np.isfinite(cell).all():
        return None
    table = block.find("_atom_site_", ["type_symbol", "fract_x", "fract_y", "fract_z", "?occupancy", "?label"])
    n = len(table)
    if not n:
        return None
    z, x, rank = _elements()
    symbols = [gemmi.cif.as_string(v) for v in table.column(0)]
    if not all(s in z for s in symbols):  # plain element symbols only: no charges, labels or dummy species
        return None
    if table.has_column(4) and not (_numbers(table.column(4)) == 1.0).all():
        return None
    frac = np.stack([_numbers(table.column(k)) for k in (1, 2, 3)], axis=1)
    if not np.isfinite(frac).all():
        return None
    # pymatgen sets coordinates within 1e-4 (relative) of 1/3 and 2/3 to them, then wraps them into the cell.
    frac = np.where(np.abs(frac * 3 - 1) <= 1e-4, 1 / 3, np.where(np.abs(frac * 1.5 - 1) <= 1e-4, 2 / 3, frac))
    frac -= np.floor(frac)
    numbers = np.fromiter((z[s] for s in symbols), dtype=np.int64, count=n)
    electronegativity = x[numbers]
    if np.isnan(electronegativity).any():
        return None  # pymatgen's order of sites without an electronegativity is not a plain sort
    order = np.lexsort((rank[numbers], electronegativity))  # stable: sites of one element stay as listed
    labels = None
    if with_labels:  # a structure's, not the graph builder's
        listed = [gemmi.cif.as_string(v) for v in table.column(5)] if table.has_column(5) else symbols
        labels = [listed[i] for i in order]
    return _lattice(*cell), frac[order], numbers[order], labels


def read_cif(text: str) -> Crystal | None:
    """The crystal of CIF text, read by gemmi, or None where pymatgen must read it.

    Parameters
    ----------
    text : str
        The CIF file's content.

    Returns
    -------
    Crystal or None
        None when gemmi is not installed, the text does not parse, or the CIF is one the fast path does not
        take (see the module's description); pymatgen then reads it and gives its own errors.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> crystal = read_cif(nacl.to(fmt="cif"))
    >>> crystal.numbers.tolist(), crystal.cart_coords[1].round(2).tolist()
    ([11, 17], [2.82, 2.82, 2.82])
    """
    parsed = _parse(text)
    if parsed is None:
        return None
    lattice, frac, numbers, _ = parsed
    return Crystal(lattice, np.dot(frac, lattice), numbers, np.ones(3, dtype=bool))


def read_cif_structure(text: str):
    """The pymatgen structure of CIF text, read by gemmi, or None where pymatgen must read it (see :func:`read_cif`).

    The structure equals what ``Structure.from_str(text, fmt="cif")`` gives: lattice, species, fractional
    coordinates and site labels, in the same order.

    Parameters
    ----------
    text : str

    Returns
    -------
    Structure or None
    """
    parsed = _parse(text, with_labels=True)
    if parsed is None:
        return None
    from pymatgen.core import Lattice, Structure

    lattice, frac, numbers, labels = parsed
    return Structure(Lattice(lattice), [int(n) for n in numbers], frac, labels=labels)
