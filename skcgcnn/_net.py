"""What the CGCNN regressor and classifier share: the skorch machinery, written once.

Parameter constraints, seeding, interrupts, device-resident data, the
optimizer aliases, pretrained starts, unseen elements, one way to turn
inputs into graphs and the restoring of a fitted state from a file live
here; :mod:`skcgcnn.estimators` declares only what differs between the two.
"""

from __future__ import annotations

import types
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import validate_parameter_constraints
from skorch.callbacks import EarlyStopping, LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from .batching import CrystalGraphDataset, passthrough_collate
from .callbacks import StopTraining
from .finetuning import start_from, training_params
from .graphs import CrystalGraphs, CrystalGraphTransformer
from .nn import CGCNN
from ._params import OPTIMIZERS, check_device, parameter_constraints
from ._predicting import PredictingMixin
from .warn import warn


def with_defaults(init, **defaults):
    """A copy of ``init`` whose keyword defaults differ as given.

    scikit-learn reads an estimator's parameters and their defaults from the
    signature of its ``__init__``; the classifier's differ from the
    regressor's in two defaults only, so both share one body.
    """
    copy = types.FunctionType(init.__code__, init.__globals__, init.__name__, init.__defaults__, init.__closure__)
    copy.__kwdefaults__ = {**init.__kwdefaults__, **defaults}
    copy.__doc__, copy.__qualname__ = init.__doc__, init.__qualname__
    return copy


class CGCNNMixin(PredictingMixin):
    """Behaviour shared by the regressor and the classifier (first in the MRO)."""

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
        target_name=None,
        target_unit=None,
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
        self.target_name = target_name
        self.target_unit = target_unit

    def _check_params(self, fit_params: dict) -> None:
        constraints = parameter_constraints()
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
        if not fitting:
            return self.featurize(X)
        graphs = X if isinstance(X, CrystalGraphs) else self._featurizer_for_training().transform(X)
        self.graph_settings_ = graphs.settings
        self.elements_ = np.unique(graphs.atomic_numbers).astype(np.int64)
        return graphs

    def _check_length(self, y, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs targets y")
        y = np.asarray(y)
        if y.ndim == 0 or len(y) != n:
            raise ValueError(f"X holds {n} crystals but y holds {0 if y.ndim == 0 else len(y)} targets")
        return y

    # ----- skorch hooks ----------------------------------------------------
    def _module_kwargs(self) -> dict:
        if not hasattr(self, "graph_settings_"):
            raise NotFittedError("the module is built from the training graphs; call fit instead of initialize")
        s = self.graph_settings_
        return {
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

    def initialize_module(self):
        self.module_ = self.initialized_instance(self.module, self._module_kwargs())
        if self.pretrained is not None:
            start_from(self.module_, self.pretrained, self.graph_settings_.atom_features,
                       "classification" if is_classifier(self) else "regression", type(self).__name__)
        return self

    def weight_shapes(self) -> dict[str, tuple]:
        """The shapes of the weights and buffers the parameters and graph settings build, found without memory.

        Returns
        -------
        dict
            ``state_dict`` key to shape.
        """
        with torch.device("meta"):
            module = self.module(**self._module_kwargs())
        return {k: tuple(v.shape) for k, v in module.state_dict().items()}

    @classmethod
    def from_pretrained(cls, name_or_path, **params):
        """An unfitted estimator whose training starts from a released model or an original-format checkpoint.

        Parameters
        ----------
        name_or_path : str or path-like
            A released model (a key of :data:`skcgcnn.registry.RELEASED`, whose first member it starts from, or of
            :data:`skcgcnn.registry.MODELS`) or a ``.pth.tar`` file.
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
        >>> from skcgcnn import CGCNNRegressor
        >>> from skcgcnn.datasets import make_ionic_crystals
        >>> X, y = make_ionic_crystals(30, random_state=0)
        >>> reg = CGCNNRegressor.from_pretrained("formation-energy-per-atom", max_epochs=2, lr=1e-4).fit(X, y)
        >>> reg.n_conv, reg.h_fea_len
        (4, 32)
        """
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
        # torch.manual_seed seeds every CUDA device as well: their states are restored too.
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
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
