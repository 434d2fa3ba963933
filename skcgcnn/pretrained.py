"""Checkpoints of the original CGCNN code: read as fitted estimators, written back, and its released models by name.

The original ``main.py`` saves ``.pth.tar`` files holding a ``state_dict``, the
training options (``args``), the target normaliser and the best validation
score. :func:`load_checkpoint` turns such a file into an ordinary fitted
:class:`~skcgcnn.CGCNNRegressor` or :class:`~skcgcnn.CGCNNClassifier`;
:func:`load` does the same for the eight models released with the original
code (Xie & Grossman, PRL 120, 145301, 2018; MIT licence, Copyright (c) 2018
Tian Xie), which ship with this package; :func:`save_checkpoint` writes a
model trained here in that format.

Files are read with ``torch.load(weights_only=True)``: tensors and plain
data only, plus the numpy scalar some checkpoints store their score as. A
file that asks for anything else is refused before any of it runs.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder

from .elements import AtomFeatures
from .files import atomic_path
from .graphs import CrystalGraphTransformer, GraphSettings

__all__ = ["PretrainedModel", "MODELS", "load", "load_any", "load_checkpoint", "read_checkpoint", "save_checkpoint",
           "ORIGINAL_GRAPH"]

#: Graph geometry of the original code (its defaults, used by every released model).
ORIGINAL_GRAPH = {"radius": 8.0, "max_num_nbr": 12, "dmin": 0.0, "step": 0.2}

_MP = "Materials Project (Jain et al., APL Mater. 1, 011002, 2013)"
_PAPER = "Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018)"


@dataclass(frozen=True)
class PretrainedModel:
    """One released model of the original CGCNN code.

    Parameters
    ----------
    name : str
        Its name here (the checkpoint's file name without ``.pth.tar``).
    property : str
        What it predicts.
    units : str
    task : {"regression", "classification"}
    n_train : int
        Training crystals.
    validation_score : float
        Best validation MAE (in ``units``) or, for the classifier, ROC-AUC, as stored in the checkpoint.
    data : str
        Source of the training data.
    reference : str
        The publication to cite.
    """

    name: str
    property: str
    units: str
    task: str
    n_train: int
    validation_score: float
    data: str = _MP
    reference: str = _PAPER

    @property
    def metric(self) -> str:
        """``"MAE"`` or ``"ROC-AUC"``."""
        return "ROC-AUC" if self.task == "classification" else "MAE"


#: The models released with the original code, by name.
MODELS = {m.name: m for m in [
    PretrainedModel("formation-energy-per-atom", "formation energy", "eV/atom", "regression", 28046, 0.03972),
    PretrainedModel("final-energy-per-atom", "absolute (final) energy", "eV/atom", "regression", 28046, 0.07929),
    PretrainedModel("band-gap", "band gap", "eV", "regression", 16458, 0.36897),
    PretrainedModel("efermi", "Fermi energy", "eV", "regression", 28046, 0.35514),
    PretrainedModel("bulk-moduli", "bulk modulus", "log10(GPa)", "regression", 2041, 0.05528),
    PretrainedModel("shear-moduli", "shear modulus", "log10(GPa)", "regression", 2041, 0.09075),
    PretrainedModel("poisson-ratio", "Poisson ratio", "-", "regression", 2041, 0.02931),
    PretrainedModel("semi-metal-classification", "metal (class 1) or semiconductor (class 0)", "probability",
                    "classification", 37394, 0.95860),
]}

# Names of our module's submodules for the original's (whole dotted components of parameter names).
_RENAMES = {"fc_full": "fc", "bn1": "bn_edge", "bn2": "bn_sum", "fcs": "hidden", "fc_out": "out"}
_BACK = {new: old for old, new in _RENAMES.items()}
# Buffers our module derives from the graph settings; the original's state_dict has none of them.
_DERIVED = ("atom_table", "expansion.centers")
_OPTIONS = ("atom_fea_len", "n_conv", "h_fea_len", "n_h", "task")


def _numpy_scalar_globals() -> list:
    """What numpy scalars (e.g. a score saved as ``np.float64``) need to unpickle, and nothing more."""
    from numpy._core.multiarray import scalar  # numpy 1.26 has the module, not the attribute path

    return [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype(np.float64))]


def read_checkpoint(path) -> dict:
    """Read an original-format checkpoint without running anything it holds.

    Parameters
    ----------
    path : str or path-like
        A ``.pth.tar`` file written by the original ``main.py`` (or by :func:`save_checkpoint`).

    Returns
    -------
    dict
        With at least ``state_dict``, ``args`` and ``normalizer``.

    Raises
    ------
    ValueError
        Naming the file: missing, empty, truncated or not a checkpoint, holding
        objects other than tensors and plain data (refused unread), or lacking
        the keys or training options a model needs.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(
                f"{path}: refused unread: it asks to load {found.group(1)}, not only tensors and plain data, "
                "which a model checkpoint never needs"
            ) from None
        raise ValueError(f"{path}: not a checkpoint, or a truncated or damaged one") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "args", "normalizer"} <= checkpoint.keys():
        raise ValueError(f"{path}: not a CGCNN checkpoint (expected the keys state_dict, args and normalizer)")
    args = checkpoint["args"]
    args = vars(args) if hasattr(args, "__dict__") else args
    missing = [k for k in _OPTIONS if k not in args]
    if missing:
        raise ValueError(f"{path}: the checkpoint's training options lack {', '.join(missing)}")
    return {**checkpoint, "args": args}


def _renamed(key: str, names: dict) -> str:
    return ".".join(names.get(part, part) for part in key.split("."))


def _ours(state: dict) -> dict:
    return {_renamed(key, _RENAMES): value for key, value in state.items()}


def _theirs(state: dict) -> dict:
    return {_renamed(key, _BACK): value.detach().cpu().clone() for key, value in state.items()
            if key not in _DERIVED and not key.endswith("num_batches_tracked")}


def load_pretrained_weights(module: torch.nn.Module, state: dict, source: str, skip_output: bool = False) -> None:
    """Copy an original-format ``state_dict`` into a :class:`~skcgcnn.nn.CGCNN` of the same architecture.

    Parameters
    ----------
    module : CGCNN
    state : dict
        The checkpoint's ``state_dict`` (original parameter names).
    source : str
        Named in error messages.
    skip_output : bool, default=False
        Keep the module's own output layer (a new target or other classes).
    """
    ours = _ours(state)
    if skip_output:
        ours = {k: v for k, v in ours.items() if not k.startswith("out.")}
    own = module.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (here {tuple(own[k].shape)})" for k, v in ours.items()
             if k in own and own[k].shape != v.shape]
    unknown = [k for k in ours if k not in own]
    if wrong or unknown:
        raise ValueError(f"{source}: the weights do not fit this architecture: {', '.join(wrong + unknown)}")
    missing = [k for k in own if k not in ours and not k.endswith("num_batches_tracked")
               and k not in _DERIVED and not (skip_output and k.startswith("out."))]
    if missing:
        raise ValueError(f"{source}: the checkpoint lacks the weights {', '.join(missing)}")
    module.load_state_dict(ours, strict=False)


def source_path(name_or_path) -> Path:
    """The checkpoint file of a released model's name, or the path itself."""
    if isinstance(name_or_path, str) and name_or_path in MODELS:
        return model_path(name_or_path)
    return Path(name_or_path)


def atom_features_of(path) -> AtomFeatures:
    """The atom feature table a checkpoint's inputs are made of.

    :func:`save_checkpoint` writes the table beside the checkpoint as
    ``<name>.atom_init.json``; without that file, the inputs are the original
    code's ``atom_init.json`` vectors (``"cgcnn_original"``).
    """
    beside = _atom_init_beside(Path(path))
    return AtomFeatures.from_spec(beside if beside.is_file() else "cgcnn_original")


def _atom_init_beside(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".pth.tar") + ".atom_init.json")


def training_params(name_or_path) -> dict:
    """Estimator parameters that train on from a checkpoint: its architecture, graphs it can read, ``pretrained``.

    Parameters
    ----------
    name_or_path : str or path-like
        A key of :data:`MODELS` or an original-format checkpoint.

    Returns
    -------
    dict
        ``atom_fea_len``, ``n_conv``, ``h_fea_len``, ``n_h``, ``featurizer``
        (the original graph geometry and the checkpoint's atom features, with
        the default shared neighbour rule) and ``pretrained``.
    """
    path = source_path(name_or_path)
    args = read_checkpoint(path)["args"]
    return {**{k: int(args[k]) for k in _OPTIONS[:4]},
            "featurizer": CrystalGraphTransformer(**ORIGINAL_GRAPH, atom_features=atom_features_of(path)),
            "pretrained": name_or_path}


def load_checkpoint(path, nbr_rule: str = "first"):
    """A fitted estimator from an original-format checkpoint.

    The architecture comes from the checkpoint's training options, the target
    scaling from its normaliser, and the graph settings are the original
    code's: 8 Å, 12 neighbours, Gaussians every 0.2 Å and the original
    ``atom_init.json`` table (``atom_features="cgcnn_original"``), or the
    table written beside the file by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or path-like
    nbr_rule : {"first", "shared"}, default="first"
        ``"first"`` builds graphs as the model was trained (the original's
        rule): predictions then match the original code's, and may change
        with the unit cell where a neighbour shell is tied. ``"shared"``
        makes them independent of the cell (see
        :class:`~skcgcnn.CrystalGraphTransformer`), at the price of a small
        departure from what the model saw in training on such crystals.

    Returns
    -------
    CGCNNRegressor or CGCNNClassifier
        Fitted; ``checkpoint_`` holds the file's epoch, best validation
        score and training options.

    Raises
    ------
    ValueError
        If the file cannot be read safely or is not a CGCNN checkpoint.
    """
    from .estimators import CGCNNClassifier, CGCNNRegressor

    checkpoint = read_checkpoint(path)
    args, normalizer = checkpoint["args"], checkpoint["normalizer"]
    architecture = {k: int(args[k]) for k in _OPTIONS[:4]}
    featurizer = CrystalGraphTransformer(**ORIGINAL_GRAPH, atom_features=atom_features_of(path), nbr_rule=nbr_rule)
    if args["task"] == "classification":
        estimator = CGCNNClassifier(**architecture, featurizer=featurizer)
        n_classes = int(checkpoint["state_dict"]["fc_out.weight"].shape[0])
        estimator.label_encoder_ = LabelEncoder().fit(np.arange(n_classes))
    elif args["task"] == "regression":
        estimator = CGCNNRegressor(**architecture, featurizer=featurizer)
        estimator.y_mean_ = np.array([float(normalizer["mean"])])
        estimator.y_scale_ = np.array([float(normalizer["std"])])
        estimator.n_outputs_, estimator.y_ndim_ = 1, 1
    else:
        raise ValueError(f"{path}: unknown task {args['task']!r} in the checkpoint's training options")
    estimator.graph_settings_ = featurizer.settings
    estimator.initialize()
    load_pretrained_weights(estimator.module_, checkpoint["state_dict"], str(path))
    estimator.module_.eval()
    estimator.checkpoint_ = {"path": str(path), "epoch": checkpoint.get("epoch"),
                             "best_score": float(checkpoint.get("best_mae_error", np.nan)), "args": args}
    return estimator


def model_path(name: str) -> Path:
    """Where the checkpoint of a released model lies in the installed package."""
    if name not in MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(MODELS)}")
    return Path(str(resources.files("skcgcnn.data").joinpath("pretrained", f"{name}.pth.tar")))


def load(name: str, nbr_rule: str = "first"):
    """A released model of the original CGCNN, ready to predict (no download: it ships with the package).

    Parameters
    ----------
    name : str
        A key of :data:`MODELS`, e.g. ``"formation-energy-per-atom"``.
    nbr_rule : {"first", "shared"}, default="first"
        See :func:`load_checkpoint`.

    Returns
    -------
    CGCNNRegressor or CGCNNClassifier
        Fitted, in the units of :data:`MODELS` ``[name].units``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> model = load("formation-energy-per-atom")
    >>> round(float(model.predict([nacl])[0]), 2)  # eV/atom; Materials Project's DFT value is about -2.1
    -2.12
    """
    return load_checkpoint(model_path(name), nbr_rule=nbr_rule)


def load_any(spec, trust_pickle: bool = False):
    """A model from whatever names it: a released model's name, an original-format checkpoint, or a model file.

    Parameters
    ----------
    spec : str or path-like
        A key of :data:`MODELS`, a ``.pth.tar`` (``.pth``, ``.pt``) checkpoint of the original code, or a
        skcgcnn model file.
    trust_pickle : bool, default=False
        Also read a pickle (``joblib.dump``). Loading a pickle runs any code it holds: pass True only for files
        you made or whose source you trust. Without it, a pickle is refused like any file that is not a model
        file.

    Returns
    -------
    estimator, ensemble or Pipeline
        Fitted, ready to predict.
    """
    import zipfile

    from .persistence import load_model

    spec = str(spec)
    if spec in MODELS:
        return load(spec)
    if spec.endswith((".pth.tar", ".pth", ".pt")):
        return load_checkpoint(spec)
    if trust_pickle and Path(spec).is_file() and not zipfile.is_zipfile(spec):
        import joblib

        return joblib.load(spec)
    return load_model(spec)


def save_checkpoint(estimator, path, force: bool = False) -> Path:
    """Write a fitted estimator as an original-format checkpoint (``.pth.tar``).

    Tools that read the original format (its ``predict.py``) can then use the
    model. The original code builds its graphs with 8 Å, 12 neighbours,
    0.2 Å Gaussians and mean pooling, so only such models can be written; it
    reads the atom features from the ``atom_init.json`` of the data folder, so
    the table the model was trained with is written beside the checkpoint as
    ``<name>.atom_init.json`` (the original's own table for imported models).
    The original code keeps the first 12 neighbours: for crystals whose 12th
    neighbour shell is tied it may predict slightly differently than here with
    ``nbr_rule="shared"``.

    Parameters
    ----------
    estimator : CGCNNRegressor or CGCNNClassifier
        Fitted, single target.
    path : str or path-like
    force : bool, default=False
        Replace an existing file.

    Returns
    -------
    Path
        The checkpoint written.

    Raises
    ------
    ValueError
        If the model cannot be expressed in the original format, or ``path`` exists and ``force`` is False.
    """
    from sklearn.base import is_classifier

    path = Path(path)
    settings: GraphSettings = estimator.graph_settings_
    module = estimator.module_
    if module.pooling != "mean":
        raise ValueError(f"the original format has mean pooling only; this model uses pooling={module.pooling!r}")
    if any(getattr(settings, k) != v for k, v in ORIGINAL_GRAPH.items()):
        raise ValueError(
            "the original code builds graphs with radius=8.0, max_num_nbr=12, dmin=0.0, step=0.2; this model "
            f"was trained with {settings.describe()}"
        )
    classification = is_classifier(estimator)
    if not classification and estimator.n_outputs_ != 1:
        raise ValueError(f"the original format holds one target; this model predicts {estimator.n_outputs_}")
    if path.exists() and not force:
        raise ValueError(f"{path} exists; pass force=True to replace it")
    args = {"task": "classification" if classification else "regression",
            "atom_fea_len": module.embedding.out_features, "n_conv": len(module.convs),
            "h_fea_len": module.conv_to_fc.out_features, "n_h": len(module.hidden) + 1,
            "n_out": module.out.out_features, "radius": settings.radius, "max_num_nbr": settings.max_num_nbr,
            "dmin": settings.dmin, "step": settings.step}
    mean, std = (0.0, 1.0) if classification else (float(estimator.y_mean_[0]), float(estimator.y_scale_[0]))
    normalizer = {"mean": torch.tensor(mean, dtype=torch.float64), "std": torch.tensor(std, dtype=torch.float64)}
    checkpoint = {"epoch": len(getattr(estimator, "history_", []) or []), "state_dict": _theirs(module.state_dict()),
                  "best_mae_error": float(getattr(estimator, "checkpoint_", {}).get("best_score", float("nan"))),
                  "optimizer": {}, "normalizer": normalizer, "args": args}
    table = settings.atom_features
    atom_init = {str(z): table.table[z].tolist() for z in np.flatnonzero(table.known)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    with atomic_path(_atom_init_beside(path)) as tmp:
        tmp.write_text(json.dumps(atom_init))
    return path
