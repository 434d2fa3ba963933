"""Read crystal data sets from disk: the original CGCNN folder layout, CSV files, matbench JSON."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from os import PathLike
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from ..elements import AtomFeatures
from ..structures import as_structure, as_structure_list

__all__ = ["load_cgcnn_dir", "load_csv", "load_matbench"]


def _target_array(values: list[list[float]]) -> np.ndarray:
    y = np.asarray(values, dtype=np.float64)
    return y[:, 0] if y.shape[1] == 1 else y


class _text:
    """A UTF-8 text file (a byte-order mark, as Excel writes, is skipped); other encodings named in the error."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        raw = self.path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{self.path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                "save it as UTF-8"
            ) from None
        return io.StringIO(text, newline="")

    def __exit__(self, *exc):
        return False


def load_cgcnn_dir(
    path: str | PathLike, n_jobs: int | None = None, verbose: int = 0, return_atom_features: bool = False,
    parse: bool = True,
):
    """Load a data set in the original CGCNN layout.

    The folder holds ``id_prop.csv`` (no header; each line ``id,target`` or
    ``id,target1,target2,...``; a single column of text is read as class
    labels) and one ``<id>.cif`` per line, optionally an ``atom_init.json``
    with the atom feature vectors.

    Parameters
    ----------
    path : str or path-like
        The folder (or its ``id_prop.csv``).
    n_jobs : int, default=None
        Processes used to parse the CIF files.
    verbose : int, default=0
        Show a progress bar when positive.
    return_atom_features : bool, default=False
        Also return the folder's ``atom_init.json`` as :class:`AtomFeatures`
        (``None`` when the folder has none), for
        ``CrystalGraphTransformer(atom_features=...)``.
    parse : bool, default=True
        Parse the CIF files into structures; ``False`` returns their paths,
        which :class:`~skcgcnn.CrystalGraphTransformer` reads itself (with
        its fast CIF path: much faster when only graphs are wanted).

    Returns
    -------
    structures : list of Structure (of str, the CIF paths, when ``parse=False``)
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Floats, or strings for class labels.
    ids : list of str
    atom_features : AtomFeatures or None
        Only when ``return_atom_features`` is true.

    Raises
    ------
    FileNotFoundError
        If ``id_prop.csv`` or a CIF file named by it is missing.
    ValueError
        On duplicate ids, a line with a missing, NaN or infinite target, text
        among numbers, lines with different numbers of targets, or a file
        that is not UTF-8; the message names the id and line.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> folder = Path(tempfile.mkdtemp())
    >>> structures, energies = make_ionic_crystals(3, random_state=0)
    >>> for i, s in enumerate(structures):
    ...     _ = s.to(filename=str(folder / f"c{i}.cif"))
    >>> _ = (folder / "id_prop.csv").write_text(chr(10).join(["c0,1.5", "c1,2.0", "c2,0.5"]))
    >>> X, y, ids = load_cgcnn_dir(folder)
    >>> ids, y.tolist()
    (['c0', 'c1', 'c2'], [1.5, 2.0, 0.5])
    """
    folder = Path(path)
    if folder.name == "id_prop.csv" and folder.is_file():
        folder = folder.parent  # the table was named instead of its folder
    table = folder / "id_prop.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{folder} has no id_prop.csv; expected the original CGCNN layout")
    ids, targets, files, seen, labels = [], [], [], {}, []
    with _text(table) as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            where = f"{table}, line {line_no}"
            ident = row[0].strip()
            if len(row) < 2:
                raise ValueError(f"{where}: id {ident!r} has no target value")
            if ident in seen:
                raise ValueError(f"{where}: id {ident!r} repeats line {seen[ident]}")
            try:
                values = [float(v) for v in row[1:]]
            except ValueError:
                # A single column of text is class labels, if every line holds one.
                if len(row) != 2 or (targets and not labels):
                    raise ValueError(f"{where}: id {ident!r} has a non-numeric target {row[1:]!r}") from None
                labels.append(row[1].strip())
                values = []
            if labels and values:
                raise ValueError(f"{where}: id {ident!r} has a numeric target among class labels {row[1:]!r}")
            if not np.isfinite(values).all():
                raise ValueError(f"{where}: id {ident!r} has a NaN or infinite target {row[1:]!r}")
            if targets and len(values) != len(targets[0]):
                raise ValueError(
                    f"{where}: id {ident!r} has {len(values)} targets, earlier lines have {len(targets[0])}"
                )
            cif = folder / f"{ident}.cif"
            if not cif.is_file():
                raise FileNotFoundError(f"{where}: id {ident!r} has no CIF file {cif}")
            seen[ident] = line_no
            ids.append(ident)
            targets.append(values)
            files.append(cif)
    if not ids:
        raise ValueError(f"{table} lists no structures")
    structures = as_structure_list(files, n_jobs=n_jobs, verbose=verbose) if parse else [str(f) for f in files]
    result = (structures, np.asarray(labels) if labels else _target_array(targets), ids)
    if return_atom_features:
        atom_init = folder / "atom_init.json"
        result += (AtomFeatures.from_spec(atom_init) if atom_init.is_file() else None,)
    return result


def load_csv(
    path: str | PathLike,
    target: str | list[str] | None,
    structure_column: str = "cif",
    id_column: str | None = "id",
    query: str | None = None,
    missing: str = "raise",
    nrows: int | None = None,
    parse: bool = True,
    n_jobs: int | None = None,
    verbose: int = 0,
):
    """Load a CSV file (optionally gzipped) with one structure per row.

    Parameters
    ----------
    path : str or path-like
        The file; ``.gz`` files are decompressed on the fly.
    target : str, list of str or None
        Target column(s): one name gives a 1-D ``y``, a list a 2-D ``y``;
        ``None`` reads structures only (``y`` is ``None``). Numeric columns
        are read as floats; a single column of text or booleans is returned
        as class labels.
    structure_column : str, default="cif"
        Column holding CIF text or paths of structure files.
    id_column : str or None, default="id"
        Column of identifiers; ``None`` numbers the rows.
    query : str, default=None
        A :meth:`pandas.DataFrame.query` expression selecting rows, e.g.
        ``"in_cgcnn_bandgap_ids == 1"``.
    missing : {"raise", "drop"}, default="raise"
        What to do with rows whose target is missing.
    nrows : int, default=None
        Read only the first ``nrows`` rows.
    parse : bool, default=True
        Parse the structures. ``False`` returns the raw column (CIF text),
        which :class:`~skcgcnn.CrystalGraphTransformer` parses in its own
        parallel workers.
    n_jobs : int, default=None
        Processes used to parse.
    verbose : int, default=0
        Show a progress bar when positive.

    Returns
    -------
    structures : list of Structure (or of str when ``parse=False``)
    y : ndarray of shape (n_samples,) or (n_samples, n_targets), or None
    ids : list of str

    Raises
    ------
    ValueError
        If a named column is absent, a target is missing with
        ``missing="raise"`` (the message names the ids), a numeric target
        column holds stray text, or no row is left.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> structures, energies = make_ionic_crystals(4, random_state=0)
    >>> path = tempfile.mkdtemp() + "/data.csv.gz"
    >>> pd.DataFrame({"id": ["a", "b", "c", "d"], "cif": [s.to(fmt="cif") for s in structures],
    ...               "energy": [1.0, None, 3.0, 4.0]}).to_csv(path, index=False)
    >>> X, y, ids = load_csv(path, target="energy", missing="drop")
    >>> ids, y.tolist()
    (['a', 'c', 'd'], [1.0, 3.0, 4.0])
    """
    import pandas as pd

    if missing not in ("raise", "drop"):
        raise ValueError(f"missing must be 'raise' or 'drop', got {missing!r}")
    try:
        frame = pd.read_csv(path, nrows=nrows, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    targets = [] if target is None else [target] if isinstance(target, str) else list(target)
    wanted = [structure_column, *targets] + ([id_column] if id_column else [])
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise ValueError(f"{path} has no column(s) {absent}; its columns are {list(frame.columns)}")
    if query:
        frame = frame.query(query)
    ids = frame[id_column].astype(str).tolist() if id_column else [str(i) for i in frame.index]
    y = None
    if targets:
        raw = frame[targets]
        missing_rows = raw.isna().any(axis=1).to_numpy()
        if missing_rows.any() and missing == "raise":
            first = [ids[i] for i in np.flatnonzero(missing_rows)[:5]]
            raise ValueError(
                f"{path}: {int(missing_rows.sum())} rows have no {targets} value (e.g. ids {first}); "
                "pass missing='drop' to leave them out"
            )
        frame, raw = frame[~missing_rows], raw[~missing_rows]
        ids = [i for i, m in zip(ids, missing_rows) if not m]
        y = _targets_of(raw, ids, path)
    if len(frame) == 0:
        raise ValueError(f"{path}: no rows left to load")
    column = frame[structure_column].tolist()
    structures = as_structure_list(column, n_jobs=n_jobs, verbose=verbose) if parse else column
    return structures, y, ids


_WITH_UNIT = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*[^\d\s.,;:+-][^,;]*$")


def _targets_of(raw, ids: list[str], path) -> np.ndarray:
    """Numeric columns as floats; a single column of text or booleans as class labels."""
    import pandas as pd

    numeric = raw.apply(pd.to_numeric, errors="coerce")
    stray = (numeric.isna() & raw.notna()).any(axis=1).to_numpy()
    if not stray.any():
        values = numeric.to_numpy(np.float64)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{path}: {int(bad.sum())} row(s) hold an infinite target, first id {ids[row]!r} "
                f"({raw.iloc[row].tolist()})"
            )
        return _target_array(values.tolist())
    for column in raw.columns:
        text = raw[column].dropna().astype(str)
        if len(text) and text.str.match(_WITH_UNIT).all():
            raise ValueError(
                f"{path}: column {column!r} holds numbers with units (e.g. {text.iloc[0]!r}); "
                "write plain numbers (the units in the column name) so that they are not read as class labels"
            )
    if raw.shape[1] == 1 and stray.all():
        return raw.iloc[:, 0].to_numpy()
    first = [ids[i] for i in np.flatnonzero(stray)[:5]]
    raise ValueError(
        f"{path}: {int(stray.sum())} rows hold non-numeric targets among numeric ones (e.g. ids {first}); "
        "only a single column of labels may be non-numeric"
    )


def _read_json(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def load_matbench(path: str | PathLike, target: str | None = None):
    """Load a matbench task file (pandas ``orient="split"`` JSON, optionally gzipped).

    Parameters
    ----------
    path : str or path-like
        A ``matbench_*.json`` or ``.json.gz`` file.
    target : str, default=None
        Target column; by default the one column besides ``structure``.

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,)
        Float values, or the labels (e.g. booleans) for classification tasks.
    ids : list of str
        The matbench ids (``mb-...``).

    Raises
    ------
    ValueError
        If the file is not in the matbench layout or a structure cannot be read.

    Examples
    --------
    >>> X, y, ids = load_matbench("matbench_log_kvrh.json.gz")  # doctest: +SKIP
    >>> ids[0]  # doctest: +SKIP
    'mb-log-kvrh-00001'
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not {"columns", "data"} <= set(data):
        raise ValueError(f"{path} is not a matbench file (a JSON object with 'columns' and 'data')")
    columns = list(data["columns"])
    if "structure" not in columns:
        raise ValueError(f"{path} has no 'structure' column; its columns are {columns}")
    others = [c for c in columns if c != "structure"]
    if target is None:
        if len(others) != 1:
            raise ValueError(f"{path} has several target columns {others}; pass target=")
        target = others[0]
    if target not in others:
        raise ValueError(f"{path} has no column {target!r}; its columns are {columns}")
    s_col, t_col = columns.index("structure"), columns.index(target)
    ids = [str(i) for i in data.get("index", range(len(data["data"])))]
    structures = []
    for position, row in enumerate(data["data"]):
        try:
            structure = Structure.from_dict(row[s_col])
        except Exception as exc:
            raise ValueError(f"{path}: row {position} (id {ids[position]}): not a structure ({exc})") from None
        structures.append(as_structure(structure, position))
    y = np.asarray([row[t_col] for row in data["data"]])
    if y.dtype.kind in "iu":
        y = y.astype(np.float64)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{path}: row {row} (id {ids[row]}) has a NaN or infinite {target!r}")
    return structures, y, ids
