"""skorch callbacks for CGCNN estimators."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from sklearn.base import is_classifier
from sklearn.metrics import check_scoring
from skorch.callbacks import Callback

__all__ = ["HeldOutScore", "TimeBudget", "StopTraining", "SignalGuard", "WeightAveraging"]


class StopTraining(KeyboardInterrupt):
    """Raised by a callback to end training on purpose; skorch ends it as on an interrupt.

    Estimators tell it from a real interrupt (Ctrl-C), which they record in
    ``interrupted_``.
    """


class HeldOutScore(Callback):
    """Score a held-out set after every epoch and keep the best epoch's weights.

    The score is computed in the targets' own units (after de-standardising),
    recorded in the history under ``name`` and, with ``restore_best``, the
    network ends training with the weights of its best-scoring epoch: model
    selection on a validation set, as in the paper's protocol.

    Parameters
    ----------
    X : CrystalGraphs or sequence of structures
        The held-out inputs (structures are featurized once, when training
        starts, with the network's graph settings).
    y : array-like
        Their targets or labels.
    scoring : str or callable, default=None
        A scikit-learn scorer (greater is better); by default
        ``"neg_mean_absolute_error"`` for regressors, ``"neg_log_loss"`` for
        classifiers.
    name : str, default="held_out_score"
        History key of the score.
    restore_best : bool, default=True
        Load the weights of the best epoch when training ends.

    Attributes
    ----------
    best_score_ : float
    best_epoch_ : int

    Examples
    --------
    >>> from skcgcnn import CGCNNRegressor
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(50, random_state=0)
    >>> held_out = HeldOutScore(X[40:], y[40:])
    >>> reg = CGCNNRegressor(max_epochs=3, callbacks=[held_out]).fit(X[:40], y[:40])
    >>> len(reg.history[:, "held_out_score"])
    3
    """

    def __init__(self, X, y, scoring=None, name: str = "held_out_score", restore_best: bool = True):
        self.X = X
        self.y = y
        self.scoring = scoring
        self.name = name
        self.restore_best = restore_best

    def on_train_begin(self, net, **kwargs):
        self.X_ = net.featurize(self.X)
        self.y_ = np.asarray(self.y)
        if len(self.y_) != len(self.X_):
            raise ValueError(f"HeldOutScore holds {len(self.X_)} crystals but {len(self.y_)} targets")
        default = "neg_log_loss" if is_classifier(net) else "neg_mean_absolute_error"
        self.scorer_ = check_scoring(net, self.scoring or default)
        self.best_score_, self.best_epoch_, self.best_state_ = -np.inf, None, None
        # Training that continues (partial_fit, a resumed checkpoint) competes with the epochs before it.
        scores = [epoch.get(self.name, -np.inf) for epoch in net.history]
        if scores and max(scores) > -np.inf:
            self.best_epoch_ = int(np.argmax(scores)) + 1
            self.best_score_ = float(scores[self.best_epoch_ - 1])
            if self.restore_best:
                self.best_state_ = copy.deepcopy(net.module_.state_dict())

    def on_epoch_end(self, net, **kwargs):
        score = float(self.scorer_(net, self.X_, self.y_))
        is_best = score > self.best_score_
        if is_best:
            self.best_score_, self.best_epoch_ = score, len(net.history)
            if self.restore_best:
                self.best_state_ = copy.deepcopy(net.module_.state_dict())
        net.history.record(self.name, score)
        net.history.record(self.name + "_best", is_best)

    def on_train_end(self, net, **kwargs):
        if self.restore_best and self.best_state_ is not None:
            net.module_.load_state_dict(self.best_state_)
        self.X_ = self.best_state_ = None


class TimeBudget(Callback):
    """Stop training after the epoch that exhausts a wall-clock budget.

    Training ends the way skorch ends it on an interrupt: ``on_train_end``
    callbacks still run (so :class:`HeldOutScore` restores the best epoch) and
    the network stays usable.

    Parameters
    ----------
    minutes : float
        Budget of one ``fit`` or ``partial_fit`` call.

    Examples
    --------
    >>> from skcgcnn import CGCNNRegressor
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(30, random_state=0)
    >>> reg = CGCNNRegressor(max_epochs=50, callbacks=[TimeBudget(0.0)]).fit(X, y)
    >>> len(reg.history)
    1
    """

    def __init__(self, minutes: float):
        self.minutes = minutes

    def on_train_begin(self, net, **kwargs):
        self.start_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        if time.perf_counter() - self.start_ >= 60 * self.minutes:
            raise StopTraining


class SignalGuard(Callback):
    """End training at the next batch once a signal has been recorded, even if its interrupt was lost.

    :func:`skcgcnn.runs.stop_on_signals` turns Ctrl-C and SIGTERM into
    ``KeyboardInterrupt``, raised wherever the main thread happens to be; when
    that is inside a finalizer (``__del__``), Python prints the exception and
    drops it, and training would go on to its last epoch. The record of
    signals is not lost, so this callback reads it after every batch and
    raises the interrupt again.

    Parameters
    ----------
    received : list of int
        The signals recorded so far: the list that
        :func:`skcgcnn.runs.stop_on_signals` yields, shared rather than copied.
    """

    def __init__(self, received: list[int]):
        self.received = received

    def on_batch_end(self, net, **kwargs):
        if self.received:
            raise KeyboardInterrupt


class WeightAveraging(Callback):
    """Average the weights of the last epochs and end training with the average.

    Stochastic weight averaging (Izmailov et al., UAI 2018) on the run's own
    schedule: from the epoch that passes ``start`` of ``max_epochs`` on, the
    weights after each epoch are added to a running mean; when training
    ends, the network takes the mean, and one pass over the training
    crystals in training mode refreshes its batch-normalisation statistics
    for the averaged weights. Use it without
    :class:`HeldOutScore`'s ``restore_best``, which would replace the average
    by one epoch's weights.

    Parameters
    ----------
    start : float, default=0.75
        Share of ``max_epochs`` after which epochs are averaged.

    Attributes
    ----------
    n_averaged_ : int
        Epochs in the mean.

    Examples
    --------
    >>> from skcgcnn import CGCNNRegressor
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(40, random_state=0)
    >>> averaging = WeightAveraging(start=0.5)
    >>> reg = CGCNNRegressor(max_epochs=4, callbacks=[averaging]).fit(X, y)
    >>> averaging.n_averaged_
    2
    """

    def __init__(self, start: float = 0.75):
        self.start = start

    def on_train_begin(self, net, **kwargs):
        if not 0 <= self.start < 1:
            raise ValueError(f"start must lie in [0, 1), got {self.start}")
        self.average_, self.n_averaged_ = None, 0

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) <= self.start * net.max_epochs:
            return
        if self.average_ is None:
            self.average_ = AveragedModel(net.module_)
        self.average_.update_parameters(net.module_)
        self.n_averaged_ = int(self.average_.n_averaged)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if self.average_ is None:
            return
        with torch.no_grad():
            for mine, averaged in zip(net.module_.parameters(), self.average_.module.parameters()):
                mine.copy_(averaged)
            # Running batch-norm statistics of the averaged weights. skorch enables gradients in training mode,
            # so each batch's output is dropped as it comes: collecting them all kept every batch's graph
            # (23 GB on the formation-energy training set).
            for _ in net.forward_iter(X, training=True):
                pass
        net.module_.eval()
        self.average_ = None
