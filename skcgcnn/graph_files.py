"""Crystal graphs on disk: featurize a data set once, load it back memory-mapped for every later run.

The format is a folder (by convention named ``*.graphs``) of plain NumPy
files, readable without skcgcnn and without unpickling anything:

* ``format.json``: the format's name and version, the number of crystals,
  the graph settings (radius, neighbours, Gaussians, neighbour rule) and the
  atom feature set's name;
* ``atom_features_table.npy``, ``atom_features_known.npy``: the atom
  feature table the graphs were built with;
* one ``.npy`` per array of :class:`~skcgcnn.CrystalGraphs`
  (``atomic_numbers``, ``nbr_count``, ``nbr_shared``, ``nbr_idx``,
  ``nbr_dist``, ``offsets``, ``edge_offsets``).

Loaded with ``mmap=True`` (the default), the arrays stay on disk and the
operating system pages in what a batch touches, so a data set larger than
memory trains and predicts as it is.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .elements import AtomFeatures
from .files import remove_stale_temporaries, temporary_path
from .graphs import CrystalGraphs, GraphSettings

__all__ = ["save_graphs", "load_graphs", "iter_graphs", "GRAPHS_FORMAT", "GRAPHS_FORMAT_VERSION"]

GRAPHS_FORMAT = "skcgcnn-graphs"
GRAPHS_FORMAT_VERSION = 1
_SETTINGS = ("radius", "max_num_nbr", "dmin", "step", "nbr_rule", "tie_tol")


def save_graphs(graphs, path, force: bool = False) -> Path:
    """Write crystal graphs as a folder of NumPy files.

    Parameters
    ----------
    graphs : CrystalGraphs or iterable of CrystalGraphs
        The graphs, or chunks of them (built with the same settings) that
        are written as they come, so that memory holds one chunk at a time
        whatever the number of crystals.
    path : str or path-like
        The folder to create (conventionally ``*.graphs``). It is written
        under a temporary name and renamed when complete.
    force : bool, default=False
        Replace an existing folder of graphs.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile
    >>> from skcgcnn import CrystalGraphTransformer
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> graphs = CrystalGraphTransformer().transform(make_ionic_crystals(5, random_state=0)[0])
    >>> path = save_graphs(graphs, Path(tempfile.mkdtemp()) / "ionic.graphs")
    >>> back = load_graphs(path)
    >>> len(back), type(back.nbr_dist).__name__, back.settings == graphs.settings
    (5, 'memmap', True)
    >>> chunked = save_graphs((graphs[:2], graphs[2:]), path, force=True)
    >>> bool((load_graphs(chunked).nbr_dist == graphs.nbr_dist).all())
    True
    """
    path = Path(path)
    if path.exists():
        if not force:
            raise ValueError(f"{path} exists; pass force=True to replace it")
        if not (path / "format.json").is_file():
            raise ValueError(f"{path} exists and is not a folder of crystal graphs; it is left as it is")
    remove_stale_temporaries(path.parent)  # what a killed save left
    tmp = temporary_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        n_crystals, settings, arrays = _write_raw(tmp, [graphs] if isinstance(graphs, CrystalGraphs) else graphs)
        for name, (dtype, length) in arrays.items():
            _raw_to_npy(tmp / f"{name}.raw", tmp / f"{name}.npy", dtype, length)
        np.save(tmp / "atom_features_table.npy", settings.atom_features.table)
        np.save(tmp / "atom_features_known.npy", settings.atom_features.known)
        header = {"format": GRAPHS_FORMAT, "format_version": GRAPHS_FORMAT_VERSION, "n_crystals": n_crystals,
                  "settings": {k: getattr(settings, k) for k in _SETTINGS},
                  "atom_features": settings.atom_features.name}
        (tmp / "format.json").write_text(json.dumps(header, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_raw(folder: Path, chunks) -> tuple[int, GraphSettings, dict]:
    """Append every chunk's arrays to raw files (offsets made global); their dtypes and lengths."""
    files = {name: open(folder / f"{name}.raw", "wb") for name in CrystalGraphs.ARRAYS}
    try:
        settings, dtypes = None, {}
        n_crystals = n_atoms = n_edges = 0
        for number, chunk in enumerate(chunks):
            if not isinstance(chunk, CrystalGraphs):
                raise TypeError(f"save_graphs needs CrystalGraphs or chunks of them, got {type(chunk).__name__}")
            if settings is None:
                settings = chunk.settings
                dtypes = {name: getattr(chunk, name).dtype for name in CrystalGraphs.ARRAYS}
                for name in ("offsets", "edge_offsets"):
                    np.zeros(1, dtypes[name]).tofile(files[name])
            elif chunk.settings != settings:
                raise ValueError(f"chunk {number} was built with {chunk.settings.describe()}, the first with "
                                 f"{settings.describe()}")
            for name in CrystalGraphs.ARRAYS[:5]:
                np.ascontiguousarray(getattr(chunk, name), dtype=dtypes[name]).tofile(files[name])
            (chunk.offsets[1:] - chunk.offsets[0] + n_atoms).astype(dtypes["offsets"]).tofile(files["offsets"])
            (chunk.edge_offsets[1:] - chunk.edge_offsets[0] + n_edges).astype(dtypes["edge_offsets"]).tofile(
                files["edge_offsets"])
            n_crystals += len(chunk)
            n_atoms += int(chunk.offsets[-1] - chunk.offsets[0])
            n_edges += int(chunk.edge_offsets[-1] - chunk.edge_offsets[0])
    finally:
        for handle in files.values():
            handle.close()
    if settings is None:
        raise ValueError("no crystal graphs to save")
    lengths = {"atomic_numbers": n_atoms, "nbr_count": n_atoms, "nbr_shared": n_atoms, "nbr_idx": n_edges,
               "nbr_dist": n_edges, "offsets": n_crystals + 1, "edge_offsets": n_crystals + 1}
    return n_crystals, settings, {name: (dtypes[name], lengths[name]) for name in CrystalGraphs.ARRAYS}


def _raw_to_npy(raw: Path, npy: Path, dtype: np.dtype, length: int) -> None:
    """A ``.npy`` file of the raw data: NumPy's header (now that the length is known), then the bytes."""
    with open(npy, "wb") as out, open(raw, "rb") as data:
        np.lib.format.write_array_header_1_0(
            out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)})
        shutil.copyfileobj(data, out, 16 << 20)
    raw.unlink()


def load_graphs(path, mmap: bool = True) -> CrystalGraphs:
    """Read crystal graphs written by :func:`save_graphs`.

    Parameters
    ----------
    path : str or path-like
    mmap : bool, default=True
        Map the arrays from disk (read-only) instead of reading them into
        memory.

    Returns
    -------
    CrystalGraphs
        Usable as it is by the estimators (``fit``, ``predict``) and by
        scikit-learn's splitters.

    Raises
    ------
    ValueError
        One line naming the folder: not a folder of graphs, of a newer format
        version, or with a file missing or inconsistent.
    """
    path = Path(path)
    header, settings = _read_header(path)
    mode = "r" if mmap else None
    try:
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                  for name in CrystalGraphs.ARRAYS}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: a file is missing or damaged ({exc})") from None
    graphs = CrystalGraphs(**arrays, settings=settings)
    if len(graphs) != header.get("n_crystals") or graphs.offsets[-1] != len(graphs.atomic_numbers) \
            or graphs.edge_offsets[-1] != len(graphs.nbr_idx):
        raise ValueError(f"{path}: the arrays do not agree with each other or with format.json (truncated?)")
    return graphs


def _read_header(path: Path) -> tuple[dict, GraphSettings]:
    header_file = path / "format.json"
    if not header_file.is_file():
        raise ValueError(f"{path}: not a folder of crystal graphs (no format.json)")
    try:
        header = json.loads(header_file.read_text())
    except ValueError:
        raise ValueError(f"{header_file}: damaged, not JSON") from None
    if header.get("format") != GRAPHS_FORMAT:
        raise ValueError(f"{path}: not a folder of crystal graphs")
    if header.get("format_version", 0) > GRAPHS_FORMAT_VERSION:
        raise ValueError(f"{path}: graphs format version {header['format_version']}; this skcgcnn reads up to "
                         f"{GRAPHS_FORMAT_VERSION}: upgrade skcgcnn to load it")
    try:
        features = AtomFeatures(np.load(path / "atom_features_table.npy"), np.load(path / "atom_features_known.npy"),
                                header["atom_features"])
        return header, GraphSettings(atom_features=features, **header["settings"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: a file is missing or damaged ({exc})") from None


class _NpyReader:
    """Reads ranges of a 1-D ``.npy`` file with plain reads: memory holds the range, not the pages of a map."""

    def __init__(self, file: Path):
        self.handle = open(file, "rb")
        version = np.lib.format.read_magic(self.handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, self.dtype = read_header(self.handle)
        self.length, self.start = shape[0], self.handle.tell()

    def read(self, begin: int, end: int) -> np.ndarray:
        self.handle.seek(self.start + begin * self.dtype.itemsize)
        values = np.fromfile(self.handle, dtype=self.dtype, count=end - begin)
        if len(values) != end - begin:
            raise ValueError(f"{self.handle.name}: holds fewer values than the offsets need (truncated?)")
        return values


def iter_graphs(path, chunk_size: int = 4096):
    """Read a folder written by :func:`save_graphs` chunk by chunk, in order.

    Unlike :func:`load_graphs`, memory holds one chunk at a time (no map
    whose pages stay resident as they are read), for a pass over more
    crystals than fit in memory, such as predicting all of them.

    Parameters
    ----------
    path : str or path-like
    chunk_size : int, default=4096
        Crystals per chunk.

    Yields
    ------
    CrystalGraphs
        Consecutive chunks with crystal-local offsets.

    Examples
    --------
    >>> import tempfile
    >>> from skcgcnn import CrystalGraphTransformer
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> graphs = CrystalGraphTransformer().transform(make_ionic_crystals(10, random_state=0)[0])
    >>> path = save_graphs(graphs, Path(tempfile.mkdtemp()) / "ionic.graphs")
    >>> [len(chunk) for chunk in iter_graphs(path, chunk_size=4)]
    [4, 4, 2]
    """
    path = Path(path)
    header, settings = _read_header(path)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    try:
        readers = {name: _NpyReader(path / f"{name}.npy") for name in CrystalGraphs.ARRAYS}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: a file is missing or damaged ({exc})") from None
    try:
        n = readers["offsets"].length - 1
        if n != header.get("n_crystals"):
            raise ValueError(f"{path}: the arrays do not agree with each other or with format.json (truncated?)")
        for begin in range(0, n, chunk_size):
            end = min(begin + chunk_size, n)
            offsets = readers["offsets"].read(begin, end + 1)
            edge_offsets = readers["edge_offsets"].read(begin, end + 1)
            atoms = {name: readers[name].read(offsets[0], offsets[-1])
                     for name in ("atomic_numbers", "nbr_count", "nbr_shared")}
            edges = {name: readers[name].read(edge_offsets[0], edge_offsets[-1]) for name in ("nbr_idx", "nbr_dist")}
            yield CrystalGraphs(**atoms, **edges, offsets=offsets - offsets[0],
                                edge_offsets=edge_offsets - edge_offsets[0], settings=settings)
    finally:
        for reader in readers.values():
            reader.handle.close()
