"""The ``skcgcnn`` command line: ``fit``, ``predict``, ``models``, ``tune`` and ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from .files import MODEL_SUFFIX, atomic_path

__all__ = ["main", "build_parser"]

_STRUCTURE_SUFFIXES = {".cif", ".vasp", ".poscar", ".xsf", ".cssr"}
_PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle"}
_OUTPUT_HELP = ("model file (default {}): the skcgcnn model format, safe to share; a .joblib or .pkl name writes "
                "a pickle instead")


# ----- data --------------------------------------------------------------------
def _load_training_data(args):
    """Structures (or CIF text), targets, ids and the atom feature spec of DATA."""
    from .datasets import load_cgcnn_dir, load_csv, load_matbench

    path = Path(args.data)
    atom_features = args.atom_features
    if path.is_dir():
        X, y, ids = load_cgcnn_dir(path, n_jobs=args.n_jobs, verbose=1)
        if args.target is not None:
            n_targets = 1 if y.ndim == 1 else y.shape[1]
            if not args.target.isdigit() or int(args.target) >= n_targets:
                raise ValueError(
                    f"{path} is in the original layout: --target is the 0-based column of id_prop.csv's "
                    f"targets, got {args.target!r}"
                )
            y = y if y.ndim == 1 else y[:, int(args.target)]
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
    return X, y, ids, atom_features or "cgcnn"


def _prediction_inputs(paths, structure_column, id_column):
    """Structures (or CIF text/paths) and ids from files, folders and CSV files, in the given order."""
    from .datasets import load_csv

    items, ids = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir()
                if p.suffix.lower() in _STRUCTURE_SUFFIXES or p.name.upper().startswith(("POSCAR", "CONTCAR"))
            )
            if not files:
                raise ValueError(f"{path} holds no structure files (*.cif, *.vasp, POSCAR*, ...)")
            items += files
            ids += [str(p) for p in files]
        elif path.name.endswith((".csv", ".csv.gz")):
            texts, _, csv_ids = load_csv(path, target=None, structure_column=structure_column,
                                         id_column=id_column, parse=False)
            items += texts
            ids += csv_ids
        elif path.is_file():
            items.append(path)
            ids.append(str(path))
        else:
            raise ValueError(f"{path} does not exist")
    return items, ids


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


def _metrics(estimator, graphs, y, classification):
    from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score, roc_auc_score

    if len(y) == 0:
        return {}
    if classification:
        proba = estimator.predict_proba(graphs)
        out = {"accuracy": accuracy_score(y, estimator.classes_[proba.argmax(axis=1)])}
        if len(estimator.classes_) == 2 and len(np.unique(y)) == 2:
            out["roc_auc"] = roc_auc_score(y, proba[:, 1], labels=estimator.classes_)
        return out
    pred = estimator.predict(graphs)
    return {"mae": mean_absolute_error(y, pred), "r2": r2_score(y, pred)}


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
    return y.dtype.kind in "bOUS"


# ----- outputs -----------------------------------------------------------------
def _writable(path, force: bool) -> Path:
    """Check before any long work that ``path`` may be written."""
    path = Path(path)
    if path.exists() and not force:
        raise ValueError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _figure_path(output: Path, classification: bool) -> Path:
    return output.with_name(output.stem + ("_roc.png" if classification else "_parity.png"))


# ----- commands ----------------------------------------------------------------
def _save(model, output: Path) -> None:
    """The skcgcnn model format, or a pickle when the output's suffix asks for one."""
    if output.suffix in _PICKLE_SUFFIXES:
        import joblib

        with atomic_path(output) as tmp:
            joblib.dump(model, tmp)
    else:
        from .persistence import save_model

        save_model(model, output, force=True)


def _fit(args: argparse.Namespace) -> int:
    from sklearn.pipeline import Pipeline

    from .callbacks import HeldOutScore
    from .graphs import CrystalGraphTransformer

    output = _writable(args.output, args.force)
    X, y, _, atom_features = _load_training_data(args)
    classification = _is_classification(args, np.asarray(y))
    figure = _writable(_figure_path(output, classification), args.force)
    transformer = CrystalGraphTransformer(radius=args.radius, max_num_nbr=args.max_num_nbr, step=args.step,
                                          atom_features=atom_features, nbr_rule=args.nbr_rule,
                                          tie_tol=args.tie_tol, n_jobs=args.n_jobs, verbose=1)
    graphs = transformer.transform(X)
    train, val, test = _split(len(graphs), args.val_size, args.test_size, args.seed,
                              stratify=np.asarray(y) if classification else None)
    print(f"{len(graphs)} crystals: {len(train)} for training, {len(val)} for validation, {len(test)} for testing")
    net = _network(args, classification)
    if len(val):
        net.set_params(callbacks=[("held_out", HeldOutScore(graphs[val], y[val]))])
    start = time.perf_counter()
    net.fit(graphs[train], y[train])
    print(f"training took {time.perf_counter() - start:.1f} s")
    report = {"validation": _metrics(net, graphs[val], y[val], classification),
              "test": _metrics(net, graphs[test], y[test], classification)}
    print(json.dumps(report, indent=2))
    _save(Pipeline([("graph", transformer.set_params(verbose=0)), ("cgcnn", net)]), output)
    print(f"model written to {output}")
    if len(test) and _figure(net, graphs[test], y[test], classification, figure):
        print(f"figure written to {figure}")
    return 0


def _figure(net, graphs, y, classification, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import plot_parity, plot_roc

    if classification and len(net.classes_) != 2:
        return False
    fig, ax = plt.subplots(figsize=(5, 5))
    if classification:
        plot_roc((np.asarray(y) == net.classes_[1]).astype(int), net.predict_proba(graphs), ax=ax)
    else:
        plot_parity(np.ravel(y), np.ravel(net.predict(graphs)), ax=ax)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return True


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd
    from sklearn.base import is_classifier

    output = _writable(args.output, args.force)
    model = _load_model(args.model, args.trust_pickle)
    items, ids = _prediction_inputs(args.inputs, args.structure_column, args.id_column)
    print(f"predicting {len(items)} structures")
    table = pd.DataFrame({"id": ids})
    if is_classifier(model):
        proba = model.predict_proba(items)
        classes = model.classes_
        table["prediction"] = classes[proba.argmax(axis=1)]
        for k, label in enumerate(classes):
            table[f"proba_{label}"] = proba[:, k]
    else:
        pred = model.predict(items)
        if pred.ndim == 1:
            table["prediction"] = pred
        else:
            for k in range(pred.shape[1]):
                table[f"prediction_{k}"] = pred[:, k]
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    print(f"predictions written to {output}")
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

    from .graphs import CrystalGraphTransformer
    from .tuning import default_search_space, tune

    output = _writable(args.output, args.force)
    X, y, _, atom_features = _load_training_data(args)
    classification = _is_classification(args, np.asarray(y))
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
                       random_state=args.seed, show_progress_bar=True)
    print(f"best of {len(study.trials)} trials: score {study.best_value:.5g} with {json.dumps(study.best_params)}")
    test_inputs = [X[i] for i in test] if args.search_graphs else graphs[test]
    report = _metrics(best, test_inputs, np.asarray(y)[test], classification)
    print(json.dumps({"test": report}, indent=2))
    if not args.search_graphs:
        best = Pipeline([("graph", CrystalGraphTransformer(atom_features=atom_features)), ("cgcnn", best)])
    _save(best, output)
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
def _add_data_options(parser):
    parser.add_argument("data", help="a folder in the original layout (id_prop.csv + CIFs), a CSV file with a "
                                     "CIF column, or a matbench JSON(.gz) file")
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
    group.add_argument("--atom-fea-len", type=int, default=64)
    group.add_argument("--n-conv", type=int, default=3)
    group.add_argument("--h-fea-len", type=int, default=128)
    group.add_argument("--n-h", type=int, default=1)
    group.add_argument("--pooling", choices=["mean", "sum", "max", "linear"], default="mean")
    group.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], default="adamw")
    group.add_argument("--lr", type=float, default=1e-3)
    group.add_argument("--weight-decay", type=float, default=0.0)
    group.add_argument("--momentum", type=float, default=0.9, help="momentum of --optimizer sgd (default 0.9)")
    group.add_argument("--epochs", type=int, default=100)
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--device", default="cpu", help="cpu or cuda")
    group.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                       help="bfloat16: mixed precision, meant for GPUs with bfloat16 units")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skcgcnn`` command."""
    from .graphs import NBR_RULES

    parser = argparse.ArgumentParser(prog="skcgcnn", description="Crystal graph convolutional neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train a model and save it")
    _add_data_options(fit)
    fit.add_argument("--val-size", type=float, default=0.1,
                     help="share used to pick the best epoch (default 0.1)")
    fit.add_argument("--radius", type=float, default=8.0)
    fit.add_argument("--max-num-nbr", type=int, default=12)
    fit.add_argument("--step", type=float, default=0.2)
    fit.add_argument("--nbr-rule", choices=NBR_RULES, default="shared",
                     help="neighbours tied with the M-th: 'shared' share the last slots, so the graph does not "
                          "depend on the cell; 'first' keeps the first M, as the original code (default shared)")
    fit.add_argument("--tie-tol", type=float, default=1e-3,
                     help="distances within this many Å of the M-th neighbour's are tied (default 0.001)")
    _add_model_options(fit)
    fit.add_argument("-o", "--output", default="model" + MODEL_SUFFIX, help=_OUTPUT_HELP.format("model" + MODEL_SUFFIX))
    fit.add_argument("--force", action="store_true", help="overwrite existing output files")
    fit.set_defaults(func=_fit)

    predict = sub.add_parser("predict", help="predict with a saved model")
    predict.add_argument("model", help="a model file written by 'skcgcnn fit' or skcgcnn.persistence.save_model, "
                                       "the name of a released model (see 'skcgcnn models'), or an original-format "
                                       ".pth.tar checkpoint; a pickle (joblib) only with --trust-pickle")
    predict.add_argument("--trust-pickle", action="store_true",
                         help="read MODEL even if it is a pickle (joblib.dump): loading a pickle runs any code it "
                              "holds, so pass this only for files you made or whose source you trust")
    predict.add_argument("inputs", nargs="+", help="structure files, folders of them, or CSV files")
    predict.add_argument("--structure-column", default="cif")
    predict.add_argument("--id-column", default="id")
    predict.add_argument("-o", "--output", default="predictions.csv")
    predict.add_argument("--force", action="store_true", help="overwrite an existing output file")
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
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"skcgcnn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
