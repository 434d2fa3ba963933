"""Predictions for more structures than fit in memory: read, featurize, predict and write chunk by chunk.

Rows are appended to ``OUTPUT.partial`` as each chunk is done (flushed to
disk), so memory stays flat in the number of structures and an interrupted
run loses at most one chunk: run again with ``resume=True`` and the ids
already written are skipped. The partial file becomes ``OUTPUT`` only when
every input is done, so a file under the final name is always complete.
Inputs that cannot be read are reported with their id in
``OUTPUT.errors.csv`` and skipped, or stop the run, as asked.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import hashlib
import json
import socket
from collections import Counter
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ._target import column_label, describe_target
from ._text import count
from .files import process_alive, publish
from .warn import warn

__all__ = ["iter_inputs", "predict_to_csv", "material_id"]

_STRUCTURE_FILE = re.compile(r"\.(cif|mcif|vasp|poscar|xsf|cssr|json|yaml|yml|res)(\.(gz|bz2|xz))?$", re.IGNORECASE)
_COMPANIONS = {"id_prop.csv", "atom_init.json"}  # files of the original layout that are not structures


def _is_structure_file(path: Path) -> bool:
    return bool(_STRUCTURE_FILE.search(path.name)) or path.name.upper().startswith(("POSCAR", "CONTCAR", "VASPRUN"))


def material_id(path) -> str:
    """The id a structure file stands for: its name without the format's suffixes.

    Examples
    --------
    >>> material_id("diel/mp-10086.cif"), material_id("relaxed/mp-1.vasp.gz"), material_id("POSCAR")
    ('mp-10086', 'mp-1', 'POSCAR')
    """
    name = Path(path).name
    return _STRUCTURE_FILE.sub("", name) or name


def _structure_files(folder: Path, report) -> list[Path]:
    files, skipped = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name in _COMPANIONS or entry.name.startswith("."):
            continue
        (files if entry.is_file() and _is_structure_file(entry) else skipped).append(entry)
    if not files:
        raise ValueError(f"{folder} holds no structure files (*.cif, *.vasp, POSCAR*, *.json, ...)")
    if skipped:
        names = [p.name + ("/" if p.is_dir() else "") for p in skipped]
        report(f"{folder}: skipped {count(len(skipped), 'entry', 'entries')} that are not structure files: "
               + ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""))
    return files


def _ase_database_rows(path: Path, id_column: str | None) -> Iterator[tuple[object, str]]:
    """``(Atoms, id)`` of each row of an ASE database, read one at a time by ASE's own cursor."""
    try:
        import ase.db
    except ImportError:
        raise ValueError(f"{path}: reading an ASE database needs ASE (pip install ase)") from None
    try:
        # Opened read-only first: ASE would write its own tables into any SQLite file it is given.
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as probe:
            tables = {name for (name,) in probe.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: not a readable ASE database ({exc})") from None
    if not {"systems", "keys"} <= tables:
        raise ValueError(f"{path}: an SQLite file but not an ASE database (no table 'systems'); it was not changed")
    try:
        for number, row in enumerate(ase.db.connect(str(path), type="db").select(), start=1):
            ident = row.get(id_column) if id_column else number
            if ident is None:
                raise ValueError(f"{path}: row {row.id} has no key {id_column!r}; pass the key that holds "
                                 "material ids (--id-column), or 'id' for the row ids")
            yield row.toatoms(), str(ident)
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: not a readable ASE database ({exc})") from None


def iter_inputs(paths, structure_column: str = "cif", id_column: str | None = "id", chunk_size: int = 4096,
                report=print) -> Iterator[tuple[list, list[str]]]:
    """Chunks of ``(inputs, ids)`` from structure files, folders of them, CSV files and ASE databases, in order.

    A file's id is its name without the format's suffixes (the material id
    of the original layout); a file whose id was already given gets its path
    as id. CSV files are read ``chunk_size`` rows at a time, ASE databases
    (``*.db``, SQLite) one row at a time.

    Parameters
    ----------
    paths : sequence of str or path-like
    structure_column, id_column : str
        Columns of CSV files: CIF text, and ids (``None`` numbers the
        rows). In an ASE database ``id_column`` is the key holding the ids
        (``"id"``: the row ids).
    chunk_size : int, default=4096
    report : callable, default=print
        Receives a line for each folder entry that is not a structure file.

    Yields
    ------
    inputs : list
        Paths, CIF text or ASE ``Atoms``.
    ids : list of str
    """
    import pandas as pd

    seen: set[str] = set()
    items: list = []
    ids: list[str] = []

    def add(item, ident):
        ident = str(item) if ident in seen and isinstance(item, Path) else ident
        seen.add(ident)
        items.append(item)
        ids.append(ident)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _structure_files(path, report):
                add(file, material_id(file))
                if len(items) == chunk_size:
                    yield items, ids
                    items, ids = [], []
        elif path.name.endswith((".csv", ".csv.gz")):
            columns = [structure_column] + ([id_column] if id_column else [])
            try:
                # Ids such as "NA" or "null" are ids, not missing values.
                reader = pd.read_csv(path, chunksize=chunk_size, dtype=str, encoding="utf-8-sig", usecols=columns,
                                     keep_default_na=False)
                for start, frame in enumerate(reader):
                    numbers = range(start * chunk_size, start * chunk_size + len(frame))
                    for text, ident in zip(frame[structure_column], frame[id_column] if id_column else numbers):
                        add(text, str(ident))
                    if len(items) >= chunk_size:
                        yield items, ids
                        items, ids = [], []
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        elif path.suffix == ".db" and path.is_file():
            for atoms, ident in _ase_database_rows(path, id_column):
                add(atoms, ident)
                if len(items) == chunk_size:
                    yield items, ids
                    items, ids = [], []
        elif path.is_file():
            add(path, material_id(path))
        else:
            raise ValueError(f"{path} does not exist")
        if len(items) >= chunk_size:
            yield items, ids
            items, ids = [], []
    if items:
        yield items, ids


def _done_ids(partial: Path, header: list[str]) -> Counter:
    """How many rows of each id a partial output holds; a row cut short by a kill is removed first."""
    data = partial.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(partial, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
        data = data[: data.rfind(b"\n") + 1]
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    if rows and rows[0] != header:
        raise ValueError(f"{partial} holds the columns {rows[0]}, this model writes {header}: it is the partial "
                         "output of another model; remove it or write elsewhere")
    return Counter(row[0] for row in rows[1:] if row)


def _append(path: Path, rows: list[list], header: list[str]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if new:
        writer.writerow(header)
    writer.writerows(rows)
    with open(path, "a", encoding="utf-8", newline="") as handle:
        handle.write(text.getvalue())
        handle.flush()
        os.fsync(handle.fileno())


def _graphs_of(featurize, items, ids, on_error):
    """Graphs of the inputs that can be read, and (id, message) for those that cannot."""
    try:
        return featurize(items), list(ids), []
    except (ValueError, TypeError):
        pass
    good, good_ids, errors = [], [], []
    for item, ident in zip(items, ids):  # one by one, to name the bad inputs by their ids
        try:
            good.append(featurize([item]))
            good_ids.append(ident)
        except (ValueError, TypeError) as exc:
            message = str(exc).replace("input 0", str(ident), 1)
            if on_error == "stop":
                raise type(exc)(f"{message}; the rows before it are kept: fix or remove it and run again with "
                                "--resume, or pass --on-error skip") from None
            errors.append((ident, message))
    if not good:
        return None, [], errors
    from .graphs import CrystalGraphs

    return CrystalGraphs.concatenate(good), good_ids, errors


def predict_to_csv(model, paths, output, structure_column: str = "cif", id_column: str | None = "id",
                   chunk_size: int = 4096, resume: bool = False, force: bool = False, on_error: str = "stop",
                   strict: bool = False, confidence_level: float = 0.9, report=print) -> dict:
    """Predict every input and write ``id``, predictions and ``unseen_elements`` to a CSV file, chunk by chunk.

    The prediction column is named after the target and its unit where the model carries them
    (``target_name``, ``target_unit``, a released model's card), e.g. ``band_gap (eV)``, else ``prediction``.

    Parameters
    ----------
    model : fitted CGCNN estimator or ensemble, or Pipeline of a CrystalGraphTransformer and one
        An ensemble regressor adds a ``std`` column (the members' spread); a calibrated ensemble
        (:class:`~skcgcnn.calibrated.CalibratedEnsembleRegressor`, such as this project's released models)
        its calibrated standard deviation and the bounds of its conformal interval, ``lower_90`` and
        ``upper_90`` at the default level. A :class:`~skcgcnn.calibrated.CalibratedEnsembleClassifier` adds
        the members' spread of the chosen label's probability (``std``) and the conformal prediction set
        (``set_90``: its labels joined by ``|``, several where the model is unsure).
    paths : sequence of str or path-like
        Structure files, folders of them, CSV files with CIF text, ASE
        databases (``*.db``).
    output : str or path-like
        The CSV file; ``OUTPUT.partial`` holds the rows while the run goes,
        ``OUTPUT.errors.csv`` the inputs refused.
    structure_column, id_column : str
        Columns of CSV inputs.
    chunk_size : int, default=4096
        Structures read, featurized and predicted at a time.
    resume : bool, default=False
        Continue from ``OUTPUT.partial``: ids already written (or refused)
        are skipped.
    force : bool, default=False
        Replace an existing ``OUTPUT`` (and start afresh over a partial one).
    on_error : {"stop", "skip"}, default="stop"
        What an input that cannot be read does: end the run (rows written
        so far stay in the partial file) or go to the errors file.
    strict : bool, default=False
        Refuse inputs with elements the model never saw in training (to the
        errors file) instead of predicting and flagging them.
    confidence_level : float, default=0.9
        Level of the intervals of a calibrated ensemble (ignored for other models).
    report : callable, default=print

    Returns
    -------
    dict
        ``written`` (rows of this run), ``resumed`` (rows found), ``refused``
        (rows in the errors file), ``unseen`` (rows flagged).
    """
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    errors_file = output.with_name(output.name + ".errors.csv")
    net = model[-1] if isinstance(model, Pipeline) else model
    featurize = model[:-1].transform if isinstance(model, Pipeline) else net.featurize
    classifier = is_classifier(net)
    spread = not classifier and hasattr(net, "estimators_")  # an ensemble: its members' standard deviation too
    single = net.estimators_[0] if spread else net  # what says how many outputs there are
    label = column_label(*describe_target(model))
    one = getattr(single, "y_ndim_", 1) == 1
    outputs = ([f"proba_{c}" for c in net.classes_] if classifier
               else [label] if one else [f"prediction_{k}" for k in range(single.n_outputs_)])
    outputs += (["std"] if one else [f"std_{k}" for k in range(single.n_outputs_)]) if spread else []
    calibrated = hasattr(net, "calibration_scores_")
    # A calibrated regressor's interval half-width in standard deviations; a classifier's level, its thresholds
    # read here so that a level the calibration cannot give fails before any crystal is read.
    cut = None
    if calibrated and classifier:
        net.set_threshold(confidence_level)
        cut = confidence_level
    elif calibrated:
        cut = net.interval_half_width(confidence_level)
    if calibrated:
        outputs += (["std", f"set_{100 * confidence_level:g}"] if classifier
                    else [f"lower_{100 * confidence_level:g}", f"upper_{100 * confidence_level:g}"])
    header = ["id", *([label] if classifier else []), *outputs, "unseen_elements"]
    record_file = output.with_name(output.name + ".partial.json")
    inputs = [str(Path(raw).resolve()) for raw in paths]
    if str(output.resolve()) in inputs:
        raise ValueError(f"{output} is one of the inputs; write the predictions elsewhere")
    what = {"model": _fingerprint(model), "inputs": inputs,
            "options": {"structure_column": structure_column, "id_column": id_column, "strict": strict,
                        "columns": header}}
    with _claimed(output.with_name(output.name + ".lock")):
        if force:
            for leftover in (partial, errors_file, record_file):
                leftover.unlink(missing_ok=True)
        if partial.exists() or errors_file.exists():
            if not resume:
                raise ValueError(f"{partial} holds the rows of an interrupted run: pass --resume to continue it or "
                                 "--force to start over")
            _check_continues(record_file, what, partial)
        else:
            record_file.write_text(json.dumps(what))
        done = _done_ids(partial, header) if partial.exists() else Counter()
        handled = done + (_done_ids(errors_file, ["id", "error"]) if errors_file.exists() else Counter())
        counts = {"resumed": sum(done.values()), "written": 0, "refused": sum(handled.values()) - sum(done.values()),
                  "unseen": 0}
        if handled:
            report(f"resuming: {counts['resumed']} rows written and {counts['refused']} refused before are skipped")
        seen = Counter()
        for items, ids in iter_inputs(paths, structure_column, id_column, chunk_size, report):
            todo = []
            for k, ident in enumerate(ids):
                seen[ident] += 1  # the n-th row of an id is skipped if n rows of it were handled before
                if seen[ident] > handled[ident]:
                    todo.append(k)
            if todo:
                _predict_chunk(net, featurize, [items[k] for k in todo], [ids[k] for k in todo], on_error, strict,
                               classifier, spread, cut, partial, errors_file, header, counts)
        repeated = [ident for ident, n in seen.items() if n > 1]
        if repeated:
            warn(f"{count(len(repeated), 'id appears', 'ids appear')} more than once in the inputs (e.g. "
                 f"{repeated[0]!r}); their rows are kept in input order under the same id")
        if not partial.exists():
            _append(partial, [], header)
        try:
            publish(partial, output, overwrite=force)
        except FileExistsError:
            raise ValueError(f"{output} appeared while this command ran; the rows stay in {partial}") from None
        record_file.unlink(missing_ok=True)
    return counts


def _predict_chunk(net, featurize, items, ids, on_error, strict, classifier, spread, cut, partial,
                   errors_file, header, counts) -> None:
    """Featurize, predict and append one chunk's rows (and its refused inputs)."""
    graphs, good_ids, errors = _graphs_of(featurize, items, ids, on_error)
    rows = []
    if graphs is not None:
        unseen = net.unseen_elements(graphs)
        keep = np.array([not (strict and symbols) for symbols in unseen])
        errors += [(i, "elements absent from the model's training data: " + ", ".join(s))
                   for i, s, k in zip(good_ids, unseen, keep) if not k]
        if keep.any():
            graphs = graphs[np.flatnonzero(keep)]
            good_ids = [i for i, k in zip(good_ids, keep) if k]
            unseen = [s for s, k in zip(unseen, keep) if k]
            extra = [[]] * len(good_ids)
            if classifier and cut is not None:
                values, std = net.predict_proba(graphs, return_std=True)
                best = values.argmax(axis=1)
                sets = net.prediction_sets(values, std, cut)
                extra = [[float(d), "|".join(map(str, net.classes_[row]))]
                         for d, row in zip(std[np.arange(len(best)), best], sets)]
                labels = [[label] for label in net.classes_[best]]
            elif classifier:
                values = net.predict_proba(graphs)
                labels = [[label] for label in net.classes_[values.argmax(axis=1)]]
            else:
                found = net.predict(graphs, return_std=True) if spread else (net.predict(graphs),)
                if cut is not None:
                    found = (*found, found[0] - cut * found[1], found[0] + cut * found[1])
                values = np.hstack([np.asarray(v).reshape(len(good_ids), -1) for v in found])
                labels = [[]] * len(good_ids)
            rows += [[ident, *label, *value.tolist(), *more, " ".join(symbols)]
                     for ident, label, value, more, symbols in zip(good_ids, labels, values, extra, unseen)]
            counts["unseen"] += sum(bool(s) for s in unseen)
    if rows:
        _append(partial, rows, header)
        counts["written"] += len(rows)
    if errors:
        _append(errors_file, [list(e) for e in errors], ["id", "error"])
        counts["refused"] += len(errors)


def _fingerprint(model) -> str:
    """A digest of what a model computes: every network's weights and its target scaling or classes."""
    from sklearn.pipeline import Pipeline

    net = model[-1] if isinstance(model, Pipeline) else model
    digest = hashlib.sha256()
    for member in getattr(net, "estimators_", [net]):
        for name, tensor in member.module_.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().float().numpy().tobytes())
        for name in ("y_mean_", "y_scale_", "classes_"):
            digest.update(repr(np.asarray(getattr(member, name, [])).tolist()).encode())
    return digest.hexdigest()


def _check_continues(record_file: Path, what: dict, partial: Path) -> None:
    """Refuse to resume rows written by another model, from other inputs or with other options."""
    try:
        before = json.loads(record_file.read_text())
    except (OSError, ValueError):
        raise ValueError(f"{partial}: nothing records which model and inputs wrote it, so it cannot be continued "
                         "safely; pass --force to start over") from None
    changed = [key for key in ("model", "inputs", "options") if before.get(key) != what[key]]
    if changed:
        raise ValueError(f"{partial} was written with other {' and '.join(changed)}; resuming would mix two runs' "
                         "rows: give the same ones, or pass --force to start over")


@contextmanager
def _claimed(lock: Path):
    """One writer per output: a lock file naming its process; a dead process's lock on this machine is taken over."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        try:
            with open(lock, "x") as handle:
                handle.write(me)
            break
        except FileExistsError:
            host, _, pid = lock.read_text().rpartition(":")
            if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            raise ValueError(f"{lock.name.removesuffix('.lock')} is being written by process {pid} on {host}; "
                             f"wait for it, or remove {lock} if that process no longer runs") from None
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
