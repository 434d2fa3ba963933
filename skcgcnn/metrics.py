"""Scores of a fitted model on held-out crystals, next to a baseline that ignores the structures."""

from __future__ import annotations

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score, roc_auc_score

__all__ = ["held_out_scores"]


def held_out_scores(estimator, X, y, y_train=None) -> dict:
    """MAE and R² (regression) or accuracy and ROC-AUC (two classes) of ``estimator`` on ``X``.

    Parameters
    ----------
    estimator : fitted regressor or classifier (or a Pipeline ending in one)
    X : inputs of the estimator
    y : array-like
        True targets or labels of ``X``.
    y_train : array-like, default=None
        The training targets: when given, the score of predicting their
        mean (regression) or their most frequent class (classification) is
        added, so that a score can be read against what no model achieves.

    Returns
    -------
    dict
        ``mae``, ``r2`` (and ``mae_of_the_training_mean``), or ``accuracy``,
        ``roc_auc`` for two classes both present in ``y`` (and
        ``accuracy_of_the_majority_class``); empty when ``y`` is.
    """
    y = np.asarray(y)
    if len(y) == 0:
        return {}
    if is_classifier(estimator):
        proba = estimator.predict_proba(X)
        classes = estimator.classes_
        out = {"accuracy": accuracy_score(y, classes[proba.argmax(axis=1)])}
        if len(classes) == 2 and len(np.unique(y)) == 2:
            out["roc_auc"] = roc_auc_score(y, proba[:, 1], labels=classes)
        if y_train is not None:
            labels, counts = np.unique(y_train, return_counts=True)
            out["accuracy_of_the_majority_class"] = float(np.mean(y == labels[np.argmax(counts)]))
        return out
    pred = estimator.predict(X)
    out = {"mae": mean_absolute_error(y, pred), "r2": r2_score(y, pred)}
    if y_train is not None:
        out["mae_of_the_training_mean"] = mean_absolute_error(y, np.broadcast_to(np.mean(y_train, axis=0), y.shape))
    return out
