"""What the commands share: options read from the estimators' own defaults, data loading, output files."""

from __future__ import annotations

import argparse
import inspect
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..files import atomic_path

PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle"}
OUTPUT_HELP = ("model file (default {}): the skcgcnn model format, safe to share; a .joblib or .pkl name writes "
               "a pickle instead")
DATA_HELP = ("a folder in the original layout (id_prop.csv + CIFs), a CSV file with a CIF column, or a matbench "
             "JSON(.gz) file")


class HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it names it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or silent or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


# ----- options -----------------------------------------------------------------
def add_data_options(parser, data_optional: bool = False) -> None:
    """DATA and the options that say how to read it, split it and seed the run."""
    parser.add_argument("data", nargs="?" if data_optional else None, help=DATA_HELP)
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


def add_model_options(parser) -> None:
    """Architecture and training options; their defaults and choices are the regressor's own."""
    from ..estimators import OPTIMIZERS, CGCNNRegressor
    from ..nn import POOLINGS

    default = {name: p.default for name, p in inspect.signature(CGCNNRegressor).parameters.items()}
    optimizers = [name for name, cls in OPTIMIZERS.items() if cls is default["optimizer"]]
    group = parser.add_argument_group("model and training")
    group.add_argument("--atom-fea-len", type=int, default=default["atom_fea_len"],
                       help="length of the atom vectors in the convolutions")
    group.add_argument("--n-conv", type=int, default=default["n_conv"],
                       help="number of convolution layers (the paper's R)")
    group.add_argument("--h-fea-len", type=int, default=default["h_fea_len"],
                       help="width of the hidden layers after pooling")
    group.add_argument("--n-h", type=int, default=default["n_h"],
                       help="number of hidden layers after pooling (the paper's L2)")
    group.add_argument("--pooling", choices=POOLINGS, default=default["pooling"],
                       help="how atom vectors become the crystal's; linear gives per-site contributions")
    group.add_argument("--optimizer", choices=list(OPTIMIZERS), default=optimizers[0], help="optimizer")
    group.add_argument("--lr", type=float, default=default["lr"], help="learning rate")
    group.add_argument("--weight-decay", type=float, default=None,
                       help="weight decay of the optimizer (default: the optimizer's own, 0.01 for adamw and 0 for "
                            "adam and sgd, as in Python)")
    group.add_argument("--momentum", type=float, default=0.9, help="momentum of --optimizer sgd (default 0.9)")
    group.add_argument("--epochs", type=int, default=default["max_epochs"], help="training epochs")
    group.add_argument("--batch-size", type=int, default=default["batch_size"], help="crystals per batch")
    group.add_argument("--device", default=default["device"], help="cpu or cuda")
    group.add_argument("--precision", choices=["float32", "bfloat16"], default=default["precision"],
                       help="bfloat16: mixed precision, meant for GPUs with bfloat16 units")


def network(args, classification: bool):
    """The estimator the model options describe."""
    from ..estimators import CGCNNClassifier, CGCNNRegressor

    cls = CGCNNClassifier if classification else CGCNNRegressor
    extra = {"optimizer__momentum": args.momentum} if args.optimizer == "sgd" else {}
    if args.weight_decay is not None:
        extra["optimizer__weight_decay"] = args.weight_decay
    return cls(
        atom_fea_len=args.atom_fea_len, n_conv=args.n_conv, h_fea_len=args.h_fea_len, n_h=args.n_h,
        pooling=args.pooling, optimizer=args.optimizer, lr=args.lr, max_epochs=args.epochs,
        batch_size=args.batch_size, device=args.device, random_state=args.seed, precision=args.precision,
        verbose=1, **extra,
    )


# ----- data --------------------------------------------------------------------
def load_training_data(args, path=None):
    """Structures (or CIF text), targets, ids and the atom feature spec of DATA (or of ``path``)."""
    from ..datasets import load_cgcnn_dir, load_csv, load_matbench

    path = Path(args.data if path is None else path)
    atom_features = args.atom_features
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.is_dir():
        if args.target is not None:
            n_targets = _targets_in_id_prop(path)
            if not args.target.isdigit() or int(args.target) >= n_targets:
                valid = "0" if n_targets == 1 else f"0 to {n_targets - 1}"
                raise ValueError(
                    f"{path} is in the original layout: --target is the 0-based column of id_prop.csv's "
                    f"{n_targets} target(s), {valid}; got {args.target!r}"
                )
        X, y, ids = load_cgcnn_dir(path, parse=False)  # the featurizer reads the files
        if args.target is not None and y.ndim == 2:
            y = y[:, int(args.target)]
        if atom_features is None and (path / "atom_init.json").is_file():
            atom_features = str(path / "atom_init.json")
            print(f"using the atom features of {atom_features}")
    elif path.name.endswith((".json", ".json.gz")):
        X, y, ids = load_matbench(path, target=args.target)
    elif path.is_file():
        if args.target is None:
            import pandas as pd

            ignored = (args.structure_column, args.id_column)
            columns = [c for c in pd.read_csv(path, nrows=0).columns if c not in ignored]
            raise ValueError(f"--target is required for a CSV file; the columns of {path} are {', '.join(columns)}")
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


def is_classification(args, y) -> bool:
    """The task --task names, or the one the targets suggest."""
    if args.task != "auto":
        return args.task == "classification"
    if y.dtype.kind in "bOUS":
        return True
    if y.ndim == 1 and len(np.unique(y)) == 2:
        print(f"note: the targets take only two values ({', '.join(map(str, np.unique(y)))}): training a "
              "regression; pass --task classification for a classifier")
    return False


def as_labels(y: np.ndarray) -> np.ndarray:
    """Class labels written as numbers (0.0, 1.0) become integers, so that they read 0 and 1 in the outputs."""
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    return y


# ----- outputs -----------------------------------------------------------------
def writable(path, force: bool) -> Path:
    """Check before any long work that the file ``path`` may be written."""
    from ..files import remove_stale_temporaries

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
def output(path: Path, force: bool):
    """A temporary path for ``path``; without ``force`` the no-overwrite promise holds at the final rename."""
    try:
        with atomic_path(path, overwrite=force) as tmp:
            yield tmp
    except FileExistsError:
        raise ValueError(f"{path} appeared while this command ran; pass --force to overwrite it") from None


def save(model, path: Path, force: bool) -> None:
    """The skcgcnn model format, or a pickle when the output's suffix asks for one."""
    with output(path, force) as tmp:
        if path.suffix in PICKLE_SUFFIXES:
            import joblib

            joblib.dump(model, tmp)
        else:
            from ..persistence import save_model

            save_model(model, tmp, force=True)


def write_table(path: Path, columns: dict) -> Path:
    """A CSV file of ``columns``, written whole or not at all."""
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(columns).to_csv(tmp, index=False)
    return path
