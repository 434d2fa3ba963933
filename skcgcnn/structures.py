"""Coerce user inputs (Structure, ASE Atoms, CIF path, CIF text) to pymatgen structures."""

from __future__ import annotations

import warnings
from os import PathLike
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed
from pymatgen.core import Structure
from tqdm.auto import tqdm

__all__ = ["as_structure", "as_input_list", "as_structure_list"]

_CIF_MARKERS = ("_cell_length_a", "_atom_site_")


def _describe(position: int, path: Path | None) -> str:
    return f"input {position}" + (f" ({path})" if path is not None else "")


def _read(obj: Any, position: int) -> tuple[Structure, Path | None]:
    if isinstance(obj, Structure):
        return obj, None
    if type(obj).__name__ == "Atoms" and type(obj).__module__.startswith("ase"):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(obj), None
    if isinstance(obj, (str, PathLike)):
        text = obj if isinstance(obj, str) else None
        if text is not None and any(marker in text for marker in _CIF_MARKERS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return Structure.from_str(text, fmt="cif"), None
            except Exception as exc:
                raise ValueError(f"input {position}: CIF text could not be parsed ({exc})") from None
        path = Path(obj)
        if not path.is_file():
            raise ValueError(
                f"input {position}: {str(obj)[:80]!r} is neither an existing file nor CIF text"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Structure.from_file(path), path
        except Exception as exc:
            raise ValueError(f"input {position} ({path}): could not be parsed ({exc})") from None
    raise TypeError(
        f"input {position}: expected a pymatgen Structure, an ASE Atoms, a CIF path or CIF text, "
        f"got {type(obj).__name__}"
    )


def as_structure(obj: Any, position: int = 0) -> Structure:
    """Return ``obj`` as an ordered pymatgen :class:`~pymatgen.core.Structure`.

    Parameters
    ----------
    obj : Structure, ase.Atoms, str or path-like
        A structure, a path to a file pymatgen can read (CIF, POSCAR, ...), or
        CIF text.
    position : int, default=0
        Position of ``obj`` in the caller's input, used in error messages.

    Returns
    -------
    Structure

    Raises
    ------
    TypeError
        If ``obj`` is none of the accepted types.
    ValueError
        If a file or text cannot be parsed, or the structure has no sites or
        disordered (partially occupied) sites.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> s = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> as_structure(s) is s
    True
    """
    structure, path = _read(obj, position)
    if len(structure) == 0:
        raise ValueError(f"{_describe(position, path)}: the structure has no sites")
    if not structure.is_ordered:
        raise ValueError(
            f"{_describe(position, path)}: the structure has disordered (partially occupied) "
            "sites; order it first (e.g. pymatgen's OrderDisorderedStructureTransformation)"
        )
    return structure


def as_input_list(X: Any) -> list:
    """Check that ``X`` is a non-empty sequence of inputs and return it as a list.

    Parameters
    ----------
    X : list, tuple, 1-D object array or pandas Series

    Returns
    -------
    list

    Raises
    ------
    TypeError
        If ``X`` is a single structure rather than a sequence of them.
    ValueError
        If ``X`` is empty.

    Examples
    --------
    >>> import numpy as np
    >>> as_input_list(np.array(["a.cif", "b.cif"], dtype=object))
    ['a.cif', 'b.cif']
    """
    single = isinstance(X, (Structure, str, PathLike)) or type(X).__name__ == "Atoms"
    if single or not hasattr(X, "__len__"):
        raise TypeError(
            f"expected a sequence of structures, got a single {type(X).__name__}; wrap it in a list"
        )
    items = X.tolist() if hasattr(X, "tolist") else list(X)
    if len(items) == 0:
        raise ValueError("the input holds no structures")
    return items


def chunk_size(n_items: int, n_jobs: int | None) -> int:
    """Items per parallel task: about 8 tasks per worker (load balance), at most 256."""
    return max(1, min(256, -(-n_items // (8 * max(1, abs(n_jobs or 1))))))


def _structures_of_chunk(items: list, start: int) -> list[Structure]:
    return [as_structure(obj, start + i) for i, obj in enumerate(items)]


def as_structure_list(X: Any, n_jobs: int | None = None, verbose: int = 0) -> list[Structure]:
    """Coerce a sequence of inputs to a list of ordered structures.

    Parameters
    ----------
    X : list, tuple, 1-D object array or pandas Series
        Each item is anything :func:`as_structure` accepts.
    n_jobs : int, default=None
        Processes used to parse CIF text and files (joblib semantics; ``None``
        = 1). Parsing CIF is the slow step of reading a data set (about 10 ms
        per structure).
    verbose : int, default=0
        Show a progress bar when positive.

    Returns
    -------
    list of Structure

    Raises
    ------
    ValueError
        If ``X`` is empty or an item is invalid (the message names its position).
    TypeError
        If ``X`` is a single structure rather than a sequence of them.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> [s.formula for s in as_structure_list([nacl, nacl.to(fmt="cif")])]
    ['Na1 Cl1', 'Na1 Cl1']
    """
    items = as_input_list(X)
    if n_jobs in (None, 1) and not verbose:
        return _structures_of_chunk(items, 0)
    chunk = chunk_size(len(items), n_jobs)
    starts = range(0, len(items), chunk)
    jobs = (delayed(_structures_of_chunk)(items[s : s + chunk], s) for s in starts)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    if verbose:
        results = tqdm(results, total=len(starts), desc="parsing structures", unit="chunk")
    return [structure for part in results for structure in part]
