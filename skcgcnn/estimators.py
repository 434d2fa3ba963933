"""scikit-learn estimators around the CGCNN model, built on skorch."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils._param_validation import Interval, Options, StrOptions, validate_parameter_constraints
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import EarlyStopping, LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import Subset

from .batching import CrystalGraphDataset, passthrough_collate
from .callbacks import StopTraining
from .graphs import CrystalGraphs, CrystalGraphTransformer
from .interpret import site_contributions
from .nn import CGCNN
from .warn import warn

__all__ = ["CGCNNRegressor", "CGCNNClassifier", "OPTIMIZERS"]

#: String aliases accepted for ``optimizer``; plain strings keep search spaces
#: JSON-serialisable (Optuna storages) where a class would not be.
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def check_device(device) -> None:
    """Refuse a CUDA device that this PyTorch cannot use, in one line, before any work."""
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r}, but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
            "use device='cpu' or install a CUDA build of PyTorch"
        )


def _parameter_constraints() -> dict:
    """What each parameter may be, checked at ``fit`` with scikit-learn's validation and messages."""
    positive = Interval(Integral, 1, None, closed="left")
    return {
        "atom_fea_len": [positive],
        "n_conv": [positive],
        "h_fea_len": [positive],
        "n_h": [positive],
        "pooling": [StrOptions({"mean", "sum", "max", "linear"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "featurizer": [CrystalGraphTransformer, None],
        "random_state": ["random_state"],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "pretrained": [str, os.PathLike, None],
        "optimizer": [StrOptions(set(OPTIMIZERS)), callable],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [positive],
        "batch_size": [positive, Options(Integral, {-1})],
        "device": [str, torch.device, None],
    }


class _CGCNNMixin:
    """Behaviour shared by the regressor and the classifier (first in the MRO)."""

    def _check_params(self, fit_params: dict) -> None:
        constraints = _parameter_constraints()
        params = self.get_params(deep=False)
        validate_parameter_constraints(constraints, {k: params[k] for k in constraints}, type(self).__name__)
        check_device(self.device)
        if "sample_weight" in fit_params:
            raise TypeError(
                f"{type(self).__name__} does not take sample_weight: the loss weighs every crystal equally "
                "(repeat a crystal to weigh it more)"
            )

    @property
    def _default_callbacks(self):
        return [
            *super()._default_callbacks,
            ("lr_scheduler", LRScheduler(policy=CosineAnnealingLR, T_max=self.max_epochs)),
        ]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = self.random_state is None
        return tags

    # ----- inputs ---------------------------------------------------------
    def _featurizer_for_training(self) -> CrystalGraphTransformer:
        if self.featurizer is None:
            return CrystalGraphTransformer()
        if not isinstance(self.featurizer, CrystalGraphTransformer):
            raise TypeError(
                f"featurizer must be a CrystalGraphTransformer or None, got {type(self.featurizer).__name__}"
            )
        return clone(self.featurizer)

    def _as_graphs(self, X, fitting: bool) -> CrystalGraphs:
        """Crystal graphs of ``X``; when fitting, record the graph settings the model will expect."""
        if fitting:
            graphs = X if isinstance(X, CrystalGraphs) else self._featurizer_for_training().transform(X)
            self.graph_settings_ = graphs.settings
            self.elements_ = np.unique(graphs.atomic_numbers).astype(np.int64)
            return graphs
        if not getattr(self, "initialized_", False) or not hasattr(self, "graph_settings_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first.")
        settings = self.graph_settings_
        if isinstance(X, Subset) and isinstance(X.dataset, CrystalGraphDataset):
            X = X.dataset.X[np.asarray(X.indices)]  # skorch's scoring callbacks pass validation subsets
        if isinstance(X, CrystalGraphs):
            if X.settings != settings:
                raise ValueError(
                    f"the model was trained on graphs built with {settings.describe()}, "
                    f"but these graphs were built with {X.settings.describe()}"
                )
            return X
        return CrystalGraphTransformer(
            radius=settings.radius,
            max_num_nbr=settings.max_num_nbr,
            dmin=settings.dmin,
            step=settings.step,
            atom_features=settings.atom_features,
            nbr_rule=settings.nbr_rule,
            tie_tol=settings.tie_tol,
            n_jobs=getattr(self.featurizer, "n_jobs", None),
        ).transform(X)

    def _check_length(self, y, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs targets y")
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != n:
            raise ValueError(f"X holds {n} crystals but y holds {0 if y.ndim == 0 else len(y)} targets")
        return y

    # ----- skorch hooks ----------------------------------------------------
    def initialize_module(self):
        if not hasattr(self, "graph_settings_"):
            raise NotFittedError("the module is built from the training graphs; call fit instead of initialize")
        s = self.graph_settings_
        kwargs = {
            "atom_feature_table": s.atom_features.table,
            "dmin": s.dmin,
            "radius": s.radius,
            "step": s.step,
            "atom_fea_len": self.atom_fea_len,
            "n_conv": self.n_conv,
            "h_fea_len": self.h_fea_len,
            "n_h": self.n_h,
            "n_out": self._n_module_outputs(),
            "pooling": self.pooling,
            "dropout": self.dropout,
            **self.get_params_for("module"),
        }
        self.module_ = self.initialized_instance(self.module, kwargs)
        if self.pretrained is not None:
            self._load_pretrained()
        return self

    def _load_pretrained(self):
        from .pretrained import atom_features_of, load_pretrained_weights, read_checkpoint, source_path

        path = source_path(self.pretrained)
        checkpoint = read_checkpoint(path)
        expected = atom_features_of(path)
        if self.graph_settings_.atom_features != expected:
            raise ValueError(
                f"pretrained={self.pretrained!r} reads atom features {expected.name!r}, but the training graphs "
                f"were built with {self.graph_settings_.atom_features.name!r}; "
                f"{type(self).__name__}.from_pretrained sets a matching featurizer"
            )
        out = checkpoint["state_dict"].get("fc_out.weight")
        task = "classification" if is_classifier(self) else "regression"
        new_head = checkpoint["args"]["task"] != task or out is None or out.shape != self.module_.out.weight.shape
        load_pretrained_weights(self.module_, checkpoint["state_dict"], str(path), skip_output=new_head)

    @classmethod
    def from_pretrained(cls, name_or_path, **params):
        """An unfitted estimator whose training starts from a released model or an original-format checkpoint.

        Parameters
        ----------
        name_or_path : str or path-like
            A key of :data:`skcgcnn.pretrained.MODELS` or a ``.pth.tar`` file.
        **params
            Other estimator parameters (``max_epochs``, ``lr``, ``callbacks``, ...).

        Returns
        -------
        estimator
            With the checkpoint's architecture, a featurizer that builds the
            graphs it reads, and ``pretrained=name_or_path``; it clones like
            any estimator, so it works in pipelines and searches.

        Examples
        --------
        >>> from skcgcnn.datasets import make_ionic_crystals
        >>> X, y = make_ionic_crystals(30, random_state=0)
        >>> reg = CGCNNRegressor.from_pretrained("formation-energy-per-atom", max_epochs=2, lr=1e-4).fit(X, y)
        >>> reg.n_conv, reg.h_fea_len
        (4, 32)
        """
        from .pretrained import training_params

        return cls(**{**training_params(name_or_path), **params})

    def get_dataset(self, X, y=None):
        """skorch's dataset; on a CUDA device the graphs are kept there and batches gathered there.

        Pass ``dataset__device=None`` to build batches on the host instead
        (for a data set larger than the GPU's memory).
        """
        if self.dataset is CrystalGraphDataset and isinstance(X, CrystalGraphs):
            kwargs = self.get_params_for("dataset")
            if "device" not in kwargs and self.device is not None and torch.device(self.device).type == "cuda":
                kwargs["device"] = self.device
            return CrystalGraphDataset(X, y, **kwargs)
        return super().get_dataset(X, y)

    def initialize_callbacks(self):
        """Initialise callbacks; without a validation split, ones watching ``valid_*`` watch ``train_*``."""
        super().initialize_callbacks()
        if self.train_split is not None:
            return self
        for i, (name, cb) in enumerate(self.callbacks_):
            monitor = getattr(cb, "monitor", None)
            if isinstance(monitor, str) and monitor.startswith("valid_"):
                replacement = clone(cb)
                replacement.set_params(monitor="train_" + monitor[len("valid_") :])
                replacement.initialize()
                self.callbacks_[i] = (name, replacement)
                warnings.warn(
                    f"callback {name!r} monitors {monitor!r} but train_split=None gives no validation "
                    f"data; it monitors {replacement.monitor!r} instead",
                    UserWarning,
                    stacklevel=2,
                )
        return self

    def initialize_optimizer(self, triggered_directly=None):
        """Build the optimizer; ``optimizer`` may be a class or a key of :data:`OPTIMIZERS`."""
        optimizer = self.optimizer
        if isinstance(optimizer, str):
            if optimizer not in OPTIMIZERS:
                raise ValueError(
                    f"optimizer must be a torch optimizer class or one of {sorted(OPTIMIZERS)}, got {optimizer!r}"
                )
            optimizer = OPTIMIZERS[optimizer]
        args, kwargs = self.get_params_for_optimizer("optimizer", self.get_all_learnable_params())
        self.optimizer_ = optimizer(*args, **kwargs)
        return self

    def _seed(self) -> int | None:
        if self.random_state is None:
            return None
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    @contextmanager
    def _seeded(self):
        """Seed initialisation, leaving the caller's random state as it was."""
        seed = self._seed()
        if seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Start an epoch; with a ``random_state``, its shuffling and dropout are seeded by its number.

        An epoch is then the same whether training ran in one go or was
        resumed from a checkpoint, or continued with ``partial_fit``.
        """
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid, **kwargs)
        seed = self._seed()
        if seed is not None:
            torch.manual_seed((seed + len(self.history)) % (2**31 - 1))

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's training loop, recording whether it ended by an interrupt rather than by design."""
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt as exc:
            self.interrupted_ = not (isinstance(exc, StopTraining) or self._stopped_early())
            raise

    def _stopped_early(self) -> bool:
        return any(isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience for _, cb in self.callbacks_)

    # ----- fitting ---------------------------------------------------------
    def fit(self, X, y, **fit_params):
        """Fit the network on crystal graphs or raw structures.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
            Structures (pymatgen, ASE, CIF paths or text) are featurized with
            ``featurizer`` (default :class:`CrystalGraphTransformer`).
        y : array-like
            Targets, one per crystal.
        **fit_params
            Passed on to skorch.

        Returns
        -------
        self
        """
        if not self.warm_start or not self.initialized_:
            self.initialized_ = False
        return self._train(X, y, fit_params)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Train for ``max_epochs`` more epochs without re-initialising a fitted network.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
        y : array-like
        classes : ignored
            Present for scikit-learn compatibility.
        **fit_params
            Passed on to skorch.

        Returns
        -------
        self
        """
        return self._train(X, y, fit_params)

    def _train(self, X, y, fit_params):
        self._check_params(fit_params)
        first = not self.initialized_
        graphs = self._as_graphs(X, fitting=first)
        targets = self._encode_targets(y, len(graphs), first)
        epochs_before = len(self.history_) if not first else 0
        self.interrupted_ = False
        with self._seeded():
            if first:
                self.initialize()
            super().partial_fit(graphs, targets, **fit_params)
        if self.interrupted_:
            warn(
                f"training was interrupted after {len(self.history_) - epochs_before} complete epoch(s) of this "
                f"call; the network is not what the full fit gives (interrupted_ is True)"
            )
        return self

    def autocast(self):
        """Context that runs the network in the chosen ``precision`` (mixed precision for ``"bfloat16"``)."""
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        device_type = torch.device(self.device).type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def infer(self, x, **fit_params):
        with self.autocast():
            return self.module_(**x.to(self.device, non_blocking=True), **fit_params)

    def unseen_elements(self, X) -> list[list[str]]:
        """The elements of each input that the training data did not hold (its domain of applicability).

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        list of list of str
            Per input, the symbols of elements absent from the training
            crystals (empty where all were seen; empty for every input of a
            model that did not record its training elements, such as an
            imported checkpoint).

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> from skcgcnn.datasets import make_ionic_crystals
        >>> X, y = make_ionic_crystals(30, random_state=0)
        >>> reg = CGCNNRegressor(max_epochs=1).fit(X, y)
        >>> reg.unseen_elements([X[0], Structure(Lattice.cubic(5.5), ["Ne", "Cl"], [[0, 0, 0], [0.5] * 3])])
        [[], ['Ne']]
        """
        return self._unseen(self._as_graphs(X, fitting=False))

    def _unseen(self, graphs: CrystalGraphs) -> list[list[str]]:
        from pymatgen.core import Element

        out = [[] for _ in range(len(graphs))]
        if not hasattr(self, "elements_"):
            return out
        atoms = np.flatnonzero(~np.isin(graphs.atomic_numbers, self.elements_))
        crystal_of_atom = np.repeat(np.arange(len(graphs)), graphs.n_atoms)
        for crystal, z in sorted({(int(crystal_of_atom[a]), int(graphs.atomic_numbers[a])) for a in atoms}):
            out[crystal].append(Element.from_Z(z).symbol)
        return out

    def _forward_numpy(self, graphs: CrystalGraphs) -> np.ndarray:
        unseen = self._unseen(graphs)
        flagged = [i for i, symbols in enumerate(unseen) if symbols]
        if flagged:
            symbols = sorted({s for i in flagged for s in unseen[i]})
            warn(
                f"{len(flagged)} of {len(graphs)} inputs hold elements absent from the training data "
                f"({', '.join(symbols[:10])}{', ...' if len(symbols) > 10 else ''}): their predictions are "
                "extrapolations; unseen_elements(X) lists them per input"
            )
        return torch.cat(list(self.forward_iter(graphs, training=False))).float().cpu().numpy()

    def transform(self, X) -> np.ndarray:
        """Crystal feature vectors (after pooling and the first hidden layer).

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        ndarray of shape (n_crystals, h_fea_len)
        """
        dataset = self.get_dataset(self._as_graphs(X, fitting=False))
        self.module_.eval()
        with torch.no_grad(), self.autocast():
            features = [
                self.module_.crystal_features(**batch.to(self.device, non_blocking=True))
                for batch, _ in self.get_iterator(dataset, training=False)
            ]
        return torch.cat(features).float().cpu().numpy()


class CGCNNRegressor(_CGCNNMixin, NeuralNetRegressor):
    """Crystal graph convolutional neural network regressor.

    Targets are standardised on the training data (per output) and predictions
    mapped back. A 1-D ``y`` gives 1-D predictions, a 2-D ``y`` (several
    targets) 2-D predictions.

    The default recipe is AdamW (learning rate 1e-3, batches of 64) with a
    cosine-annealed learning rate over ``max_epochs``. At the same number of
    epochs (``benchmarks/train.py``) it reaches a 17 % lower test error than
    the original recipe (SGD with momentum 0.9, learning rate 0.01, step
    decay) on formation energy and 10 % lower on perovskites; batches of 256
    were both slower and worse on CPU. A one-cycle schedule was within 1-3 %,
    but needs the total number of optimizer steps in advance, which breaks
    ``partial_fit``. Replace the schedule with
    ``callbacks__lr_scheduler=skorch.callbacks.LRScheduler(...)`` or turn it
    off with ``callbacks__lr_scheduler=None``.

    Parameters
    ----------
    module : torch module class, default=:class:`~skcgcnn.nn.CGCNN`
    atom_fea_len : int, default=64
        Length of the atom vectors inside the convolutions.
    n_conv : int, default=3
        Number of convolution layers.
    h_fea_len : int, default=128
        Width of the hidden layers after pooling.
    n_h : int, default=1
        Number of hidden layers after pooling.
    pooling : {"mean", "sum", "max", "linear"}, default="mean"
        ``"mean"`` is the paper's normalised sum; ``"linear"`` makes every
        prediction the mean of per-site contributions.
    dropout : float, default=0.0
        Dropout before the output layer.
    featurizer : CrystalGraphTransformer, default=None
        Featurizes raw structures passed to ``fit`` (``None``: default
        settings). Ignored when ``fit`` receives :class:`CrystalGraphs`.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, and each epoch's shuffling and dropout by its
        number; a fixed value makes a CPU fit reproducible, also when it is
        resumed from a checkpoint.
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs the network under ``torch.autocast`` (mixed
        precision, parameters kept in float32). On 2-core CPUs with
        bfloat16 instructions an epoch was 4-19 % faster or 20-33 % slower
        (``benchmarks/train.py``); it is meant for GPUs with bfloat16 units.
        Check the accuracy on your task before relying on it.
    pretrained : str or path-like, default=None
        Start training from the weights of a released model (a key of
        :data:`skcgcnn.pretrained.MODELS`) or of an original-format
        checkpoint instead of a random initialisation (fine-tuning). The
        architecture parameters and the atom features must match it:
        :meth:`from_pretrained` sets them. The output layer is kept when it
        fits the new task and drawn afresh otherwise. Freeze layers with
        skorch's ``Freezer`` callback, e.g.
        ``callbacks=[Freezer(["embedding.*", "convs.*"])]``.
    optimizer : torch optimizer class or {"adamw", "adam", "sgd"}, default=torch.optim.AdamW
    lr : float, default=1e-3
    max_epochs : int, default=100
    batch_size : int, default=64
    train_split : callable or None, default=None
        skorch's validation split, e.g. ``skorch.dataset.ValidSplit(0.2)``.
        ``None`` trains on all data.
    verbose : int, default=0
        ``1`` prints skorch's table of epochs.
    device : str, default="cpu"
        ``"cuda"`` trains on a GPU.
    **kwargs
        Any other skorch parameter (``callbacks``, ``optimizer__weight_decay``,
        ``module__...``).

    Attributes
    ----------
    graph_settings_ : GraphSettings
        Settings of the training graphs; new inputs are featurized with them.
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Target standardisation.
    n_outputs_ : int
    elements_ : ndarray of int
        Atomic numbers present in the training crystals; ``predict`` warns
        about inputs with others (:meth:`unseen_elements`).
    interrupted_ : bool
        True when the last ``fit`` or ``partial_fit`` was interrupted
        (Ctrl-C) before its epochs were done; a warning says so too. A stop
        on purpose (early stopping, :class:`~skcgcnn.callbacks.TimeBudget`)
        is not an interruption.

    Examples
    --------
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(40, random_state=0)
    >>> reg = CGCNNRegressor(max_epochs=2, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    def __init__(
        self,
        module=CGCNN,
        *,
        atom_fea_len=64,
        n_conv=3,
        h_fea_len=128,
        n_h=1,
        pooling="mean",
        dropout=0.0,
        featurizer=None,
        random_state=None,
        precision="float32",
        pretrained=None,
        criterion=torch.nn.MSELoss,
        optimizer=torch.optim.AdamW,
        lr=1e-3,
        max_epochs=100,
        batch_size=64,
        train_split=None,
        verbose=0,
        device="cpu",
        dataset=CrystalGraphDataset,
        iterator_train__shuffle=True,
        iterator_train__collate_fn=passthrough_collate,
        iterator_valid__collate_fn=passthrough_collate,
        **kwargs,
    ):
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            verbose=verbose,
            device=device,
            dataset=dataset,
            iterator_train__shuffle=iterator_train__shuffle,
            iterator_train__collate_fn=iterator_train__collate_fn,
            iterator_valid__collate_fn=iterator_valid__collate_fn,
            **kwargs,
        )
        self.atom_fea_len = atom_fea_len
        self.n_conv = n_conv
        self.h_fea_len = h_fea_len
        self.n_h = n_h
        self.pooling = pooling
        self.dropout = dropout
        self.featurizer = featurizer
        self.random_state = random_state
        self.precision = precision
        self.pretrained = pretrained

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _n_module_outputs(self) -> int:
        return self.n_outputs_

    def _encode_targets(self, y, n: int, first: bool) -> np.ndarray:
        y = self._check_length(y, n)
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"regression targets must be numeric, got dtype {y.dtype}") from None
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        bad = ~np.isfinite(y.reshape(n, -1)).all(axis=1)
        if bad.any():
            raise ValueError(
                f"y holds {int(bad.sum())} NaN or infinite target(s), first at position {int(np.argmax(bad))}"
            )
        y2 = y.reshape(n, -1)
        if first:
            self.y_ndim_ = y.ndim
            self.n_outputs_ = y2.shape[1]
            self.y_mean_ = y2.mean(axis=0)
            scale = y2.std(axis=0)
            self.y_scale_ = np.where(scale > 0, scale, 1.0)
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"the model was fitted on {self.n_outputs_} target(s), y has {y2.shape[1]}")
        return ((y2 - self.y_mean_) / self.y_scale_).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        """Predict the targets of ``X``, in input order.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        ndarray of shape (n_crystals,) or (n_crystals, n_outputs)
        """
        out = self._forward_numpy(self._as_graphs(X, fitting=False)) * self.y_scale_ + self.y_mean_
        return out.ravel() if self.y_ndim_ == 1 else out

    def predict_contributions(self, X):
        """Per-site contributions whose mean over each crystal is its prediction.

        Needs ``pooling="linear"``; see :func:`skcgcnn.interpret.site_contributions`.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        pandas.DataFrame
            Columns ``crystal``, ``site``, ``element``, ``contribution``.

        Examples
        --------
        >>> from skcgcnn.datasets import make_ionic_crystals
        >>> X, y = make_ionic_crystals(30, random_state=0)
        >>> reg = CGCNNRegressor(pooling="linear", max_epochs=2, random_state=0).fit(X, y)
        >>> sites = reg.predict_contributions(X[:2])
        >>> bool(abs(sites.groupby("crystal").contribution.mean().to_numpy() - reg.predict(X[:2])).max() < 1e-5)
        True
        """
        return site_contributions(self, X)


class CGCNNClassifier(_CGCNNMixin, NeuralNetClassifier):
    """Crystal graph convolutional neural network classifier.

    Labels of any type (ints, strings, bools) go through a label encoder; the
    network outputs one logit per class trained with cross-entropy, and
    ``predict_proba`` columns follow ``classes_``.

    Parameters
    ----------
    module : torch module class, default=:class:`~skcgcnn.nn.CGCNN`
    atom_fea_len, n_conv, h_fea_len, n_h, pooling
        As in :class:`CGCNNRegressor`.
    dropout : float, default=0.5
        Dropout before the output layer, as in the original classifier.
    featurizer, random_state, precision, pretrained, optimizer, lr, max_epochs, batch_size, train_split, verbose, device
        As in :class:`CGCNNRegressor`.
    **kwargs
        Any other skorch parameter.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, in the order of ``predict_proba`` columns.
    graph_settings_ : GraphSettings
    elements_ : ndarray of int
        As in :class:`CGCNNRegressor`.
    interrupted_ : bool
        As in :class:`CGCNNRegressor`.

    Examples
    --------
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(40, random_state=0)
    >>> clf = CGCNNClassifier(max_epochs=2, random_state=0).fit(X, y < -5)
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    def __init__(
        self,
        module=CGCNN,
        *,
        atom_fea_len=64,
        n_conv=3,
        h_fea_len=128,
        n_h=1,
        pooling="mean",
        dropout=0.5,
        featurizer=None,
        random_state=None,
        precision="float32",
        pretrained=None,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=1e-3,
        max_epochs=100,
        batch_size=64,
        train_split=None,
        verbose=0,
        device="cpu",
        dataset=CrystalGraphDataset,
        iterator_train__shuffle=True,
        iterator_train__collate_fn=passthrough_collate,
        iterator_valid__collate_fn=passthrough_collate,
        **kwargs,
    ):
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            verbose=verbose,
            device=device,
            dataset=dataset,
            iterator_train__shuffle=iterator_train__shuffle,
            iterator_train__collate_fn=iterator_train__collate_fn,
            iterator_valid__collate_fn=iterator_valid__collate_fn,
            **kwargs,
        )
        self.atom_fea_len = atom_fea_len
        self.n_conv = n_conv
        self.h_fea_len = h_fea_len
        self.n_h = n_h
        self.pooling = pooling
        self.dropout = dropout
        self.featurizer = featurizer
        self.random_state = random_state
        self.precision = precision
        self.pretrained = pretrained

    @property
    def classes_(self) -> np.ndarray:
        return self.label_encoder_.classes_

    def _n_module_outputs(self) -> int:
        return len(self.classes_)

    def _encode_targets(self, y, n: int, first: bool) -> np.ndarray:
        y = self._check_length(y, n)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(f"classification labels must be 1-D, got shape {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y holds NaN or infinite labels")
        if first:
            check_classification_targets(y)  # continuous targets are refused, as by scikit-learn's classifiers
            encoder = LabelEncoder().fit(y)
            if len(encoder.classes_) < 2:
                raise ValueError(f"y holds a single class ({encoder.classes_[0]!r}); a classifier needs two or more")
            self.label_encoder_ = encoder
        else:
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            if len(unseen):
                raise ValueError(f"y holds labels not seen in the first fit: {unseen.tolist()}")
        return self.label_encoder_.transform(y).astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of ``X``; columns follow ``classes_``.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        ndarray of shape (n_crystals, n_classes)
        """
        logits = torch.from_numpy(self._forward_numpy(self._as_graphs(X, fitting=False)))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """Predict class labels of ``X``, in input order.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        ndarray of shape (n_crystals,)
        """
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]
