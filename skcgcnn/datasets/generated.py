"""A generated set of ionic crystals labelled by a physical code; needs no download."""

from __future__ import annotations

import numpy as np
from pymatgen.analysis.ewald import EwaldSummation
from pymatgen.core import Lattice, Species, Structure

__all__ = ["make_ionic_crystals"]

_CATIONS = {1: ["Li", "Na", "K", "Rb"], 2: ["Mg", "Ca", "Sr", "Ba", "Zn", "Cd"], 4: ["Ti", "Zr", "Sn", "Ce"]}
_ANIONS = {1: ["F", "Cl", "Br", "I"], 2: ["O", "S", "Se"]}

# name -> (cation charge, anion charge, cation fractional sites, anion fractional sites, extra B sites)
_PROTOTYPES = {
    "rocksalt": ([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
                 [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]]),
    "cesium_chloride": ([[0, 0, 0]], [[0.5, 0.5, 0.5]]),
    "zincblende": ([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
                   [[0.25, 0.25, 0.25], [0.25, 0.75, 0.75], [0.75, 0.25, 0.75], [0.75, 0.75, 0.25]]),
    "fluorite": ([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
                 [[x, y, z] for x in (0.25, 0.75) for y in (0.25, 0.75) for z in (0.25, 0.75)]),
}
_PEROVSKITE_A = [[0, 0, 0]]
_PEROVSKITE_B = [[0.5, 0.5, 0.5]]
_PEROVSKITE_X = [[0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def _radius(symbol: str, charge: int) -> float:
    radius = Species(symbol, charge).ionic_radius
    return float(radius) if radius is not None else 1.0


def _binary(rng, prototype: str) -> tuple[list[str], list[list[float]], list[int], float]:
    cation_sites, anion_sites = _PROTOTYPES[prototype]
    if prototype == "fluorite":
        q_cat, q_an = (2, 1) if rng.random() < 0.5 else (4, 2)
    else:
        q_cat = q_an = int(rng.integers(1, 3))
    cations = [str(rng.choice(_CATIONS[q_cat])) for _ in cation_sites]
    anion = str(rng.choice(_ANIONS[q_an]))
    bond = np.mean([_radius(c, q_cat) for c in cations]) + _radius(anion, -q_an)
    # Lattice constant from the shortest cation-anion distance of each prototype.
    factor = {
        "rocksalt": 2.0,
        "cesium_chloride": 2 / np.sqrt(3),
        "zincblende": 4 / np.sqrt(3),
        "fluorite": 4 / np.sqrt(3),
    }
    species = cations + [anion] * len(anion_sites)
    charges = [q_cat] * len(cation_sites) + [-q_an] * len(anion_sites)
    return species, cation_sites + anion_sites, charges, bond * factor[prototype]


def _perovskite(rng) -> tuple[list[str], list[list[float]], list[int], float]:
    a_site, b_site = (str(rng.choice(_CATIONS[2])), str(rng.choice(["Ti", "Zr", "Sn"])))
    bond = _radius(b_site, 4) + _radius("O", -2)
    species = [a_site, b_site, "O", "O", "O"]
    return species, _PEROVSKITE_A + _PEROVSKITE_B + _PEROVSKITE_X, [2, 4, -2, -2, -2], 2 * bond


def make_ionic_crystals(n_samples: int = 200, random_state=None) -> tuple[list[Structure], np.ndarray]:
    """Generate varied ionic crystals labelled with their Ewald energy per atom.

    Rock-salt, caesium-chloride, zinc-blende, fluorite and perovskite cells
    are filled with random charge-balanced elements (several cations per cell
    in the larger prototypes), scaled to the sum of ionic radii and strained
    by a random deformation of up to 4 %. Each crystal is labelled with its
    electrostatic (Ewald) energy per atom computed by pymatgen from formal
    oxidation states: a real physical quantity that depends on geometry and
    composition, so a model must read both.

    Parameters
    ----------
    n_samples : int, default=200
        Number of crystals.
    random_state : int, RandomState, Generator or None, default=None
        Seed; the same seed gives the same crystals and labels.

    Returns
    -------
    structures : list of Structure
        Ordered structures without oxidation states, 1 to 12 atoms each.
    y : ndarray of shape (n_samples,)
        Ewald energy in eV/atom.

    Examples
    --------
    >>> X, y = make_ionic_crystals(5, random_state=0)
    >>> len(X), y.shape
    (5, (5,))
    """
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
    rng = np.random.default_rng(
        random_state.randint(2**31 - 1) if isinstance(random_state, np.random.RandomState) else random_state
    )
    prototypes = [*_PROTOTYPES, "perovskite"]
    structures, energies = [], []
    for _ in range(int(n_samples)):
        prototype = prototypes[rng.integers(len(prototypes))]
        species, coords, charges, a = _perovskite(rng) if prototype == "perovskite" else _binary(rng, prototype)
        strain = np.eye(3) + rng.uniform(-0.04, 0.04, size=(3, 3))
        lattice = Lattice(a * rng.uniform(0.97, 1.03) * strain)
        structure = Structure(lattice, species, coords)
        structure.add_oxidation_state_by_site(charges)
        energies.append(EwaldSummation(structure).total_energy / len(structure))
        structure.remove_oxidation_states()
        structures.append(structure)
    return structures, np.asarray(energies)
