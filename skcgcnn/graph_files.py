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
from .graphs import CrystalGraphs, GraphSettings

__all__ = ["save_graphs", "load_graphs", "GRAPHS_FORMAT", "GRAPHS_FORMAT_VERSION"]

GRAPHS_FORMAT = "skcgcnn-graphs"
GRAPHS_FORMAT_VERSION = 1
_SETTINGS = ("radius", "max_num_nbr", "dmin", "step", "nbr_rule", "tie_tol")


def save_graphs(graphs: CrystalGraphs, path, force: bool = False) -> Path:
    """Write crystal graphs as a folder of NumPy files.

    Parameters
    ----------
    graphs : CrystalGraphs
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
    """
    path = Path(path)
    if path.exists():
        if not force:
            raise ValueError(f"{path} exists; pass force=True to replace it")
        if not (path / "format.json").is_file():
            raise ValueError(f"{path} exists and is not a folder of crystal graphs; it is left as it is")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        s = graphs.settings
        np.save(tmp / "atom_features_table.npy", s.atom_features.table)
        np.save(tmp / "atom_features_known.npy", s.atom_features.known)
        for name in CrystalGraphs._ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(graphs, name)))
        header = {"format": GRAPHS_FORMAT, "format_version": GRAPHS_FORMAT_VERSION, "n_crystals": len(graphs),
                  "settings": {k: getattr(s, k) for k in _SETTINGS}, "atom_features": s.atom_features.name}
        (tmp / "format.json").write_text(json.dumps(header, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


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
    mode = "r" if mmap else None
    try:
        features = AtomFeatures(np.load(path / "atom_features_table.npy"), np.load(path / "atom_features_known.npy"),
                                header["atom_features"])
        settings = GraphSettings(atom_features=features, **header["settings"])
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                  for name in CrystalGraphs._ARRAYS}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: a file is missing or damaged ({exc})") from None
    graphs = CrystalGraphs(**arrays, settings=settings)
    if len(graphs) != header.get("n_crystals") or graphs.offsets[-1] != len(graphs.atomic_numbers) \
            or graphs.edge_offsets[-1] != len(graphs.nbr_idx):
        raise ValueError(f"{path}: the arrays do not agree with each other or with format.json (truncated?)")
    return graphs
