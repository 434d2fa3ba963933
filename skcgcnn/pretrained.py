"""The released models by name, and original-format checkpoints read as fitted estimators.

:func:`load` gives one of the eight models released with the original code
(Xie & Grossman, PRL 120, 145301, 2018; MIT licence, Copyright (c) 2018
Tian Xie), which ship with this package; :func:`load_checkpoint` turns any
``.pth.tar`` file of the original code into an ordinary fitted
:class:`~skcgcnn.CGCNNRegressor` or :class:`~skcgcnn.CGCNNClassifier`;
:func:`load_any` takes whatever names a model. The format itself is
:mod:`skcgcnn.checkpoints`, the facts about each model
:mod:`skcgcnn.registry`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .checkpoints import (ORIGINAL_GRAPH, architecture, atom_features_of, load_pretrained_weights, read_checkpoint,
                          save_checkpoint)
from .estimators import CGCNNClassifier, CGCNNRegressor
from .graphs import CrystalGraphTransformer
from .persistence import load_model, restore_fitted
from .registry import MODELS, RELEASED, PretrainedModel, model_path

__all__ = ["PretrainedModel", "MODELS", "RELEASED", "load", "load_any", "load_checkpoint", "read_checkpoint",
           "save_checkpoint", "model_path", "ORIGINAL_GRAPH"]


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
    checkpoint = read_checkpoint(path)
    args, normalizer, state = checkpoint["args"], checkpoint["normalizer"], checkpoint["state_dict"]
    featurizer = CrystalGraphTransformer(**ORIGINAL_GRAPH, atom_features=atom_features_of(path), nbr_rule=nbr_rule)
    fitted = {"checkpoint": {"path": str(path), "epoch": checkpoint.get("epoch"),
                             "best_score": float(checkpoint.get("best_mae_error", np.nan)), "args": args}}
    if args["task"] == "classification":
        estimator = CGCNNClassifier(**architecture(args), featurizer=featurizer)
        fitted["classes"] = np.arange(int(state["fc_out.weight"].shape[0]))
    elif args["task"] == "regression":
        estimator = CGCNNRegressor(**architecture(args), featurizer=featurizer)
        fitted["target"] = ([float(normalizer["mean"])], [float(normalizer["std"])], 1)
    else:
        raise ValueError(f"{path}: unknown task {args['task']!r} in the checkpoint's training options")
    return restore_fitted(estimator, featurizer.settings,
                          lambda module: load_pretrained_weights(module, state, str(path)), **fitted)


def load(name: str, nbr_rule: str = "first"):
    """A released model, ready to predict (no download: it ships with the package).

    Parameters
    ----------
    name : str
        A key of :data:`~skcgcnn.registry.RELEASED` (this project's models, e.g. ``"mp-bulk-modulus"``) or of
        :data:`~skcgcnn.registry.MODELS` (the 2018 models, e.g. ``"formation-energy-per-atom"``).
    nbr_rule : {"first", "shared"}, default="first"
        For the 2018 models, see :func:`load_checkpoint`; this project's models build their graphs with the
        rule they were trained with (``"shared"``).

    Returns
    -------
    CalibratedEnsembleRegressor, CGCNNRegressor or CGCNNClassifier
        Fitted, in the units of the registry entry; a calibrated ensemble also answers
        ``predict(X, return_std=True)`` and ``predict_interval(X, confidence_level)``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> model = load("formation-energy-per-atom")
    >>> round(float(model.predict([nacl])[0]), 2)  # eV/atom; Materials Project's DFT value is about -2.1
    -2.12
    """
    if name in RELEASED:
        model = load_model(model_path(name))
        model.card_ = dict(RELEASED[name].card)  # the package's card may say more than the file's copy
        return model
    model = load_checkpoint(model_path(name), nbr_rule=nbr_rule)
    entry = MODELS[name]
    return model.set_params(target_name=entry.property,
                            target_unit=entry.units if entry.task == "regression" and entry.units != "-" else None)


def load_any(spec, trust_pickle: bool = False):
    """A model from whatever names it: a released model's name, an original-format checkpoint, or a model file.

    Parameters
    ----------
    spec : str or path-like
        A released model's name (:data:`~skcgcnn.registry.RELEASED`, :data:`~skcgcnn.registry.MODELS`), a
        ``.pth.tar`` (``.pth``, ``.pt``) checkpoint of the original code, or a skcgcnn model file.
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

    spec = str(spec)
    if spec in MODELS or spec in RELEASED:
        if Path(spec).exists():
            raise ValueError(f"{spec!r} is both a released model's name and a file here; give ./{spec} for the "
                             "file, or run from another folder for the released model")
        return load(spec)
    if not Path(spec).exists() and not Path(spec).suffix and "/" not in spec:
        model_path(spec)  # a name, not a file: refused with the names that come close
    if spec.endswith((".pth.tar", ".pth", ".pt")):
        return load_checkpoint(spec)
    if trust_pickle and Path(spec).is_file() and not zipfile.is_zipfile(spec):
        import joblib

        return joblib.load(spec)
    return load_model(spec)
