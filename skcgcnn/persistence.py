"""The skcgcnn model file: plain data and weights, read back without unpickling anything.

A model file holds what predicting needs and nothing else: the estimator's
plain parameters, the graph settings with their atom feature table, the
target scaling or the class labels, the elements seen in training, the
network's weights, the package versions that wrote it and, for an imported
checkpoint, where it came from. An ensemble
(:mod:`skcgcnn.ensemble`) is held as the records of its members.
No training data, no optimizer state, no callbacks. It is written with
``torch.save`` and read with ``torch.load(weights_only=True)``, which
accepts tensors, numbers, strings and containers of them only: a file that
asks for anything else (a pickled object or function) is refused before any
of it runs. Pickles (``joblib.dump``) remain the way to keep an estimator
with every skorch detail, for files you made yourself or trust.
"""

from __future__ import annotations

import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

from ._params import parameter_constraints
from .model_format import FORMAT, FORMAT_VERSION, read_content
from .elements import ATOM_FEATURE_SETS, AtomFeatures
from .files import atomic_path
from .graphs import CrystalGraphTransformer, GraphSettings
from .nn import CGCNN

__all__ = ["save_model", "load_model", "restore_fitted", "FORMAT", "FORMAT_VERSION"]

# Settings that start processes or a compiler: never taken from a file.
_MACHINE_SETTINGS = ("n_jobs", "compile", "iterator_train__num_workers", "iterator_valid__num_workers")
# Absent from files written before the error model read the neighbours' targets or residuals, before the local
# correction, or before sets had bands.
_ADDED_LATER = ("reference_targets_", "reference_residuals_", "correction_", "calibration_bands_", "band_edges_")
_PLAIN = (bool, int, float, str, type(None))
_PACKAGES = ("skcgcnn", "torch", "scikit-learn", "skorch", "pymatgen", "numpy", "joblib", "optuna", "pandas")


def _plain_params(estimator) -> dict:
    """The parameters that are plain values (what predicting depends on is among them)."""
    return {k: v for k, v in estimator.get_params(deep=False).items() if isinstance(v, _PLAIN)}


def _atom_features(features: AtomFeatures) -> dict:
    return {"name": features.name, "table": torch.from_numpy(features.table.copy()),
            "known": torch.from_numpy(features.known.copy())}


def _transformer_record(transformer: CrystalGraphTransformer) -> dict:
    params = _plain_params(transformer)
    params["atom_features"] = _atom_features(AtomFeatures.from_spec(transformer.atom_features))
    return params


def _features_from(record: dict) -> AtomFeatures | str:
    """The stored table; by its name when it is a built-in set that has not changed since."""
    table = AtomFeatures(record["table"].numpy(), record["known"].numpy(), record["name"])
    if record["name"] in ATOM_FEATURE_SETS and AtomFeatures.from_spec(record["name"]) == table:
        return record["name"]
    return table


def _transformer_from(record: dict) -> CrystalGraphTransformer:
    params = {k: v for k, v in record.items() if k not in _MACHINE_SETTINGS}
    return CrystalGraphTransformer(**{**params, "atom_features": _features_from(record["atom_features"])})


def package_versions() -> dict:
    """The versions of skcgcnn, its main dependencies and Python, as recorded in model files and run folders."""
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "unknown"
    return {**found, "python": sys.version.split()[0]}


def _saved_class(estimator) -> type:
    """The estimator class a model file records: a data-parallel estimator is saved as its plain form."""
    from .accelerated import AcceleratedCGCNNClassifier, AcceleratedCGCNNRegressor
    from .estimators import CGCNNClassifier, CGCNNRegressor

    kinds = {CGCNNRegressor: CGCNNRegressor, CGCNNClassifier: CGCNNClassifier,
             AcceleratedCGCNNRegressor: CGCNNRegressor, AcceleratedCGCNNClassifier: CGCNNClassifier}
    if type(estimator) not in kinds:
        raise TypeError(
            "only CGCNNRegressor, CGCNNClassifier, their ensembles and pipelines of them are saved in this format, "
            f"got {type(estimator).__name__}"
        )
    return kinds[type(estimator)]


def _estimator_record(estimator, weights: torch.dtype = torch.float32) -> dict:
    saved_as = _saved_class(estimator)
    if not getattr(estimator, "initialized_", False) or not hasattr(estimator, "graph_settings_"):
        raise ValueError(f"this {type(estimator).__name__} is not fitted; fit it before saving")
    if estimator.module is not CGCNN:
        raise ValueError("a custom module class cannot be saved in this format; use joblib.dump for it")
    settings: GraphSettings = estimator.graph_settings_
    params = _plain_params(estimator)
    if saved_as is not type(estimator):
        # The process's own device (cuda:3) and the mixin's settings mean nothing to the plain estimator.
        params = {k: v for k, v in params.items() if k != "unwrap_after_train" and not k.startswith("_")}
        params["device"] = estimator.accelerator.device.type
    record = {
        "class": saved_as.__name__,
        "params": params,
        "graph_settings": {"radius": settings.radius, "max_num_nbr": settings.max_num_nbr, "dmin": settings.dmin,
                           "step": settings.step, "nbr_rule": settings.nbr_rule, "tie_tol": settings.tie_tol,
                           "atom_features": _atom_features(settings.atom_features)},
        "featurizer": None if estimator.featurizer is None else _transformer_record(estimator.featurizer),
        "state_dict": {k: v.detach().cpu().to(weights if v.is_floating_point() else v.dtype).clone()
                       for k, v in estimator.module_.state_dict().items()},
    }
    if record["class"] == "CGCNNClassifier":
        classes = estimator.classes_
        record["classes"] = {"values": classes.tolist(), "dtype": classes.dtype.str}
    else:
        record["target"] = {"mean": estimator.y_mean_.tolist(), "scale": estimator.y_scale_.tolist(),
                            "ndim": int(estimator.y_ndim_)}
    if hasattr(estimator, "checkpoint_"):
        record["checkpoint"] = estimator.checkpoint_
    if hasattr(estimator, "elements_"):
        record["elements"] = torch.from_numpy(np.asarray(estimator.elements_, dtype=np.int64))
    return record


def _ensemble_record(ensemble, weights: torch.dtype = torch.float32) -> dict:
    if not hasattr(ensemble, "estimators_"):
        raise ValueError(f"this {type(ensemble).__name__} is not fitted; fit it before saving")
    params = {k: v for k, v in ensemble.get_params(deep=False).items() if k != "estimator" and isinstance(v, _PLAIN)}
    template = ensemble.estimator
    record = {
        "class": type(ensemble).__name__,
        "params": params,
        "template": None if template is None else {
            "class": _saved_class(template).__name__, "params": _plain_params(template),
            "featurizer": None if template.featurizer is None else _transformer_record(template.featurizer)},
        "members": [_estimator_record(member, weights) for member in ensemble.estimators_],
    }
    if hasattr(ensemble, "classes_"):
        record["classes"] = {"values": ensemble.classes_.tolist(), "dtype": ensemble.classes_.dtype.str}
    if hasattr(ensemble, "calibration_scores_"):
        # What calibrating added to the ensemble, arrays stored as tensors.
        record["calibration"] = {name: torch.from_numpy(np.asarray(getattr(ensemble, name)).copy())
                                 for name in type(ensemble)._calibration_attributes if hasattr(ensemble, name)}
        if "reference_" in record["calibration"]:
            record["calibration"]["reference_"] = record["calibration"]["reference_"].to(weights)
    if hasattr(ensemble, "card_"):
        record["card"] = ensemble.card_
    return record


def _is_ensemble(model) -> bool:
    from .calibrated import CalibratedEnsembleClassifier, CalibratedEnsembleRegressor
    from .ensemble import CGCNNEnsembleClassifier, CGCNNEnsembleRegressor

    return type(model) in (CGCNNEnsembleRegressor, CGCNNEnsembleClassifier, CalibratedEnsembleRegressor,
                           CalibratedEnsembleClassifier)


def save_model(model, path, force: bool = False, weights: str = "float32") -> Path:
    """Write a fitted model as a skcgcnn model file.

    Parameters
    ----------
    model : CGCNNRegressor, CGCNNClassifier, CGCNNEnsembleRegressor, CGCNNEnsembleClassifier, or Pipeline
        A fitted estimator or ensemble, or a fitted ``Pipeline`` of a
        :class:`~skcgcnn.CrystalGraphTransformer` and one of them. The
        data-parallel estimators of :mod:`skcgcnn.accelerated` are saved as
        their plain forms.
    path : str or path-like
        Where to write (conventionally with the suffix ``.skcgcnn``, :data:`skcgcnn.files.MODEL_SUFFIX`). The file
        is written under a temporary name and renamed when complete.
    force : bool, default=False
        Replace an existing file.
    weights : {"float32", "float16"}, default="float32"
        How the network weights (and a calibrated ensemble's training-set features) are stored. ``"float16"``
        halves the file; predictions then move by about 1e-3 relative, so score a model saved that way as it
        is read back. Loaded networks compute in float32 either way.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        If the model is not fitted, is not of a kind this format holds, or
        ``path`` exists and ``force`` is False.

    Examples
    --------
    >>> import tempfile
    >>> from skcgcnn import CGCNNRegressor
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(30, random_state=0)
    >>> reg = CGCNNRegressor(max_epochs=2, random_state=0).fit(X, y)
    >>> path = save_model(reg, Path(tempfile.mkdtemp()) / "model.skcgcnn")
    >>> bool((load_model(path).predict(X[:3]) == reg.predict(X[:3])).all())
    True
    """
    path = Path(path)
    dtypes = {"float32": torch.float32, "float16": torch.float16}
    if weights not in dtypes:
        raise ValueError(f"weights must be 'float32' or 'float16', got {weights!r}")
    if isinstance(model, Pipeline):
        if len(model.steps) != 2 or not isinstance(model.steps[0][1], CrystalGraphTransformer):
            raise TypeError("only a Pipeline of a CrystalGraphTransformer and a CGCNN estimator is saved in this "
                            "format")
        (graph_name, transformer), (net_name, estimator) = model.steps
        content = {"pipeline": {"steps": [graph_name, net_name], "transformer": _transformer_record(transformer)}}
    else:
        estimator, content = model, {"pipeline": None}
    if _is_ensemble(estimator):
        record = _ensemble_record(estimator, dtypes[weights])
        content.update(format=FORMAT, format_version=3 if "calibration" in record else 2,
                       versions=package_versions(), ensemble=record)
    else:
        content.update(format=FORMAT, format_version=1, versions=package_versions(),
                       estimator=_estimator_record(estimator, dtypes[weights]))
    if path.exists() and not force:
        raise ValueError(f"{path} exists; pass force=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(content, tmp)
    return path


def _runnable_here(params: dict) -> tuple[dict, str | None]:
    """The parameters with a CUDA device replaced by the CPU where this PyTorch sees none, and the device replaced.

    How many processes to start and whether to compile are this machine's choices, not a file's: those
    settings are left at their defaults.
    """
    params = {k: v for k, v in params.items() if k not in _MACHINE_SETTINGS}
    saved_on = str(params.get("device", "cpu"))
    if saved_on.startswith("cuda") and not torch.cuda.is_available():
        params["device"] = "cpu"
        return params, saved_on
    return params, None


def _estimator_from(record: dict, path: Path):
    from .estimators import CGCNNClassifier, CGCNNRegressor

    classes = {"CGCNNRegressor": CGCNNRegressor, "CGCNNClassifier": CGCNNClassifier}
    if record.get("class") not in classes:
        raise ValueError(f"{path}: unknown estimator {record.get('class')!r}")
    params, saved_on = _runnable_here(record["params"])
    if saved_on is not None:
        warnings.warn(f"{path}: the model was saved on {saved_on}; it runs on the CPU here", UserWarning,
                      stacklevel=3)
    if record.get("featurizer") is not None:
        params["featurizer"] = _transformer_from(record["featurizer"])
    estimator = classes[record["class"]](**params)
    settings = dict(record["graph_settings"])
    features = AtomFeatures.from_spec(_features_from(settings.pop("atom_features")))
    fitted = {"checkpoint": record.get("checkpoint"),
              "elements": record["elements"].numpy() if "elements" in record else None}
    if "classes" in record:
        fitted["classes"] = np.array(record["classes"]["values"], dtype=np.dtype(record["classes"]["dtype"]))
    else:
        fitted["target"] = (record["target"]["mean"], record["target"]["scale"], record["target"]["ndim"])

    try:
        validate_parameter_constraints(parameter_constraints(), {k: estimator.get_params()[k]
                                                                 for k in parameter_constraints()},
                                       f"the model file {path}")
    except InvalidParameterError as exc:
        raise ValueError(str(exc)) from None
    state = record["state_dict"]
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ValueError(f"{path}: the weights hold NaN or infinite values ({broken[0]})")

    def load_weights(module):
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{path}: the weights do not fit the stored architecture ({exc})") from None

    try:
        graph_settings = GraphSettings(atom_features=features, **settings)
    except ValueError as exc:
        raise ValueError(f"{path}: its graph settings are refused: {exc}") from None
    return restore_fitted(estimator, graph_settings, load_weights,
                          shapes={k: tuple(v.shape) for k, v in state.items()}, source=str(path), **fitted)


def restore_fitted(estimator, graph_settings: GraphSettings, load_weights, target=None, classes=None, elements=None,
                   checkpoint=None, shapes=None, source="the model"):
    """Make an unfitted CGCNN estimator the fitted one that stored state describes.

    The one place that sets fitted attributes from outside ``fit``: model
    files and original-format checkpoints are both read through it.

    Parameters
    ----------
    estimator : CGCNNRegressor or CGCNNClassifier
        Constructed with the stored parameters.
    graph_settings : GraphSettings
    load_weights : callable
        Called with the built network; copies the stored weights into it.
    target : (mean, scale, ndim), default=None
        A regressor's target standardisation and the number of dimensions of its ``y``.
    classes : ndarray, default=None
        A classifier's labels.
    elements : array-like of int, default=None
        Atomic numbers seen in training.
    checkpoint : dict, default=None
        Where an imported checkpoint came from (``checkpoint_``).
    shapes : dict, default=None
        The stored weights' shapes by name: the network is first built without memory and compared with them,
        so that parameters that do not fit the weights are refused before anything is allocated.
    source : str, default="the model"
        Named in error messages.

    Returns
    -------
    estimator
        Fitted, in evaluation mode.
    """
    from sklearn.preprocessing import LabelEncoder

    estimator.graph_settings_ = graph_settings
    if classes is not None:
        estimator.label_encoder_ = LabelEncoder().fit(classes)
    if target is not None:
        mean, scale, ndim = (np.asarray(target[0], dtype=np.float64), np.asarray(target[1], dtype=np.float64),
                             target[2])
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"{source}: the target scaling (mean {mean.tolist()}, scale {scale.tolist()}) is not "
                             "finite and positive")
        estimator.y_mean_ = mean
        estimator.y_scale_ = scale
        estimator.n_outputs_, estimator.y_ndim_ = len(estimator.y_mean_), ndim
    if checkpoint is not None:
        estimator.checkpoint_ = checkpoint
    if elements is not None:
        estimator.elements_ = np.asarray(elements, dtype=np.int64)
    # The weights are the stored ones: the network is built without reading the checkpoint it started from.
    pretrained, estimator.pretrained = estimator.pretrained, None
    try:
        if shapes is not None:
            built = estimator.weight_shapes()
            if built != shapes:
                wrong = sorted(k for k in built.keys() | shapes.keys() if built.get(k) != shapes.get(k))
                raise ValueError(f"{source}: the weights do not fit the stored architecture ({', '.join(wrong[:3])})")
        estimator.initialize()
    finally:
        estimator.pretrained = pretrained
    load_weights(estimator.module_)
    estimator.module_.eval()
    return estimator


def _ensemble_from(record: dict, path: Path):
    from .calibrated import CalibratedEnsembleClassifier, CalibratedEnsembleRegressor
    from .ensemble import CGCNNEnsembleClassifier, CGCNNEnsembleRegressor
    from .estimators import CGCNNClassifier, CGCNNRegressor

    classes = {"CGCNNEnsembleRegressor": CGCNNEnsembleRegressor, "CGCNNEnsembleClassifier": CGCNNEnsembleClassifier,
               "CalibratedEnsembleRegressor": CalibratedEnsembleRegressor,
               "CalibratedEnsembleClassifier": CalibratedEnsembleClassifier}
    if record.get("class") not in classes:
        raise ValueError(f"{path}: unknown ensemble {record.get('class')!r}")
    template = record["template"]
    estimator = None
    if template is not None:
        members = {"CGCNNRegressor": CGCNNRegressor, "CGCNNClassifier": CGCNNClassifier}
        params, _ = _runnable_here(template["params"])
        if template["featurizer"] is not None:
            params["featurizer"] = _transformer_from(template["featurizer"])
        estimator = members[template["class"]](**params)
    ensemble = classes[record["class"]](estimator=estimator, **_runnable_here(record["params"])[0])
    ensemble.estimators_ = [_estimator_from(member, path) for member in record["members"]]
    ensemble.graph_settings_ = ensemble.estimators_[0].graph_settings_
    if "classes" in record:
        ensemble.classes_ = np.array(record["classes"]["values"], dtype=np.dtype(record["classes"]["dtype"]))
    if "calibration" in record:
        for name in type(ensemble)._calibration_attributes:
            if name in _ADDED_LATER and name not in record["calibration"]:
                continue
            setattr(ensemble, name, record["calibration"][name].float().numpy() if name == "reference_"
                    else record["calibration"][name].numpy())
        bands = getattr(ensemble, "calibration_bands_", None)
        if bands is not None and (bands.shape != ensemble.calibration_scores_.shape or len(bands) and (
                bands.min() < 0 or bands.max() > len(getattr(ensemble, "band_edges_", ())))):
            raise ValueError(f"{path}: its calibration bands do not match its calibration scores and band edges")
    if "card" in record:
        ensemble.card_ = record["card"]
    return ensemble


def load_model(path):
    """Read a skcgcnn model file, running nothing it holds.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    CGCNNRegressor, CGCNNClassifier, CGCNNEnsembleRegressor, CGCNNEnsembleClassifier or Pipeline
        Fitted, as it was saved.

    Raises
    ------
    ValueError
        One line naming the file: missing, empty, truncated or damaged, a
        pickle or anything else that is not a model file (refused unread),
        or a model of a newer format version.
    """
    path = Path(path)
    content = read_content(path)
    try:
        if "ensemble" in content:
            estimator = _ensemble_from(content["ensemble"], path)
        else:
            estimator = _estimator_from(content["estimator"], path)
        pipeline = content["pipeline"]
        if pipeline is None:
            return estimator
        graph_name, net_name = pipeline["steps"]
        return Pipeline([(graph_name, _transformer_from(pipeline["transformer"])), (net_name, estimator)])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: the model file lacks or garbles {exc}") from None
