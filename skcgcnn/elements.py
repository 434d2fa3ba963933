"""Atom feature sets: the vector that describes each element in a crystal graph."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["AtomFeatures", "ATOM_FEATURE_SETS", "covalent_radii"]

MAX_Z = 118
_N_GROUP = 19
_N_PERIOD = 7

#: Names accepted by ``atom_features=``, with what each one encodes.
ATOM_FEATURE_SETS = {
    "cgcnn": "92-d one-hot of nine element properties (paper's Supplemental Material), Z = 1-100",
    "group_period": "26-d one-hot of group (19 categories) and period (7), Z = 1-100",
    "onehot": "100-d one-hot of the element itself, Z = 1-100",
    "cgcnn_original": "92-d table of the original CGCNN code (its atom_init.json), input of its released models",
}


@lru_cache(maxsize=None)
def covalent_radii() -> np.ndarray:
    """Covalent radius of each element in Å (Cordero et al. 2008, as pymatgen tabulates it), indexed by Z.

    Returns
    -------
    ndarray of float, shape (MAX_Z + 1,)
        NaN where the table has no value.
    """
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    radii = np.full(MAX_Z + 1, np.nan)
    for symbol, radius in CovalentRadius.radius.items():
        radii[Element(symbol).Z] = radius
    radii.flags.writeable = False
    return radii


@lru_cache(maxsize=None)
def _json_table(filename: str) -> dict[int, tuple[float, ...]]:
    text = resources.files("skcgcnn.data").joinpath(filename).read_text()
    return {int(z): tuple(v) for z, v in json.loads(text).items()}


class AtomFeatures:
    """A lookup table from atomic number to a fixed-length feature vector.

    Parameters
    ----------
    table : ndarray of shape (MAX_Z + 1, n_features)
        Row ``Z`` holds the vector of the element with atomic number ``Z``.
    known : ndarray of bool, shape (MAX_Z + 1,)
        Which rows hold a vector; other elements are rejected.
    name : str
        A short description, shown in error messages and ``repr``.

    Examples
    --------
    >>> feats = AtomFeatures.from_spec("cgcnn")
    >>> feats.n_features
    92
    >>> float(feats.table[8].sum())  # every element has one entry per present property
    9.0
    """

    def __init__(self, table: np.ndarray, known: np.ndarray, name: str):
        # Own, read-only copies: the built-in sets are cached and shared by every model of the process.
        self.table = np.array(table, dtype=np.float32, order="C")
        self.known = np.array(known, dtype=bool)
        self.table.setflags(write=False)
        self.known.setflags(write=False)
        self.name = name

    @property
    def n_features(self) -> int:
        """Length of each element's vector."""
        return self.table.shape[1]

    def __repr__(self) -> str:
        return f"AtomFeatures({self.name!r}, n_features={self.n_features})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AtomFeatures)
            and np.array_equal(self.known, other.known)
            and np.array_equal(self.table, other.table)
        )

    __hash__ = None

    @classmethod
    def from_mapping(cls, mapping: dict, name: str = "custom") -> "AtomFeatures":
        """Build a table from ``{Z: vector}`` (keys may be ints or strings, as in ``atom_init.json``)."""
        if not mapping:
            raise ValueError("the atom feature mapping is empty")
        rows = {}
        for key, vec in mapping.items():
            try:
                z = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"atom feature keys must be atomic numbers, got {key!r}") from None
            if not 1 <= z <= MAX_Z:
                raise ValueError(f"atomic number {z} in the atom feature mapping is out of range 1-{MAX_Z}")
            rows[z] = np.asarray(vec, dtype=np.float32).ravel()
        lengths = {len(v) for v in rows.values()}
        if len(lengths) != 1:
            raise ValueError(f"atom feature vectors have different lengths: {sorted(lengths)}")
        table = np.zeros((MAX_Z + 1, lengths.pop()), dtype=np.float32)
        known = np.zeros(MAX_Z + 1, dtype=bool)
        for z, vec in rows.items():
            if not np.all(np.isfinite(vec)):
                raise ValueError(f"the atom feature vector of Z={z} is not finite")
            table[z] = vec
            known[z] = True
        return cls(table, known, name)

    @classmethod
    def from_spec(cls, spec) -> "AtomFeatures":
        """Resolve an ``atom_features=`` value.

        Parameters
        ----------
        spec : str, dict, path-like or AtomFeatures
            One of :data:`ATOM_FEATURE_SETS`, a ``{Z: vector}`` mapping, a path
            to a JSON file in the ``atom_init.json`` layout, or a table.

        Returns
        -------
        AtomFeatures
        """
        if isinstance(spec, AtomFeatures):
            return spec
        if isinstance(spec, dict):
            return cls.from_mapping(spec)
        if isinstance(spec, str) and spec in ATOM_FEATURE_SETS:
            return _builtin(spec)
        if isinstance(spec, (str, PathLike)):
            path = Path(spec)
            if not path.is_file():
                raise ValueError(
                    f"atom_features={spec!r} is neither one of {sorted(ATOM_FEATURE_SETS)} "
                    "nor an existing JSON file"
                )
            try:
                mapping = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
            return cls.from_mapping(mapping, name=str(path))
        raise TypeError(
            "atom_features must be a name, a {Z: vector} dict or a path to a JSON file, "
            f"got {type(spec).__name__}"
        )


@lru_cache(maxsize=None)
def _builtin(name: str) -> AtomFeatures:
    if name == "cgcnn_original":
        return AtomFeatures.from_mapping(_json_table("atom_init_original.json"), name)
    cgcnn = _json_table("atom_init_cgcnn.json")
    if name == "cgcnn":
        return AtomFeatures.from_mapping(cgcnn, name)
    if name == "group_period":
        return AtomFeatures.from_mapping(
            {z: v[: _N_GROUP + _N_PERIOD] for z, v in cgcnn.items()}, name
        )
    eye = np.eye(len(cgcnn), dtype=np.float32)
    return AtomFeatures.from_mapping({z: eye[z - 1] for z in cgcnn}, name)
