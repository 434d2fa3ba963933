"""scikit-learn estimators around the CGCNN model, built on skorch: what the regressor and the classifier do apart.

Everything they share is :class:`skcgcnn._net.CGCNNMixin`.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from skorch import NeuralNetClassifier, NeuralNetRegressor

from ._net import CGCNNMixin, with_defaults
from ._params import OPTIMIZERS, check_device
from .interpret import site_contributions

__all__ = ["CGCNNRegressor", "CGCNNClassifier", "OPTIMIZERS", "check_device"]


class CGCNNRegressor(CGCNNMixin, NeuralNetRegressor):
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
        :data:`skcgcnn.registry.MODELS`) or of an original-format
        checkpoint instead of a random initialisation (fine-tuning). The
        architecture parameters and the atom features must match it:
        :meth:`from_pretrained` sets them. The output layer is kept when it
        fits the new task and drawn afresh otherwise. Freeze layers with
        skorch's ``Freezer`` callback, e.g.
        ``callbacks=[Freezer(["embedding.*", "convs.*"])]``.
    target_name, target_unit : str, default=None
        What ``y`` is and its unit (``"band_gap"``, ``"eV"``). They change
        no number: model files keep them, and ``skcgcnn predict`` names its
        prediction column after them (``band_gap (eV)``).
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
        out = self._forward_numpy(self.featurize(X)) * self.y_scale_ + self.y_mean_
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


class CGCNNClassifier(CGCNNMixin, NeuralNetClassifier):
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
    featurizer, random_state, precision, pretrained, target_name, target_unit
        As in :class:`CGCNNRegressor`.
    optimizer, lr, max_epochs, batch_size, train_split, verbose, device
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

    __init__ = with_defaults(CGCNNMixin.__init__, criterion=torch.nn.CrossEntropyLoss, dropout=0.5)

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
        logits = torch.from_numpy(self._forward_numpy(self.featurize(X)))
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
