"""``skcgcnn fit``: train in a run folder that keeps checkpoints and can be resumed."""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .._text import count
from ..files import MODEL_SUFFIX, atomic_path, remove_stale_temporaries
from ..runs import run_callbacks
from ._common import (add_data_options, add_model_options, as_labels, is_classification, load_training_data,
                      network, save, write_table)


def add_parser(sub) -> None:
    """The ``fit`` command and its options."""
    import inspect

    from ..graphs import NBR_RULES, CrystalGraphTransformer

    graph = {name: p.default for name, p in inspect.signature(CrystalGraphTransformer).parameters.items()}
    fit = sub.add_parser("fit", help="train a model in a run folder that keeps checkpoints and can be resumed")
    add_data_options(fit, data_optional=True)
    fit.add_argument("--val-size", type=float, default=0.1,
                     help="share used to pick the best epoch (default 0.1)")
    fit.add_argument("--val-data", metavar="PATH", help="validation crystals given apart (same forms as DATA); "
                                                        "DATA is then the training set")
    fit.add_argument("--test-data", metavar="PATH", help="test crystals given apart (same forms as DATA)")
    fit.add_argument("--split", metavar="CSV", help="a fixed split: a CSV file with the columns id and set "
                                                    "(train, val or test), such as a run folder's split.csv")
    fit.add_argument("--duplicates", choices=["report", "drop", "skip"], default="report",
                     help="crystals that appear more than once (pymatgen's StructureMatcher): list them, above "
                          "all pairs across the split, in duplicates.csv; also drop all copies but one; or do not "
                          "look (default report)")
    fit.add_argument("--target-name", default=None,
                     help="what the target is, for figures and the summary (default: the CSV or matbench column; "
                          "'target' for a folder)")
    fit.add_argument("--unit", default="", help="the target's unit, e.g. eV/atom, for figures and the summary")
    fit.add_argument("--radius", type=float, default=graph["radius"], help="neighbour search radius in Å")
    fit.add_argument("--max-num-nbr", type=int, default=graph["max_num_nbr"],
                     help="neighbours kept per atom (the paper's M)")
    fit.add_argument("--step", type=float, default=graph["step"],
                     help="spacing in Å of the Gaussians expanding distances")
    fit.add_argument("--nbr-rule", choices=NBR_RULES, default=graph["nbr_rule"],
                     help="neighbours tied with the M-th: 'shared' share the last slots, so the graph does not "
                          "depend on the cell; 'first' keeps the first M, as the original code")
    fit.add_argument("--tie-tol", type=float, default=graph["tie_tol"],
                     help="distances within this many Å of the M-th neighbour's are tied")
    add_model_options(fit)
    fit.add_argument("--lr-schedule", choices=["cosine", "plateau", "constant"], default="cosine",
                     help="cosine annealing over --epochs, halving when the validation score stalls for "
                          "--lr-patience epochs, or none (default cosine)")
    fit.add_argument("--lr-patience", type=int, default=10, help="epochs without improvement before the "
                                                                 "plateau schedule halves the rate (default 10)")
    fit.add_argument("--patience", type=int, default=None,
                     help="stop when the validation score has not improved for this many epochs (default: never)")
    fit.add_argument("-o", "--output", default="skcgcnn_run", metavar="FOLDER",
                     help="the run folder (default skcgcnn_run): model, best model so far, checkpoints, log, "
                          "split, test predictions and figures")
    fit.add_argument("--format", choices=["skcgcnn", "joblib"], default="skcgcnn",
                     help="format of the final model: the skcgcnn model file, safe to share (default), or a "
                          "joblib pickle")
    fit.add_argument("--resume", metavar="FOLDER", help="continue an interrupted run from its last checkpoint, "
                                                        "with the arguments it was started with")
    fit.add_argument("--force", action="store_true", help="replace an existing run folder")
    fit.set_defaults(func=run)
    _DEFAULTS.update({action.dest: action.default for action in fit._actions})


# The defaults of fit's options: what --resume tells a given option from (it keeps the run's own).
_DEFAULTS: dict = {}
# What --resume may be given besides the run folder.
_RESUME_OPTIONS = {"resume", "n_jobs", "func", "argv", "received_signals", "help"}


def run(args: argparse.Namespace) -> int:
    """Start a run, or resume one, with its output teed into the run's log."""
    from contextlib import redirect_stdout

    from ..estimators import check_device
    from ..runs import RunFolder, Tee

    if args.resume:
        given = sorted("DATA" if name == "data" else f"--{name.replace('_', '-')}" for name, value in vars(args).items()
                       if name not in _RESUME_OPTIONS and name in _DEFAULTS and value != _DEFAULTS[name])
        if given:
            raise ValueError(f"--resume continues a run with its recorded arguments: give only the run folder "
                             f"(and --n-jobs); {', '.join(given)} would be ignored")
        folder = RunFolder.open(args.resume)
        folder.check_not_running("resuming")
        for place in (folder.path, folder.checkpoint_dir):
            if place.is_dir():
                remove_stale_temporaries(place)  # what the interrupted run left half-written
        folder.check_checkpoint()
        if folder.record.get("status") == "complete":
            raise ValueError(f"{folder.path}: the run is complete; there is nothing to resume")
        n_jobs = args.n_jobs
        args = argparse.Namespace(**{**folder.record["arguments"], "func": args.func, "resume": str(folder.path),
                                     "received_signals": args.received_signals, "argv": args.argv})
        args.n_jobs = n_jobs if n_jobs is not None else args.n_jobs
    elif args.data is None:
        raise ValueError("give DATA to train on (or --resume FOLDER to continue a run)")
    else:
        if args.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
        check_device(args.device)
        for name in ("data", "val_data", "test_data", "split", "atom_features"):
            value = getattr(args, name)
            if value is not None and Path(value).exists():  # so that a resume works from any folder
                setattr(args, name, str(Path(value).resolve()))
        folder = RunFolder.create(args.output, args.force)
    try:
        with open(folder / "log.txt", "a", encoding="utf-8", buffering=1) as log, \
                redirect_stdout(Tee(sys.stdout, log)):
            return _fit_run(args, folder)
    except BaseException:
        if not args.resume and folder.epochs_done() == 0:
            folder.discard()  # nothing of value yet: leave nothing that blocks a retry
        raise


def _fit_data(args):
    """Everything ``fit`` trains and scores on, with the set of each crystal (None: split at random)."""
    from ..splits import read_split

    X, y, ids, atom_features = load_training_data(args)
    sets = None
    extra = [(name, path) for name, path in (("val", args.val_data), ("test", args.test_data)) if path]
    if extra:
        sets = ["train"] * len(ids)
        for name, path in extra:
            X_more, y_more, ids_more, _ = load_training_data(args, path)
            if y_more.ndim != y.ndim or y_more.shape[1:] != y.shape[1:]:
                raise ValueError(f"{path} holds targets of shape {y_more.shape[1:]}, DATA of shape {y.shape[1:]}")
            X, y, ids = X + X_more, np.concatenate([y, y_more]), ids + ids_more
            sets += [name] * len(ids_more)
        sets = np.array(sets)
    if args.split:
        sets = read_split(args.split, ids)
    return X, y, ids, atom_features, sets


def _fingerprint(ids, y) -> str:
    return hashlib.sha256(json.dumps([list(ids), np.asarray(y).tolist()]).encode()).hexdigest()


def _graphs_fingerprint(graphs) -> str:
    """A digest of the crystal graphs: what the structures are, not only their ids and targets."""
    digest = hashlib.sha256()
    for name in graphs.ARRAYS:
        digest.update(np.ascontiguousarray(getattr(graphs, name)).tobytes())
    return digest.hexdigest()


def _split_indices(args, sets, n, stratify):
    from ..splits import train_val_test_split

    if sets is None:
        return train_val_test_split(n, args.val_size, args.test_size, args.seed, stratify=stratify)
    return tuple(np.flatnonzero(sets == name) for name in ("train", "val", "test"))


def _arguments(args) -> dict:
    return {k: v for k, v in vars(args).items()
            if k not in ("func", "resume", "force", "received_signals", "argv")}


def _fit_run(args, folder) -> int:
    import torch
    from sklearn.pipeline import Pipeline

    from ..graphs import CrystalGraphTransformer
    from ..metrics import held_out_scores
    from ..persistence import package_versions
    from ..runs import check_run_options, exit_status
    from ..splits import set_column

    X, y, ids, atom_features, sets = _fit_data(args)
    classification = is_classification(args, y)
    y = as_labels(y) if classification else y
    fingerprint = _fingerprint(ids, y)
    recorded = dict(folder.record.get("data", {}))
    if args.resume and recorded.get("fingerprint") != fingerprint:
        raise ValueError(f"{args.data}: the data changed since the run in {folder.path} started; resuming would mix "
                         "two data sets")
    train, val, test = _split_indices(args, sets, len(ids), np.asarray(y) if classification else None)
    check_run_options(len(val) > 0, args.lr_schedule, args.patience)
    done = folder.epochs_done()
    command = "skcgcnn " + " ".join(args.argv)
    folder.update(status="running", command=folder.record.get("command", command) if args.resume else command,
                  resumed_with=command if args.resume else None, arguments=_arguments(args),
                  versions=package_versions(), torch_threads=torch.get_num_threads(),
                  data={"n_crystals": len(ids), "fingerprint": fingerprint},
                  split={"train": len(train), "val": len(val), "test": len(test)}, epochs_done=done,
                  resumed_at_epoch=done if args.resume else None)
    if not args.resume:
        write_table(folder / "split.csv", {"id": ids, "set": set_column(len(ids), train, val, test)})
    print(f"{len(ids)} crystals: {len(train)} for training, {len(val)} for validation, {len(test)} for testing")
    transformer = CrystalGraphTransformer(radius=args.radius, max_num_nbr=args.max_num_nbr, step=args.step,
                                          atom_features=atom_features, nbr_rule=args.nbr_rule,
                                          tie_tol=args.tie_tol, n_jobs=args.n_jobs, verbose=1)
    graphs = transformer.transform(X)
    transformer.set_params(verbose=0)
    content = _graphs_fingerprint(graphs)
    if args.resume and recorded.get("graphs") not in (None, content):
        raise ValueError(f"{args.data}: the structures changed since the run in {folder.path} started (same ids and "
                         "targets, other crystal graphs); resuming would mix two data sets")
    folder.update(data={**folder.record.get("data", {}), "graphs": content})
    if args.duplicates != "skip":
        train, val, test = _check_duplicates(args, folder, X, graphs, ids, y, train, val, test)
    named = args.target_name or (args.target if args.target and not Path(args.data).is_dir() else None)
    net = network(args, classification).set_params(target_name=named, target_unit=args.unit or None)
    callbacks = run_callbacks(folder, transformer, graphs[val], y[val], classification, args.epochs,
                              lr_schedule=args.lr_schedule, lr_patience=args.lr_patience, patience=args.patience,
                              signals=args.received_signals)
    net.set_params(callbacks=callbacks, callbacks__lr_scheduler=None,
                   callbacks__print_log__keys_ignored=["held_out_score", "held_out_score_best"])
    if done:
        print(f"resuming from the checkpoint of epoch {done} of {args.epochs}")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "training was interrupted", UserWarning)  # said below, with what to do
        net.fit(graphs[train], y[train], epochs=max(args.epochs - done, 0))
    if net.interrupted_:
        signals = args.received_signals or [signal.SIGINT]
        done = folder.epochs_done()
        folder.update(status="interrupted", epochs_done=done,
                      training_s_before=folder.record.get("training_s_before", 0.0) + time.perf_counter() - start)
        best = folder / ("best" + MODEL_SUFFIX)
        print(f"skcgcnn: interrupted; the checkpoint of epoch {done} of {args.epochs} is in {folder.checkpoint_dir}"
              + (f", the best model so far in {best}" if best.is_file() else "")
              + f". Continue with: skcgcnn fit --resume {folder.path}", file=sys.stderr)
        return exit_status(signals[-1])
    train_s = time.perf_counter() - start
    print(f"training took {train_s:.1f} s")
    report = {"validation": held_out_scores(net, graphs[val], y[val], y[train]),
              "test": held_out_scores(net, graphs[test], y[test], y[train])}
    name = named or "target"
    _print_summary(report, classification, args.unit)
    model = folder / ("model" + (".joblib" if args.format == "joblib" else MODEL_SUFFIX))
    save(Pipeline([("graph", transformer), ("cgcnn", net)]), model, force=True)
    (folder / ("best" + MODEL_SUFFIX)).unlink(missing_ok=True)  # the final model is the best epoch's
    written = [model]
    if len(test):
        written.append(_write_test_predictions(folder / "test_predictions.csv", net, graphs[test], y[test],
                                               [ids[i] for i in test], classification))
        written += _figures(folder, net, graphs[test], y[test], [ids[i] for i in test], classification, name,
                            args.unit)
    scores = net.history[:, "held_out_score"] if len(val) else []
    folder.update(status="complete", epochs_done=len(net.history), metrics=report,
                  target={"name": name, "unit": args.unit},
                  atom_features_used=str(atom_features),
                  best_epoch=int(np.argmax(scores)) + 1 if len(scores) else None,
                  training_s=round(train_s + folder.record.get("training_s_before", 0.0), 1))
    print("written: " + ", ".join(str(p) for p in written))
    return 0


def _check_duplicates(args, folder, X, graphs, ids, y, train, val, test):
    """Report crystals that appear more than once, and those across the split; drop copies if asked."""
    from ..leakage import copies_to_drop, find_duplicates, leaks_across
    from ..splits import set_column

    start = time.perf_counter()
    groups = find_duplicates(X, graphs=graphs, n_jobs=args.n_jobs)
    sets = set_column(len(ids), train, val, test)
    leaks = leaks_across(groups, sets)
    members = [i for g in groups for i in g]
    write_table(folder / "duplicates.csv", {
        "group": np.repeat(np.arange(len(groups)), [len(g) for g in groups]).astype(int),
        "id": [ids[i] for i in members], "set": [sets[i] for i in members],
        "formula": [_formula(graphs[i]) for i in members],
        "target": [y[i].tolist() if np.ndim(y[i]) else y[i] for i in members]})
    dropped = copies_to_drop(groups, sets) if args.duplicates == "drop" else []
    entries = sum(len(g) for g in groups)
    print(f"duplicates: {count(len(groups), 'crystal appears', 'crystals appear')} more than once "
          f"({count(entries, 'entry', 'entries')}, {count(len(leaks), 'pair')} across the split), found in "
          f"{time.perf_counter() - start:.1f} s; "
          + (f"{count(len(dropped), 'copy', 'copies')} dropped" if dropped
             else f"listed in {folder / 'duplicates.csv'}"))
    if leaks and args.duplicates != "drop":
        print("warning: the same crystal in training and in validation or test data inflates their scores; "
              "--duplicates drop leaves one copy", file=sys.stderr)
    folder.update(duplicates={"groups": len(groups), "entries": entries,
                              "pairs_across_split": len(leaks), "dropped": len(dropped)})
    if not dropped:
        return train, val, test
    train, val, test = (np.setdiff1d(index, dropped) for index in (train, val, test))
    sets[dropped] = "dropped"
    if not args.resume:
        write_table(folder / "split.csv", {"id": ids, "set": sets})
    folder.update(split={"train": len(train), "val": len(val), "test": len(test), "dropped": len(dropped)})
    print(f"without them: {len(train)} for training, {len(val)} for validation, {len(test)} for testing")
    return train, val, test


def _formula(graph) -> str:
    """The reduced formula of one crystal graph."""
    from pymatgen.core import Composition, Element

    counts = np.bincount(graph.atomic_numbers)
    return Composition({Element.from_Z(int(z)): int(n) for z, n in enumerate(counts) if n}).reduced_formula


def _write_test_predictions(path, net, graphs, y, ids, classification) -> Path:
    columns = {"id": ids}
    if classification:
        proba = net.predict_proba(graphs)
        columns.update(target=y, prediction=net.classes_[proba.argmax(axis=1)])
        columns.update({f"proba_{label}": proba[:, k] for k, label in enumerate(net.classes_)})
    else:
        pred = net.predict(graphs)
        if pred.ndim == 1:
            columns.update(target=y, prediction=pred, error=pred - y)
        else:
            for k in range(pred.shape[1]):
                columns.update({f"target_{k}": y[:, k], f"prediction_{k}": pred[:, k],
                                f"error_{k}": pred[:, k] - y[:, k]})
    return write_table(path, columns)


_SCORES = {"mae": "MAE", "r2": "R²", "mae_of_the_training_mean": "MAE of the training mean", "accuracy": "accuracy",
           "roc_auc": "ROC-AUC", "accuracy_of_the_majority_class": "accuracy of the majority class"}


def _print_summary(report: dict, classification: bool, unit: str) -> None:
    """The scores as a short table, rounded, with units (run.json keeps them in full)."""
    sets = {name: scores for name, scores in report.items() if scores}
    if not sets:
        return
    keys = list(next(iter(sets.values())))
    header = ["", *(f"{_SCORES.get(k, k)} ({unit})" if unit and k.startswith("mae") else _SCORES.get(k, k)
                    for k in keys)]
    rows = [header] + [[name, *(f"{scores.get(k, float('nan')):.4g}" for k in keys)] for name, scores in sets.items()]
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _figures(folder, net, graphs, y, ids, classification, name, unit) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import plot_parity, plot_roc, plot_training_history

    written = []

    def save_figure(fig, name):
        with atomic_path(folder / name) as tmp:
            fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
        plt.close(fig)
        written.append(folder / name)

    if not classification and np.ndim(y) == 1:
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        unseen = [bool(symbols) for symbols in net.unseen_elements(graphs)]
        plot_parity(y, net.predict(graphs), ax=ax, quantity=name, unit=unit, ids=ids, flagged=unseen)
        ax.set_title(f"test set: {len(y)} crystals the model never trained on", fontsize=10)
        save_figure(fig, "parity.png")
    elif classification and len(net.classes_) == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        plot_roc(y, net.predict_proba(graphs), pos_label=net.classes_[1], ax=ax)
        save_figure(fig, "roc.png")
    fig, ax = plt.subplots(figsize=(6, 5))
    loss = "training loss\n(cross-entropy)" if classification else "training loss\n(standardised MSE)"
    plot_training_history(net.history, ax=ax, error_label="validation log-loss" if classification else "validation MAE",
                          unit="" if classification else unit, loss_label=loss)
    save_figure(fig, "learning_curve.png")
    return written
