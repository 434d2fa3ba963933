"""The ``skcgcnn`` command line: ``fit``, ``predict``, ``models``, ``tune`` and ``demo``."""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
import time
import warnings
import zipfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .files import MODEL_SUFFIX, atomic_path

__all__ = ["main", "build_parser"]

_PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle"}
_OUTPUT_HELP = ("model file (default {}): the skcgcnn model format, safe to share; a .joblib or .pkl name writes "
                "a pickle instead")


# ----- data --------------------------------------------------------------------
def _load_training_data(args, path=None):
    """Structures (or CIF text), targets, ids and the atom feature spec of DATA (or of ``path``)."""
    from .datasets import load_cgcnn_dir, load_csv, load_matbench

    path = Path(args.data if path is None else path)
    atom_features = args.atom_features
    if path.is_dir():
        if args.target is not None:
            n_targets = _targets_in_id_prop(path)
            if not args.target.isdigit() or int(args.target) >= n_targets:
                valid = "0" if n_targets == 1 else f"0 to {n_targets - 1}"
                raise ValueError(
                    f"{path} is in the original layout: --target is the 0-based column of id_prop.csv's "
                    f"{n_targets} target(s), {valid}; got {args.target!r}"
                )
        X, y, ids = load_cgcnn_dir(path, n_jobs=args.n_jobs, verbose=1)
        if args.target is not None and y.ndim == 2:
            y = y[:, int(args.target)]
        if atom_features is None and (path / "atom_init.json").is_file():
            atom_features = str(path / "atom_init.json")
            print(f"using the atom features of {atom_features}")
    elif path.name.endswith((".json", ".json.gz")):
        X, y, ids = load_matbench(path, target=args.target)
    elif path.is_file():
        if args.target is None:
            raise ValueError("--target is required for a CSV file")
        X, y, ids = load_csv(path, target=args.target, structure_column=args.structure_column,
                             id_column=args.id_column, missing="drop" if args.drop_missing else "raise", parse=False)
    else:
        raise ValueError(f"{path} is neither a folder, a CSV file nor a matbench JSON file")
    return list(X), np.asarray(y), [str(i) for i in ids], atom_features or "cgcnn"


def _targets_in_id_prop(folder: Path) -> int:
    """Targets per line of a folder's id_prop.csv, read from its first line (before any CIF is parsed)."""
    table = folder / "id_prop.csv"
    if not table.is_file():
        raise ValueError(f"{folder} has no id_prop.csv; expected the original CGCNN layout")
    with open(table, encoding="utf-8-sig", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), "")
    return max(first.count(","), 1)


_SET_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
              "test": "test"}


def _read_split(path, ids: list[str]) -> np.ndarray:
    """The set ("train", "val" or "test") of every id, from a CSV file with the columns id and set."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such split file") from None
    if not {"id", "set"} <= set(table.columns):
        raise ValueError(f"{path}: a split file has the columns id and set, found {list(table.columns)}")
    sets = table["set"].str.strip().str.lower().map(_SET_NAMES)
    for line, (raw, mapped) in enumerate(zip(table["set"], sets), start=2):
        if not isinstance(mapped, str):
            raise ValueError(f"{path}: line {line}: set {raw!r} is not train, val or test")
    repeated = table["id"][table["id"].duplicated()]
    if len(repeated):
        raise ValueError(f"{path}: id {repeated.iloc[0]!r} is listed twice")
    if len(set(ids)) != len(ids):
        raise ValueError("--split needs the ids of the data to be unique")
    mapping = dict(zip(table["id"], sets))
    missing = [i for i in ids if i not in mapping]
    unknown = sorted(set(mapping) - set(ids))
    for what, found in (("ids of the data are not in the split file", missing),
                        ("ids of the split file are not in the data", unknown)):
        if found:
            raise ValueError(f"{path}: {len(found)} {what}, e.g. {found[:3]}")
    return np.array([mapping[i] for i in ids])


def _fit_data(args):
    """Everything ``fit`` trains and scores on, with the set of each crystal (None: split at random)."""
    X, y, ids, atom_features = _load_training_data(args)
    sets = None
    extra = [(name, path) for name, path in (("val", args.val_data), ("test", args.test_data)) if path]
    if extra:
        sets = ["train"] * len(ids)
        for name, path in extra:
            X_more, y_more, ids_more, _ = _load_training_data(args, path)
            if y_more.ndim != y.ndim or y_more.shape[1:] != y.shape[1:]:
                raise ValueError(f"{path} holds targets of shape {y_more.shape[1:]}, DATA of shape {y.shape[1:]}")
            X, y, ids = X + X_more, np.concatenate([y, y_more]), ids + ids_more
            sets += [name] * len(ids_more)
        sets = np.array(sets)
    if args.split:
        sets = _read_split(args.split, ids)
    return X, y, ids, atom_features, sets


def _fingerprint(ids, y) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([list(ids), np.asarray(y).tolist()]).encode()).hexdigest()


def _split(n, val_size, test_size, seed, stratify=None):
    from sklearn.model_selection import train_test_split

    indices = np.arange(n)
    if test_size > 0:
        rest, test = train_test_split(indices, test_size=test_size, random_state=seed, stratify=stratify)
    else:
        rest, test = indices, indices[:0]
    if val_size > 0:
        share = val_size / (1 - test_size)
        train, val = train_test_split(rest, test_size=share, random_state=seed,
                                      stratify=None if stratify is None else stratify[rest])
    else:
        train, val = rest, rest[:0]
    return train, val, test


def _split_indices(args, sets, n, stratify):
    if sets is None:
        return _split(n, args.val_size, args.test_size, args.seed, stratify=stratify)
    return tuple(np.flatnonzero(sets == name) for name in ("train", "val", "test"))


def _metrics(estimator, graphs, y, classification, y_train=None):
    """Scores on held-out data, next to those of a baseline that ignores the structures (``y_train`` given)."""
    from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score, roc_auc_score

    if len(y) == 0:
        return {}
    if classification:
        proba = estimator.predict_proba(graphs)
        out = {"accuracy": accuracy_score(y, estimator.classes_[proba.argmax(axis=1)])}
        if len(estimator.classes_) == 2 and len(np.unique(y)) == 2:
            out["roc_auc"] = roc_auc_score(y, proba[:, 1], labels=estimator.classes_)
        if y_train is not None:
            labels, counts = np.unique(y_train, return_counts=True)
            out["accuracy_of_the_majority_class"] = float(np.mean(y == labels[np.argmax(counts)]))
        return out
    pred = estimator.predict(graphs)
    out = {"mae": mean_absolute_error(y, pred), "r2": r2_score(y, pred)}
    if y_train is not None:
        out["mae_of_the_training_mean"] = mean_absolute_error(y, np.broadcast_to(np.mean(y_train, axis=0), y.shape))
    return out


def _network(args, classification):
    from .estimators import CGCNNClassifier, CGCNNRegressor

    cls = CGCNNClassifier if classification else CGCNNRegressor
    extra = {"optimizer__momentum": args.momentum} if args.optimizer == "sgd" else {}
    return cls(
        atom_fea_len=args.atom_fea_len, n_conv=args.n_conv, h_fea_len=args.h_fea_len, n_h=args.n_h,
        pooling=args.pooling, optimizer=args.optimizer, lr=args.lr, optimizer__weight_decay=args.weight_decay,
        max_epochs=args.epochs, batch_size=args.batch_size, device=args.device, random_state=args.seed,
        precision=args.precision,
        verbose=1, **extra,
    )


def _is_classification(args, y) -> bool:
    if args.task != "auto":
        return args.task == "classification"
    if y.dtype.kind in "bOUS":
        return True
    if y.ndim == 1 and len(np.unique(y)) == 2:
        print(f"note: the targets take only two values ({', '.join(map(str, np.unique(y)))}): training a "
              "regression; pass --task classification for a classifier")
    return False


def _as_labels(y: np.ndarray) -> np.ndarray:
    """Class labels written as numbers (0.0, 1.0) become integers, so that they read 0 and 1 in the outputs."""
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    return y


# ----- outputs -----------------------------------------------------------------
def _writable(path, force: bool) -> Path:
    """Check before any long work that the file ``path`` may be written."""
    from .files import remove_stale_temporaries

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise ValueError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write into {path.parent}: permission denied")
    remove_stale_temporaries(path.parent)
    return path


@contextmanager
def _output(path: Path, force: bool):
    """A temporary path for ``path``; without ``force`` the no-overwrite promise holds at the final rename."""
    try:
        with atomic_path(path, overwrite=force) as tmp:
            yield tmp
    except FileExistsError:
        raise ValueError(f"{path} appeared while this command ran; pass --force to overwrite it") from None


# ----- commands ----------------------------------------------------------------
def _save(model, output: Path, force: bool) -> None:
    """The skcgcnn model format, or a pickle when the output's suffix asks for one."""
    with _output(output, force) as tmp:
        if output.suffix in _PICKLE_SUFFIXES:
            import joblib

            joblib.dump(model, tmp)
        else:
            from .persistence import save_model

            save_model(model, tmp, force=True)


def _fit(args: argparse.Namespace) -> int:
    from contextlib import redirect_stdout

    from .estimators import check_device
    from .runs import RunFolder, Tee

    if args.resume:
        if args.data is not None:
            raise ValueError("--resume continues a run with its recorded arguments: give only the run folder "
                             "(and --n-jobs)")
        run = RunFolder.open(args.resume)
        if run.record.get("status") == "complete":
            raise ValueError(f"{run.path}: the run is complete; there is nothing to resume")
        n_jobs = args.n_jobs
        args = argparse.Namespace(**{**run.record["arguments"], "func": args.func, "resume": str(run.path),
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
        run = RunFolder.create(args.output, args.force)
    try:
        with open(run / "log.txt", "a", encoding="utf-8", buffering=1) as log, redirect_stdout(Tee(sys.stdout, log)):
            return _fit_run(args, run)
    except BaseException:
        if not args.resume and run.epochs_done() == 0:
            run.discard()  # nothing of value yet: leave nothing that blocks a retry
        raise


def _arguments(args) -> dict:
    return {k: v for k, v in vars(args).items()
            if k not in ("func", "resume", "force", "received_signals", "argv")}


def _fit_callbacks(args, run, transformer, graphs, y, val, classification):
    from skorch.callbacks import LoadInitState, LRScheduler
    from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau

    from .callbacks import HeldOutScore
    from .runs import AtomicCheckpoint, ErrorColumn, ResumableEarlyStopping, SaveBestModel

    last = AtomicCheckpoint(monitor=None, dirname=str(run.checkpoint_dir), f_params="params.pt",
                            f_optimizer="optimizer.pt", f_criterion=None, f_history="history.json",
                            event_name=None)
    callbacks = [("resume", LoadInitState(last))]
    if len(val):
        callbacks.append(("held_out", HeldOutScore(graphs[val], y[val], restore_best=False)))
        callbacks.append(("error_column", ErrorColumn("val_log_loss" if classification else "val_mae")))
    if args.lr_schedule == "cosine":
        callbacks.append(("schedule", LRScheduler(policy=CosineAnnealingLR, T_max=args.epochs)))
    elif args.lr_schedule == "plateau":
        callbacks.append(("schedule", LRScheduler(policy=ReduceLROnPlateau, monitor="held_out_score", mode="max",
                                                  factor=0.5, patience=args.lr_patience)))
    if args.patience:
        callbacks.append(("early_stopping", ResumableEarlyStopping(monitor="held_out_score", lower_is_better=False,
                                                                   patience=args.patience)))
    if len(val):
        callbacks.append(("best", AtomicCheckpoint(monitor="held_out_score_best", dirname=str(run.checkpoint_dir),
                                                   f_params="best_params.pt", f_optimizer=None, f_criterion=None,
                                                   f_history=None, event_name="event_best", load_best=True)))
        callbacks.append(("best_model", SaveBestModel(run / ("best" + MODEL_SUFFIX), transformer)))
    callbacks.append(("checkpoint", last))
    return callbacks


def _check_fit_options(args, has_val: bool) -> None:
    if not has_val and (args.patience or args.lr_schedule == "plateau"):
        raise ValueError("--patience and --lr-schedule plateau watch the validation score: they need a "
                         "validation set (--val-size > 0, --val-data, or val rows in --split)")


def _fit_run(args, run) -> int:
    from sklearn.pipeline import Pipeline

    from .graphs import CrystalGraphTransformer
    from .persistence import package_versions
    from .runs import exit_status

    X, y, ids, atom_features, sets = _fit_data(args)
    classification = _is_classification(args, y)
    y = _as_labels(y) if classification else y
    fingerprint = _fingerprint(ids, y)
    if args.resume and run.record.get("data", {}).get("fingerprint") != fingerprint:
        raise ValueError(f"{args.data}: the data changed since the run in {run.path} started; resuming would mix "
                         "two data sets")
    train, val, test = _split_indices(args, sets, len(ids), np.asarray(y) if classification else None)
    _check_fit_options(args, len(val) > 0)
    done = run.epochs_done()
    command = "skcgcnn " + " ".join(args.argv)
    run.update(status="running", command=run.record.get("command", command) if args.resume else command,
               resumed_with=command if args.resume else None, arguments=_arguments(args),
               versions=package_versions(), data={"n_crystals": len(ids), "fingerprint": fingerprint},
               split={"train": len(train), "val": len(val), "test": len(test)}, epochs_done=done,
               resumed_at_epoch=done if args.resume else None)
    if not args.resume:
        _write_table(run / "split.csv", {"id": ids, "set": _set_column(len(ids), train, val, test)})
    print(f"{len(ids)} crystals: {len(train)} for training, {len(val)} for validation, {len(test)} for testing")
    transformer = CrystalGraphTransformer(radius=args.radius, max_num_nbr=args.max_num_nbr, step=args.step,
                                          atom_features=atom_features, nbr_rule=args.nbr_rule,
                                          tie_tol=args.tie_tol, n_jobs=args.n_jobs, verbose=1)
    graphs = transformer.transform(X)
    transformer.set_params(verbose=0)
    if args.duplicates != "skip":
        train, val, test = _check_duplicates(args, run, X, graphs, ids, train, val, test)
    net = _network(args, classification)
    net.set_params(callbacks=_fit_callbacks(args, run, transformer, graphs, y, val, classification),
                   callbacks__lr_scheduler=None,
                   callbacks__print_log__keys_ignored=["held_out_score", "held_out_score_best"])
    if done:
        print(f"resuming from the checkpoint of epoch {done} of {args.epochs}")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "training was interrupted", UserWarning)  # said below, with what to do
        net.fit(graphs[train], y[train], epochs=max(args.epochs - done, 0))
    if net.interrupted_:
        signals = args.received_signals or [signal.SIGINT]
        done = run.epochs_done()
        run.update(status="interrupted", epochs_done=done)
        best = run / ("best" + MODEL_SUFFIX)
        print(f"skcgcnn: interrupted; the checkpoint of epoch {done} of {args.epochs} is in {run.checkpoint_dir}"
              + (f", the best model so far in {best}" if best.is_file() else "")
              + f". Continue with: skcgcnn fit --resume {run.path}", file=sys.stderr)
        return exit_status(signals[-1])
    print(f"training took {time.perf_counter() - start:.1f} s")
    report = {"validation": _metrics(net, graphs[val], y[val], classification, y[train]),
              "test": _metrics(net, graphs[test], y[test], classification, y[train])}
    print(json.dumps(report, indent=2))
    model = run / ("model" + (".joblib" if args.format == "joblib" else MODEL_SUFFIX))
    _save(Pipeline([("graph", transformer), ("cgcnn", net)]), model, force=True)
    (run / ("best" + MODEL_SUFFIX)).unlink(missing_ok=True)  # the final model is the best epoch's
    written = [model]
    if len(test):
        written.append(_write_test_predictions(run / "test_predictions.csv", net, graphs[test], y[test],
                                               [ids[i] for i in test], classification))
        written += _figures(run, net, graphs[test], y[test], classification)
    run.update(status="complete", epochs_done=len(net.history), metrics=report)
    print("written: " + ", ".join(str(p) for p in written))
    return 0


def _check_duplicates(args, run, X, graphs, ids, train, val, test):
    """Report crystals that appear more than once, and those across the split; drop copies if asked."""
    from .leakage import find_duplicates, leaks_across

    start = time.perf_counter()
    groups = find_duplicates(X, graphs=graphs, n_jobs=args.n_jobs)
    sets = _set_column(len(ids), train, val, test)
    leaks = leaks_across(groups, sets)
    _write_table(run / "duplicates.csv", {
        "group": np.repeat(np.arange(len(groups)), [len(g) for g in groups]).astype(int),
        "id": [ids[i] for g in groups for i in g], "set": [sets[i] for g in groups for i in g]})
    dropped = []
    if args.duplicates == "drop":
        for group in groups:  # keep a training copy where there is one, else the first
            trained = [i for i in group if sets[i] == "train"]
            keep = trained[0] if trained else group[0]
            dropped += [int(i) for i in group if i != keep]
    print(f"duplicates: {len(groups)} crystals appear more than once ({sum(len(g) for g in groups)} entries, "
          f"{len(leaks)} pairs across the split), found in {time.perf_counter() - start:.1f} s; "
          + (f"{len(dropped)} copies dropped" if dropped else f"listed in {run / 'duplicates.csv'}"))
    if leaks and args.duplicates != "drop":
        print("warning: the same crystal in training and in validation or test data inflates their scores; "
              "--duplicates drop leaves one copy", file=sys.stderr)
    run.update(duplicates={"groups": len(groups), "entries": sum(len(g) for g in groups),
                           "pairs_across_split": len(leaks), "dropped": len(dropped)})
    if not dropped:
        return train, val, test
    train, val, test = (np.setdiff1d(index, dropped) for index in (train, val, test))
    sets[dropped] = "dropped"
    if not args.resume:
        _write_table(run / "split.csv", {"id": ids, "set": sets})
    run.update(split={"train": len(train), "val": len(val), "test": len(test), "dropped": len(dropped)})
    print(f"without them: {len(train)} for training, {len(val)} for validation, {len(test)} for testing")
    return train, val, test


def _set_column(n, train, val, test) -> np.ndarray:
    column = np.empty(n, dtype=object)
    for name, index in (("train", train), ("val", val), ("test", test)):
        column[index] = name
    return column


def _write_table(path: Path, columns: dict) -> Path:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(columns).to_csv(tmp, index=False)
    return path


def _write_test_predictions(path, net, graphs, y, ids, classification) -> Path:
    columns = {"id": ids}
    if classification:
        proba = net.predict_proba(graphs)
        columns.update(target=y, prediction=net.classes_[proba.argmax(axis=1)])
        columns.update({f"proba_{label}": proba[:, k] for k, label in enumerate(net.classes_)})
    else:
        pred = net.predict(graphs)
        if pred.ndim == 1:
            columns.update(target=y, prediction=pred)
        else:
            for k in range(pred.shape[1]):
                columns.update({f"target_{k}": y[:, k], f"prediction_{k}": pred[:, k]})
    return _write_table(path, columns)


def _figures(run, net, graphs, y, classification) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import plot_parity, plot_roc, plot_training_history

    written = []

    def save(fig, name):
        with atomic_path(run / name) as tmp:
            fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
        plt.close(fig)
        written.append(run / name)

    if not classification and np.ndim(y) == 1:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        plot_parity(y, net.predict(graphs), ax=ax)
        save(fig, "parity.png")
    elif classification and len(net.classes_) == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        plot_roc(y, net.predict_proba(graphs), pos_label=net.classes_[1], ax=ax)
        save(fig, "roc.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_training_history(net.history, ax=ax, error_label="validation log-loss" if classification else "validation MAE")
    save(fig, "learning_curve.png")
    return written


def _predict(args: argparse.Namespace) -> int:
    from .streaming import predict_to_csv

    output = _writable(args.output, args.force)
    model = _load_model(args.model, args.trust_pickle)
    print(f"predicting with {args.model}, {args.chunk_size} structures at a time")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*absent from the training data", UserWarning)  # reported below
        counts = predict_to_csv(model, args.inputs, output, args.structure_column, args.id_column,
                                chunk_size=args.chunk_size, resume=args.resume, force=args.force,
                                on_error=args.on_error, strict=args.strict)
    print(f"{counts['written'] + counts['resumed']} predictions written to {output}"
          + (f" ({counts['resumed']} from the interrupted run)" if counts["resumed"] else ""))
    if counts["unseen"]:
        print(f"warning: {counts['unseen']} structures hold elements absent from the model's training data; their "
              "predictions are extrapolations (column unseen_elements)", file=sys.stderr)
    if counts["refused"]:
        print(f"skcgcnn: {counts['refused']} structures refused, listed with the reason in "
              f"{output.with_name(output.name + '.errors.csv')}", file=sys.stderr)
        return 2 if args.strict else 0
    return 0


def _load_model(spec: str, trust_pickle: bool):
    """A released model by name, an original-format checkpoint, a model file, or a pickle the user trusts."""
    from .persistence import load_model
    from .pretrained import MODELS, load, load_checkpoint

    if spec in MODELS:
        return load(spec)
    if spec.endswith((".pth.tar", ".pth", ".pt")):
        return load_checkpoint(spec)
    if trust_pickle and Path(spec).is_file() and not zipfile.is_zipfile(spec):
        import joblib

        return joblib.load(spec)
    return load_model(spec)


def _models(args: argparse.Namespace) -> int:
    from .pretrained import MODELS

    rows = [("name", "property", "units", "training crystals", "validation")]
    rows += [(m.name, m.property, m.units, f"{m.n_train:,}", f"{m.metric} {m.validation_score:g}")
             for m in MODELS.values()]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print("Released with the original CGCNN (Xie & Grossman, PRL 120, 145301, 2018; MIT licence), trained on "
          "Materials Project data. Use a name wherever a model file goes: skcgcnn predict NAME structures/")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from sklearn.pipeline import Pipeline

    from .estimators import check_device

    check_device(args.device)

    from .graphs import CrystalGraphTransformer
    from .tuning import default_search_space, tune

    output = _writable(args.output, args.force)
    X, y, _, atom_features = _load_training_data(args)
    classification = _is_classification(args, np.asarray(y))
    y = _as_labels(y) if classification else y
    graphs = CrystalGraphTransformer(atom_features=atom_features, n_jobs=args.n_jobs, verbose=1).transform(X)
    rest, _, test = _split(len(graphs), 0.0, args.test_size, args.seed,
                           stratify=np.asarray(y) if classification else None)
    net = _network(args, classification).set_params(verbose=0)
    pipe = Pipeline([("graph", CrystalGraphTransformer(atom_features=atom_features, n_jobs=args.n_jobs)),
                     ("cgcnn", net)])
    # Graph parameters are searched only when the structures can be re-featurized.
    space = default_search_space(pipe) if args.search_graphs else default_search_space(net)
    estimator = pipe if args.search_graphs else net
    data = [X[i] for i in rest] if args.search_graphs else graphs[rest]
    print(f"{len(graphs)} crystals: {len(rest)} for the search, {len(test)} for testing")
    best, study = tune(estimator, data, np.asarray(y)[rest], search_space=space, n_trials=args.n_trials,
                       timeout=args.timeout, storage=args.storage, study_name=args.study_name,
                       random_state=args.seed, sampler_seed=args.sampler_seed, show_progress_bar=True)
    states = Counter(t.state.name.lower() for t in study.trials)
    print(f"best of {states['complete']} completed trials ({states['pruned']} pruned, {states['fail']} failed): "
          f"score {study.best_value:.5g} with {json.dumps(study.best_params)}")
    test_inputs = [X[i] for i in test] if args.search_graphs else graphs[test]
    report = _metrics(best, test_inputs, np.asarray(y)[test], classification)
    print(json.dumps({"test": report}, indent=2))
    if not args.search_graphs:
        best = Pipeline([("graph", CrystalGraphTransformer(atom_features=atom_features)), ("cgcnn", best)])
    _save(best, output, force=args.force)
    print(f"best model written to {output}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sklearn.dummy import DummyRegressor
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from .datasets import make_ionic_crystals
    from .estimators import CGCNNRegressor
    from .graphs import CrystalGraphTransformer

    X, y = make_ionic_crystals(args.n_samples, random_state=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=args.seed)
    print(f"{len(X)} generated ionic crystals (target: Ewald energy, eV/atom); "
          f"{len(X_train)} for training, {len(X_test)} for testing")
    pipe = Pipeline([
        ("graph", CrystalGraphTransformer(verbose=1)),
        ("cgcnn", CGCNNRegressor(max_epochs=args.epochs, batch_size=32, random_state=args.seed, verbose=1)),
    ])
    start = time.perf_counter()
    pipe.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    mae = mean_absolute_error(y_test, pipe.predict(X_test))
    baseline = mean_absolute_error(y_test, DummyRegressor().fit(X_train, y_train).predict(X_test))
    print(f"test MAE {mae:.3f} eV/atom (predicting the mean: {baseline:.3f}); fit took {elapsed:.1f} s")
    return 0


# ----- parser ------------------------------------------------------------------
_DATA_HELP = ("a folder in the original layout (id_prop.csv + CIFs), a CSV file with a CIF column, or a matbench "
              "JSON(.gz) file")


def _add_data_options(parser, data_optional: bool = False):
    parser.add_argument("data", nargs="?" if data_optional else None, help=_DATA_HELP)
    parser.add_argument("--target", help="target column (CSV, matbench) or 0-based target index (folder)")
    parser.add_argument("--task", choices=["auto", "regression", "classification"], default="auto",
                        help="default: classification for text/boolean targets, else regression")
    parser.add_argument("--structure-column", default="cif", help="CSV column with CIF text (default cif)")
    parser.add_argument("--id-column", default="id", help="CSV column with ids (default id)")
    parser.add_argument("--drop-missing", action="store_true", help="drop CSV rows without a target value")
    parser.add_argument("--atom-features", default=None,
                        help="'cgcnn', 'group_period', 'onehot' or an atom_init.json path (default: the "
                             "folder's atom_init.json if any, else cgcnn)")
    parser.add_argument("--n-jobs", type=int, default=None, help="processes for parsing and featurizing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the model (default 0)")
    parser.add_argument("--test-size", type=float, default=0.1, help="share held out for testing (default 0.1)")


def _add_model_options(parser):
    group = parser.add_argument_group("model and training")
    group.add_argument("--atom-fea-len", type=int, default=64, help="length of the atom vectors in the convolutions")
    group.add_argument("--n-conv", type=int, default=3, help="number of convolution layers (the paper's R)")
    group.add_argument("--h-fea-len", type=int, default=128, help="width of the hidden layers after pooling")
    group.add_argument("--n-h", type=int, default=1, help="number of hidden layers after pooling (the paper's L2)")
    group.add_argument("--pooling", choices=["mean", "sum", "max", "linear"], default="mean",
                       help="how atom vectors become the crystal's; linear gives per-site contributions")
    group.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], default="adamw", help="optimizer")
    group.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    group.add_argument("--weight-decay", type=float, default=0.0, help="weight decay of the optimizer")
    group.add_argument("--momentum", type=float, default=0.9, help="momentum of --optimizer sgd (default 0.9)")
    group.add_argument("--epochs", type=int, default=100, help="training epochs")
    group.add_argument("--batch-size", type=int, default=64, help="crystals per batch")
    group.add_argument("--device", default="cpu", help="cpu or cuda")
    group.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                       help="bfloat16: mixed precision, meant for GPUs with bfloat16 units")


class _HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it names it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or silent or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skcgcnn`` command."""
    from .graphs import NBR_RULES

    parser = argparse.ArgumentParser(prog="skcgcnn", description="Crystal graph convolutional neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_HelpWithDefaults)

    fit = sub.add_parser("fit", help="train a model in a run folder that keeps checkpoints and can be resumed")
    _add_data_options(fit, data_optional=True)
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
    fit.add_argument("--radius", type=float, default=8.0, help="neighbour search radius in Å")
    fit.add_argument("--max-num-nbr", type=int, default=12, help="neighbours kept per atom (the paper's M)")
    fit.add_argument("--step", type=float, default=0.2, help="spacing in Å of the Gaussians expanding distances")
    fit.add_argument("--nbr-rule", choices=NBR_RULES, default="shared",
                     help="neighbours tied with the M-th: 'shared' share the last slots, so the graph does not "
                          "depend on the cell; 'first' keeps the first M, as the original code (default shared)")
    fit.add_argument("--tie-tol", type=float, default=1e-3,
                     help="distances within this many Å of the M-th neighbour's are tied (default 0.001)")
    _add_model_options(fit)
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
    fit.set_defaults(func=_fit)

    predict = sub.add_parser("predict", help="predict with a saved model")
    predict.add_argument("model", help="a model file written by 'skcgcnn fit' or skcgcnn.persistence.save_model, "
                                       "the name of a released model (see 'skcgcnn models'), or an original-format "
                                       ".pth.tar checkpoint; a pickle (joblib) only with --trust-pickle")
    predict.add_argument("--trust-pickle", action="store_true",
                         help="read MODEL even if it is a pickle (joblib.dump): loading a pickle runs any code it "
                              "holds, so pass this only for files you made or whose source you trust")
    predict.add_argument("inputs", nargs="+",
                         help="structure files, folders of them, CSV files, or ASE databases (*.db)")
    predict.add_argument("--structure-column", default="cif", help="CSV column with CIF text")
    predict.add_argument("--id-column", default="id",
                         help="CSV column with ids; in an ASE database the key with ids ('id': the row ids)")
    predict.add_argument("-o", "--output", default="predictions.csv", help="the CSV file written")
    predict.add_argument("--force", action="store_true", help="overwrite an existing output file")
    predict.add_argument("--strict", action="store_true",
                         help="refuse structures with elements the model never saw in training (listed in "
                              "OUTPUT.errors.csv, exit status 2), instead of predicting and flagging them in the "
                              "column unseen_elements")
    predict.add_argument("--chunk-size", type=int, default=4096,
                         help="structures read, featurized, predicted and written at a time")
    predict.add_argument("--resume", action="store_true",
                         help="continue an interrupted run from OUTPUT.partial, skipping the ids written")
    predict.add_argument("--on-error", choices=["stop", "skip"], default="stop",
                         help="a structure that cannot be read stops the run, or is listed in OUTPUT.errors.csv")
    predict.set_defaults(func=_predict)

    models = sub.add_parser("models", help="list the released models that 'predict' takes by name")
    models.set_defaults(func=_models)

    tune = sub.add_parser("tune", help="search hyperparameters with Optuna (pruned, resumable, shareable)")
    _add_data_options(tune)
    _add_model_options(tune)
    tune.add_argument("--n-trials", type=int, default=20, help="trials run by this process")
    tune.add_argument("--timeout", type=float, default=None, help="seconds after which no trial starts")
    tune.add_argument("--storage", default=None,
                      help="e.g. sqlite:///tune.db, postgresql://..., or journal:/shared/tune.log")
    tune.add_argument("--study-name", default=None, help="study to create or resume in --storage")
    tune.add_argument("--sampler-seed", type=int, default=None,
                      help="seed of the sampler (default: --seed without --storage; a fresh one with it, so that "
                           "workers and resumed runs do not repeat each other's trials)")
    tune.add_argument("--search-graphs", action="store_true",
                      help="also search radius and max_num_nbr (re-featurizes per setting)")
    tune.add_argument("-o", "--output", default="best" + MODEL_SUFFIX, help=_OUTPUT_HELP.format("best" + MODEL_SUFFIX))
    tune.add_argument("--force", action="store_true", help="overwrite an existing output file")
    tune.set_defaults(func=_tune)

    demo = sub.add_parser("demo", help="fit on a generated set of ionic crystals and report the test MAE")
    demo.add_argument("--n-samples", type=int, default=400, help="number of generated crystals (default 400)")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from contextlib import redirect_stdout

    from .runs import Tee, exit_status, stop_on_signals

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with stop_on_signals() as received, redirect_stdout(Tee(sys.stdout)):  # no colour codes in redirected output
        args.received_signals = received
        try:
            return args.func(args)
        except (ValueError, TypeError, OSError) as exc:
            print(f"skcgcnn: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("skcgcnn: interrupted", file=sys.stderr)
            return exit_status(received[-1] if received else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
