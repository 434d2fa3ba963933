"""How far to trust a prediction: conformal intervals with guaranteed coverage, and calibration of a spread.

Split conformal prediction (Vovk et al.; Lei et al., JASA 113, 1094, 2018)
turns any fitted regressor and a calibration set it did not train on into
intervals that hold the truth with at least the asked probability on new
data from the same distribution, whatever the model. Scaled by an
ensemble's standard deviation, the intervals widen where the members
disagree. MAPIE's ``SplitConformalRegressor`` accepts skcgcnn's inputs and
gives the unscaled intervals as well; its normalised score fits a separate
model of the residuals instead of reading the ensemble's spread, hence this
module.
"""

from __future__ import annotations

from math import ceil

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator

__all__ = ["ConformalRegressor", "calibration_curve", "miscalibration_area"]


class ConformalRegressor(BaseEstimator):
    """Split conformal prediction intervals around a fitted regressor.

    Parameters
    ----------
    estimator : fitted regressor
        Its ``predict`` gives the centre; with ``scaled=True`` it must
        answer ``predict(X, return_std=True)``, e.g.
        :class:`~skcgcnn.ensemble.CGCNNEnsembleRegressor`.
    confidence_level : float, default=0.9
        Probability that an interval holds the true value.
    scaled : bool, default=False
        Intervals of half-width ``q * std`` (wider where the ensemble
        disagrees) instead of a constant ``q``. A standard deviation of 0
        (an ensemble of one member) is refused: it would give intervals of
        zero width.

    Attributes
    ----------
    quantile_ : float
        ``q``: the conformal quantile of the calibration scores, in target
        units (or in standard deviations when scaled).
    n_calibration_ : int

    Examples
    --------
    >>> from sklearn.dummy import DummyRegressor
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = np.zeros((400, 1)), rng.normal(size=400)
    >>> conformal = ConformalRegressor(DummyRegressor().fit(X, y)).conformalize(X[:200], y[:200])
    >>> pred, interval = conformal.predict_interval(X[200:])
    >>> bool(np.mean((interval[:, 0] <= y[200:]) & (y[200:] <= interval[:, 1])) >= 0.85)
    True
    """

    def __init__(self, estimator, confidence_level: float = 0.9, scaled: bool = False):
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.scaled = scaled

    def _centre_and_scale(self, X):
        if not self.scaled:
            pred = self.estimator.predict(X)
            return pred, np.ones_like(pred)
        pred, std = self.estimator.predict(X, return_std=True)
        flat = np.count_nonzero(~(np.asarray(std) > 0))
        if flat:
            # A zero spread would give an interval of zero width: no coverage where it is, whatever q is.
            raise ValueError(f"scaled intervals need a spread, but the standard deviation is not positive for {flat} "
                             f"of {np.size(std)} inputs (an ensemble of one member?); use scaled=False")
        return pred, std

    def conformalize(self, X, y):
        """Compute the quantile from a calibration set the estimator did not train on.

        Parameters
        ----------
        X : inputs of the estimator
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence_level must lie in (0, 1), got {self.confidence_level}")
        pred, scale = self._centre_and_scale(X)
        y = np.asarray(y, dtype=float)
        if not np.isfinite(y).all():
            # A NaN score sorts last and an infinite one inflates the quantile: either would pass silently.
            raise ValueError(f"y holds {np.count_nonzero(~np.isfinite(y))} NaN or infinite values; calibrate on "
                             "crystals with known targets")
        if y.shape != np.shape(pred):
            raise ValueError(f"y has shape {y.shape}, the predictions {np.shape(pred)}")
        scores = np.abs(y - pred) / scale
        n = len(scores)
        rank = ceil((n + 1) * self.confidence_level)
        if rank > n:
            raise ValueError(f"{n} calibration crystals are too few for confidence_level={self.confidence_level}; "
                             f"at least {ceil(self.confidence_level / (1 - self.confidence_level))} are needed")
        self.quantile_ = float(np.sort(scores)[rank - 1])
        self.n_calibration_ = n
        return self

    def predict_interval(self, X):
        """Predictions and their intervals.

        Parameters
        ----------
        X : inputs of the estimator

        Returns
        -------
        pred : ndarray of shape (n_samples,)
        interval : ndarray of shape (n_samples, 2)
            Lower and upper bounds.
        """
        pred, scale = self._centre_and_scale(X)
        half = self.quantile_ * scale
        return pred, np.stack([pred - half, pred + half], axis=-1)


def calibration_curve(y_true, y_pred, y_std, levels=None):
    """Observed against expected coverage of the central Gaussian intervals ``y_pred ± z·y_std``.

    Parameters
    ----------
    y_true, y_pred, y_std : array-like of shape (n_samples,)
    levels : array-like, default=None
        Expected coverages; by default 0, 0.01, ..., 1.

    Returns
    -------
    expected, observed : ndarray
        A calibrated spread gives ``observed == expected``; above the
        diagonal it is too wide, below it too narrow (overconfident).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=20000)
    >>> expected, observed = calibration_curve(y, np.zeros_like(y), np.ones_like(y), levels=[0.5, 0.9])
    >>> np.round(observed, 2).tolist()
    [0.5, 0.9]
    """
    y_true, y_pred, y_std = (np.ravel(np.asarray(a, dtype=float)) for a in (y_true, y_pred, y_std))
    expected = np.linspace(0, 1, 101) if levels is None else np.asarray(levels, dtype=float)
    z = np.abs(y_true - y_pred) / np.maximum(y_std, np.finfo(float).tiny)
    observed = np.array([np.mean(z <= norm.ppf(0.5 + p / 2)) for p in expected])
    return expected, observed


def miscalibration_area(y_true, y_pred, y_std) -> float:
    """Area between the calibration curve and the diagonal (0 is perfect; 0.5 is the worst).

    Parameters
    ----------
    y_true, y_pred, y_std : array-like of shape (n_samples,)

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).normal(size=20000)
    >>> round(miscalibration_area(y, np.zeros_like(y), np.ones_like(y)), 2)
    0.0
    >>> round(miscalibration_area(y, np.zeros_like(y), 0.1 * np.ones_like(y)), 2)  # overconfident
    0.44
    """
    expected, observed = calibration_curve(y_true, y_pred, y_std)
    gap = np.abs(observed - expected)
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(expected)))
