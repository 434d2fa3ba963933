"""Coerce user inputs (Structure, ASE Atoms, structure files, CIF/POSCAR/JSON text) to pymatgen structures."""

from __future__ import annotations

import gzip
import signal
import threading
import warnings
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed
from pymatgen.core import IStructure, Structure
from tqdm.auto import tqdm

from ._jobs import capped_jobs
from .fast_cif import read_cif_structure

__all__ = ["as_structure", "as_input_list", "as_structure_list", "cif_text"]

_CIF_MARKERS = ("_cell_length_a", "_atom_site_")


def _describe(position: int, path: Path | None) -> str:
    return f"input {position}" + (f" ({path})" if path is not None else "")


def _data_blocks(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.lstrip().lower().startswith("data_"))


#: Seconds pymatgen may spend reading one structure before the input is refused. Real files take milliseconds;
#: some generated CIFs send its parser into a search that never ends.
PARSE_TIME_LIMIT = 60.0


class _Runaway(ValueError):
    """A read stopped by :func:`_time_limit`; its message is final."""


class _Alarm(BaseException):
    """Raised by the timer inside the parser: not an Exception, so that no ``except Exception`` there keeps it."""


@contextmanager
def _time_limit(where: str):
    """Refuse, naming the input, a read that runs past ``PARSE_TIME_LIMIT`` (POSIX main threads; else no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _Alarm

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, PARSE_TIME_LIMIT)
    try:
        yield
    except _Alarm:
        raise _Runaway(f"{where}: pymatgen's parser ran for more than {PARSE_TIME_LIMIT:g} s and was stopped; "
                       "check the file (a CIF with inconsistent symmetry or occupancies can do this)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _from_text(text: str, fmt: str, where: str, cif_reader: str = "auto") -> Structure:
    if fmt == "cif" and cif_reader == "auto" and (structure := read_cif_structure(text)) is not None:
        return structure
    if fmt == "cif" and _data_blocks(text) > 1:
        raise ValueError(
            f"{where}: the CIF holds {_data_blocks(text)} structures (data blocks); give one structure per input, "
            "e.g. CifParser(...).parse_structures() from pymatgen.io.cif splits them"
        )
    if fmt == "json":
        _check_modules(text, where)
    try:
        with warnings.catch_warnings(), _time_limit(where):
            warnings.simplefilter("ignore")
            return Structure.from_str(text, fmt=fmt)
    except _Runaway:
        raise
    except Exception as exc:
        raise ValueError(f"{where}: {fmt.upper()} text could not be parsed ({type(exc).__name__}: {exc})") from None


def _check_modules(text: str, where: str) -> None:
    """Refuse JSON that names a module other than pymatgen's or numpy's: pymatgen's decoder would import it."""
    import json

    try:
        content = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where}: JSON text could not be parsed ({exc})") from None
    pending = [content]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            module = item.get("@module")
            if module is not None and not str(module).split(".")[0] in ("pymatgen", "numpy"):
                raise ValueError(f"{where}: the JSON asks for the module {module!r}; a structure needs pymatgen's "
                                 "only, and it is refused unread")
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _text_format(text: str) -> str | None:
    """The format of structure text (CIF, pymatgen JSON, POSCAR), or None for what may be a path."""
    if any(marker in text for marker in _CIF_MARKERS):
        return "cif"
    if text.lstrip().startswith("{"):
        return "json"
    if text.count("\n") >= 7:  # a file name has no line breaks; POSCAR has at least 8 lines
        return "poscar"
    return None


def _read_file(path: Path, position: int, cif_reader: str) -> Structure:
    where = f"input {position} ({path})"
    name = path.name.lower()
    if name.endswith((".cif", ".cif.gz", ".mcif", ".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            fmt = "json" if ".json" in name else "cif"
            plain_cif = name.endswith((".cif", ".cif.gz"))  # magnetic CIFs (.mcif) stay pymatgen's
            return _from_text(handle.read(), fmt, where, cif_reader if plain_cif else "pymatgen")
    try:
        with warnings.catch_warnings(), _time_limit(where):
            warnings.simplefilter("ignore")
            return Structure.from_file(path)
    except _Runaway:
        raise
    except Exception as exc:
        raise ValueError(f"{where}: could not be parsed ({type(exc).__name__}: {exc})") from None


def cif_text(obj: Any) -> str | None:
    """The CIF text that ``obj`` is or names (a ``.cif`` or ``.cif.gz`` file), or None for any other input.

    Parameters
    ----------
    obj : any input of :func:`as_structure`

    Returns
    -------
    str or None
    """
    if isinstance(obj, str) and _text_format(obj) is not None:
        return obj if _text_format(obj) == "cif" else None
    if not isinstance(obj, (str, PathLike)):
        return None
    path = Path(obj)
    name = path.name.lower()
    if not name.endswith((".cif", ".cif.gz")) or not path.is_file():
        return None
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _from_ase(atoms, position: int) -> Structure:
    if atoms.cell.rank < 3:
        raise ValueError(
            f"input {position}: the ASE Atoms ({atoms.get_chemical_formula()}) has no three-dimensional cell; "
            "a crystal needs one (set atoms.cell, e.g. with atoms.set_cell)"
        )
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


def _read(obj: Any, position: int, cif_reader: str) -> tuple[Structure, Path | None]:
    if isinstance(obj, IStructure):
        return obj, None
    if type(obj).__name__ == "Atoms" and type(obj).__module__.startswith("ase"):
        return _from_ase(obj, position), None
    if isinstance(obj, (str, PathLike)):
        fmt = _text_format(obj) if isinstance(obj, str) else None
        if fmt is not None:
            return _from_text(obj, fmt, f"input {position}", cif_reader), None
        path = Path(obj)
        if not path.is_file():
            raise ValueError(
                f"input {position}: {str(obj)[:80]!r} is neither an existing file nor structure text "
                "(CIF, POSCAR or pymatgen JSON)"
            )
        return _read_file(path, position, cif_reader), path
    raise TypeError(
        f"input {position}: expected a pymatgen Structure, an ASE Atoms, a structure file's path or "
        f"structure text (CIF, POSCAR, JSON), got {type(obj).__name__}"
    )


def as_structure(obj: Any, position: int = 0, cif_reader: str = "auto") -> Structure:
    """Return ``obj`` as an ordered pymatgen :class:`~pymatgen.core.Structure`.

    Parameters
    ----------
    obj : Structure, IStructure, ase.Atoms, str or path-like
        A structure, a path to a file pymatgen can read (CIF, POSCAR, ...), or
        structure text: CIF, POSCAR or pymatgen JSON. A CIF with several data
        blocks is refused rather than read in part.
    position : int, default=0
        Position of ``obj`` in the caller's input, used in error messages.
    cif_reader : {"auto", "pymatgen"}, default="auto"
        ``"auto"`` reads CIF text and ``.cif`` files with gemmi where it
        gives the structure pymatgen's parser gives (the same lattice,
        species, coordinates and labels; see :mod:`skcgcnn.fast_cif`),
        several times faster; ``"pymatgen"`` always with pymatgen.

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
    structure, path = _read(obj, position, cif_reader)
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
    results = Parallel(n_jobs=capped_jobs(n_jobs), return_as="generator")(jobs)
    if verbose:
        results = tqdm(results, total=len(starts), desc="parsing structures", unit="chunk")
    return [structure for part in results for structure in part]
