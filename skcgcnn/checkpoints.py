"""The original CGCNN code's checkpoint format (``.pth.tar``): read safely, its weights renamed, written back.

The original ``main.py`` saves a ``state_dict``, the training options
(``args``), the target normaliser and the best validation score. This module
reads and writes that format and maps its parameter names onto
:class:`~skcgcnn.nn.CGCNN`'s; it builds no estimator
(:func:`skcgcnn.pretrained.load_checkpoint` does).

Files are read with ``torch.load(weights_only=True)``: tensors and plain
data only, plus the numpy scalar some checkpoints store their score as. A
file that asks for anything else is refused before any of it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ._safe_load import UnreadableFile, load_plain
from .elements import AtomFeatures
from .files import atomic_path
from .graphs import GraphSettings

__all__ = ["ORIGINAL_GRAPH", "read_checkpoint", "load_pretrained_weights", "atom_features_of", "architecture",
           "save_checkpoint"]

#: Graph geometry of the original code (its defaults, used by every released model).
ORIGINAL_GRAPH = {"radius": 8.0, "max_num_nbr": 12, "dmin": 0.0, "step": 0.2}

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
        checkpoint = load_plain(path, _numpy_scalar_globals())
    except UnreadableFile as exc:
        if exc.refused:
            raise ValueError(
                f"{path}: refused unread: it asks to load {exc.refused}, not only tensors and plain data, "
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


def architecture(args: dict) -> dict:
    """The architecture (``atom_fea_len``, ``n_conv``, ``h_fea_len``, ``n_h``) of a checkpoint's training options."""
    return {k: int(args[k]) for k in _OPTIONS[:4]}


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
