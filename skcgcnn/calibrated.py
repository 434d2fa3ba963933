"""Error bars that track the error: an ensemble's spread and its training neighbours, calibrated.

The spread of a deep ensemble alone ranks errors weakly (docs/benchmarks.md);
Tran et al. (Mach. Learn.: Sci. Technol. 1, 025006, 2020) found distances in
CGCNN's own crystal-feature space a better guide. A
:class:`CalibratedEnsembleRegressor` combines six signs of doubt: the
members' spread; the mean distance to the nearest training crystals in the
members' feature space; the spread of those crystals' targets (a crystal
among neighbours whose property varies is hard to place); the distance to
the single nearest training crystal; how far that crystal's known value
lies from the prediction (a near twin with another value warns that the
model is off); and how far the ensemble misses those training crystals
themselves (where it cannot fit what it trained on, it errs on new crystals
too). On validation crystals it fits ``log |error|`` as a linear
function of the signs' logarithms; the fitted scale, read as a standard
deviation (68 % of validation errors within it), is the uncertainty of
every prediction. Split conformal prediction on a separate calibration set
then turns it into intervals with the asked coverage, narrow where the model
is sure and wide where it is not.

The same neighbours correct the prediction. Where the members miss their own
training crystals, they tend to miss new crystals nearby in the same
direction; the prediction adds a share of the neighbours' residuals,
weighted by a Gaussian kernel of the distance, with the share and the
kernel's width chosen on the validation crystals (a share of 0 where it
does not help). The error model and the intervals are fitted to the
corrected prediction.

A :class:`CalibratedEnsembleClassifier` does the same for labels: its
probabilities come with the members' spread, and split conformal prediction
on calibration crystals, band by band of that spread, turns them into
prediction sets (one label where the model is sure, several where it is
not) that hold the true label with the asked probability among sure and
unsure crystals alike.
"""

from __future__ import annotations

from math import ceil

import numpy as np
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import NearestNeighbors

from .ensemble import CGCNNEnsembleClassifier, CGCNNEnsembleRegressor

__all__ = ["CalibratedEnsembleRegressor", "CalibratedEnsembleClassifier"]

# Share of |error| / std within 1 for a normal error: what makes the fitted scale read as a standard deviation.
_ONE_SIGMA = 0.6826894921370859
# The local correction's candidate weights, and kernel widths in units of the validation crystals' median distance
# to their nearest training crystal.
_CORRECTION_WEIGHTS = np.linspace(0.0, 1.5, 31)
_CORRECTION_WIDTHS = np.array([0.5, 1.0, 2.0])
# Calibration crystals a band of the spread holds at least: enough for a 95 % prediction set in every band.
_LEAST_PER_BAND = 20


class CalibratedEnsembleRegressor(CGCNNEnsembleRegressor):
    """A deep ensemble whose standard deviations and intervals are calibrated on held-out crystals.

    Train it as :class:`~skcgcnn.ensemble.CGCNNEnsembleRegressor` (or give
    it members trained apart, as ``estimators_``), then call
    :meth:`calibrate` with crystals the members did not train on.

    Parameters
    ----------
    estimator, n_estimators, bootstrap, n_jobs, random_state, verbose
        As in :class:`~skcgcnn.ensemble.CGCNNEnsembleRegressor`.
    n_neighbors : int, default=10
        Nearest training crystals of an input: their mean distance measures how far it lies from what the
        model saw, the spread of their targets how much its property varies nearby.
    n_components : int, default=16
        Dimensions the feature space is reduced to (principal components of the standardised training
        features) before distances are measured; it keeps the stored training set small.

    Attributes
    ----------
    estimators_ : list of CGCNNRegressor
    reference_ : ndarray of shape (n_train, n_components)
        The training crystals in the reduced feature space.
    reference_targets_ : ndarray of shape (n_train,)
        Their targets.
    reference_residuals_ : ndarray of shape (n_train,)
        ``target - mean prediction`` of each training crystal (its absolute value in files written before the
        local correction).
    correction_ : ndarray of shape (2,)
        Weight and kernel width (in the reduced feature space) of the local correction: the prediction is the
        members' mean plus the weight times the Gaussian-kernel-weighted mean of the nearest training
        crystals' residuals. Both are chosen for the least MAE on the validation crystals; a weight of 0 leaves
        the mean as it is. Absent from files written before the correction, which predict the mean.
    error_model_ : ndarray of shape (7,)
        Intercept and coefficients of the scale ``exp(a + b·log(spread) + c·log(distance) + d·log(neighbour
        spread) + e·log(nearest distance) + f·log(nearest deviation) + g·log(neighbour residual))``, in target
        units. A model read from a file of an earlier version holds fewer and reads only the first signs.
    calibration_scores_ : ndarray
        Sorted ``|error| / std`` of the calibration crystals, from which the interval of any confidence level
        is read.

    Examples
    --------
    >>> from skcgcnn import CGCNNRegressor
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(80, random_state=0)
    >>> model = CalibratedEnsembleRegressor(CGCNNRegressor(max_epochs=3), n_estimators=2, random_state=0,
    ...                                     n_components=4).fit(X[:40], y[:40])
    >>> model = model.calibrate(X[:40], y[:40], X[40:60], y[40:60], X[60:], y[60:])
    >>> pred, interval = model.predict_interval(X[:3], confidence_level=0.8)
    >>> interval.shape, bool((interval[:, 0] < pred).all())
    ((3, 2), True)
    """

    # What calibrating adds to the fitted ensemble (model files store it).
    _calibration_attributes = ("center_", "scale_", "components_", "reference_", "reference_targets_",
                               "reference_residuals_", "correction_", "error_model_", "calibration_scores_")

    def __init__(self, estimator=None, n_estimators: int = 5, bootstrap: bool = False, n_jobs=None,
                 random_state=None, verbose=0, n_neighbors: int = 10, n_components: int = 16):
        super().__init__(estimator=estimator, n_estimators=n_estimators, bootstrap=bootstrap, n_jobs=n_jobs,
                         random_state=random_state, verbose=verbose)
        self.n_neighbors = n_neighbors
        self.n_components = n_components

    def fit(self, X, y):
        """Train the members as :class:`~skcgcnn.ensemble.CGCNNEnsembleRegressor` does.

        A calibration of earlier members does not hold for new ones: it is dropped, and :meth:`calibrate` is
        needed again before ``return_std`` or intervals.

        Returns
        -------
        self
        """
        _drop(self, self._calibration_attributes)
        self._neighbours = None
        return super().fit(X, y)

    def _features(self, graphs) -> np.ndarray:
        """Crystal features averaged over the members."""
        return np.mean([member.transform(graphs) for member in self.estimators_], axis=0)

    def _neighbourhood(self, graphs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The members' predictions and each crystal's nearest training crystals: distances and rows."""
        predictions = np.stack([member.predict(graphs) for member in self.estimators_])
        if predictions.ndim != 2:
            raise ValueError("a calibrated ensemble predicts one target")
        if getattr(self, "_neighbours", None) is None:  # read from a file: the index is derived, not stored
            self._fit_neighbours()
        reduced = ((self._features(graphs) - self.center_) / self.scale_ @ self.components_.T).astype(np.float32)
        distance, nearest = self._neighbours.kneighbors(reduced)
        # A thousandth of a standardised feature's spread is "the same crystal": a floor that keeps log(0) out
        # of the error model.
        return predictions, np.maximum(distance, 1e-3), nearest

    def _doubts(self, predictions, distance, nearest) -> np.ndarray:
        """Per crystal, the logarithms of the signs of doubt."""
        mean = predictions.mean(axis=0)
        doubts = [np.maximum(predictions.std(axis=0), np.finfo(np.float32).tiny), distance.mean(axis=1)]
        # Files of the first calibrated ensembles hold no training targets: their error model has two signs.
        if hasattr(self, "reference_targets_"):
            # A thousandth of the targets' spread is "the same value", on any property's scale.
            least = 1e-3 * max(float(self.reference_targets_.std()), np.finfo(np.float32).tiny)
            targets = self.reference_targets_[nearest]
            doubts += [np.maximum(targets.std(axis=1), least), distance[:, 0],
                       np.maximum(np.abs(targets[:, 0] - mean), least)]
            if hasattr(self, "reference_residuals_"):
                doubts.append(np.maximum(np.abs(self.reference_residuals_[nearest]).mean(axis=1), least))
        return np.log(np.column_stack(doubts))

    def _local_bias(self, distance, nearest, width: float) -> np.ndarray:
        """Kernel-weighted mean of the nearest training crystals' residuals (target minus the members' mean)."""
        kernel = np.exp(-(distance / width) ** 2)
        # Far from every training crystal all weights vanish alike: the plain mean of the neighbours' residuals.
        kernel = np.where(kernel.sum(axis=1, keepdims=True) > 0, kernel, 1.0)
        return (kernel * self.reference_residuals_[nearest]).sum(axis=1) / kernel.sum(axis=1)

    def _corrected(self, predictions, distance, nearest) -> np.ndarray:
        """The members' mean plus the local correction (files written before it: the mean alone)."""
        mean = predictions.mean(axis=0)
        if hasattr(self, "correction_"):
            weight, width = self.correction_
            mean = mean + weight * self._local_bias(distance, nearest, width)
        return mean

    def _predict_with_doubts(self, graphs) -> tuple[np.ndarray, np.ndarray]:
        """The prediction and the logarithms of the signs of doubt of each crystal."""
        near = self._neighbourhood(graphs)
        return self._corrected(*near), self._doubts(*near)

    def _scale(self, doubts) -> np.ndarray:
        """The error model's scale; a model read from an older file reads only the signs it was fitted on."""
        return np.exp(self.error_model_[0] + doubts[:, :len(self.error_model_) - 1] @ self.error_model_[1:])

    def calibrate(self, X_train, y_train, X_val, y_val, X_cal, y_cal):
        """Fit the uncertainty on validation crystals and the intervals on calibration crystals.

        Parameters
        ----------
        X_train : CrystalGraphs or sequence of structures
            The members' training crystals (the reference for distances).
        y_train : array-like of shape (n_train,)
            Their targets (the reference for the neighbours' spread, the nearest one's deviation and how far
            the ensemble misses them).
        X_val, y_val
            Held-out crystals that fit the error model (the members may have used them to pick their epoch).
        X_cal, y_cal
            Crystals used for nothing else: the conformal calibration set.

        Returns
        -------
        self
        """
        if len(getattr(self, "estimators_", [])) < 2:
            raise ValueError("calibration needs a fitted ensemble of two or more members (their spread is a "
                             "feature of the error model)")
        graphs = self.featurize(X_train)
        y_train = np.asarray(y_train, dtype=float)
        if y_train.shape != (len(graphs),):
            raise ValueError(f"y_train holds {y_train.shape} targets for {len(graphs)} training crystals")
        if not np.isfinite(y_train).all():
            raise ValueError("y_train holds NaN or infinite values")
        features = self._features(graphs)
        self.center_ = features.mean(axis=0)
        self.scale_ = np.where(features.std(axis=0) > 0, features.std(axis=0), 1.0)
        standard = (features - self.center_) / self.scale_
        components = min(self.n_components, standard.shape[1], len(standard))
        self.components_ = PCA(n_components=components).fit(standard).components_.astype(np.float32)
        self.reference_ = (standard @ self.components_.T).astype(np.float32)
        self.reference_targets_ = y_train.astype(np.float32)
        fitted = np.mean([member.predict(graphs) for member in self.estimators_], axis=0)
        self.reference_residuals_ = (y_train - fitted).astype(np.float32)
        self._fit_neighbours()
        y_val = np.asarray(y_val, dtype=float)
        near = self._neighbourhood(self.featurize(X_val))
        self.correction_ = self._fit_correction(*near, y_val)
        mean, doubts = self._corrected(*near), self._doubts(*near)
        error = np.abs(mean - y_val)
        fit = LinearRegression().fit(doubts, np.log(np.maximum(error, 1e-3 * error.mean())))
        self.error_model_ = np.array([fit.intercept_, *fit.coef_])
        self.error_model_[0] += np.log(np.quantile(error / self._scale(doubts), _ONE_SIGMA))
        mean, doubts = self._predict_with_doubts(self.featurize(X_cal))
        y_cal = np.asarray(y_cal, dtype=float)
        if not np.isfinite(y_cal).all():
            raise ValueError("y_cal holds NaN or infinite values")
        self.calibration_scores_ = np.sort(np.abs(mean - y_cal) / self._scale(doubts))
        return self

    def _fit_correction(self, predictions, distance, nearest, y_val) -> np.ndarray:
        """The weight and kernel width of the local correction with the least validation MAE (weight 0: none)."""
        mean = predictions.mean(axis=0)
        typical = float(np.median(distance[:, 0]))
        best = (float(np.mean(np.abs(mean - y_val))), 0.0, typical)
        for width in _CORRECTION_WIDTHS * typical:
            bias = self._local_bias(distance, nearest, width)
            for weight in _CORRECTION_WEIGHTS[1:]:
                best = min(best, (float(np.mean(np.abs(mean + weight * bias - y_val))), weight, width))
        return np.array(best[1:])

    def _fit_neighbours(self) -> None:
        """Rebuild what is derived from the stored state (after calibrate, or when read from a file)."""
        self._neighbours = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(self.reference_)))
        self._neighbours.fit(self.reference_)

    def predict(self, X, return_std: bool = False):
        """The members' mean prediction with its local correction and, if asked, its calibrated standard deviation.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
        return_std : bool, default=False

        Returns
        -------
        mean : ndarray of shape (n_crystals,)
        std : ndarray of shape (n_crystals,)
            Only with ``return_std``: the scale within which about 68 % of the validation errors fell,
            larger for inputs the members disagree on, that lie far from the training crystals, whose
            training neighbours' targets vary, or whose nearest training crystal's value differs from the
            prediction.
        """
        if not hasattr(self, "correction_"):  # not calibrated yet, or read from a file written before the correction
            if not return_std:
                return super().predict(X)
            _check_calibrated(self)
        graphs = self.featurize(X)
        if not return_std:
            return self._corrected(*self._neighbourhood(graphs))
        mean, doubts = self._predict_with_doubts(graphs)
        return mean, self._scale(doubts)

    def predict_interval(self, X, confidence_level: float = 0.9):
        """Predictions and split conformal intervals that hold the truth with the asked probability.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
        confidence_level : float, default=0.9

        Returns
        -------
        pred : ndarray of shape (n_crystals,)
        interval : ndarray of shape (n_crystals, 2)
        """
        half = self.interval_half_width(confidence_level)
        pred, std = self.predict(X, return_std=True)
        return pred, np.stack([pred - half * std, pred + half * std], axis=-1)

    def interval_half_width(self, confidence_level: float) -> float:
        """Half-width of the interval at ``confidence_level``, in standard deviations (the conformal quantile)."""
        _check_calibrated(self)
        return _conformal_quantile(self.calibration_scores_, confidence_level)


def _drop(model, names) -> None:
    for name in names:
        model.__dict__.pop(name, None)


def _check_calibrated(model) -> None:
    if not hasattr(model, "calibration_scores_"):
        raise NotFittedError(f"This {type(model).__name__} is not calibrated yet; call calibrate first.")


def _conformal_quantile(scores: np.ndarray, confidence_level: float) -> float:
    """The split conformal quantile of sorted calibration scores: the ceil((n + 1) level)-th smallest."""
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    n = len(scores)
    rank = ceil((n + 1) * confidence_level)
    if rank > n:
        raise ValueError(f"{n} calibration crystals are too few for confidence_level={confidence_level}")
    return float(scores[rank - 1])


class CalibratedEnsembleClassifier(CGCNNEnsembleClassifier):
    """A deep ensemble of classifiers with the members' spread and conformal prediction sets.

    Made as :class:`CalibratedEnsembleRegressor` is; :meth:`calibrate` needs
    only the calibration crystals. The calibration crystals are split into
    bands of the members' spread, each with its own threshold (Mondrian
    conformal prediction): where the members disagree, a second label joins
    the set more readily, so that the sets hold the true label with the asked
    probability in each band and not only on average. The most probable
    label is always in the set: a set is never empty.

    Parameters
    ----------
    estimator, n_estimators, bootstrap, n_jobs, random_state, verbose
        As in :class:`~skcgcnn.ensemble.CGCNNEnsembleClassifier`.
    n_bands : int, default=5
        Bands of the spread of the most probable label's probability, equal shares of the calibration
        crystals. Fewer are made where there are fewer than 20 calibration crystals per band (enough for
        95 % sets); a level of 99 % needs 99 per band. One band gives the same threshold to every crystal.

    Attributes
    ----------
    estimators_ : list of CGCNNClassifier
    classes_ : ndarray
    calibration_scores_ : ndarray
        Sorted ``1 - p(true label)`` of the calibration crystals, from which the set of any confidence level
        follows.
    calibration_bands_ : ndarray of int
        The band of the spread each of ``calibration_scores_`` belongs to.
    band_edges_ : ndarray
        Spreads that separate the bands (fewer than ``n_bands - 1`` where calibration spreads tie).

    Examples
    --------
    >>> from skcgcnn import CGCNNClassifier
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(80, random_state=0)
    >>> model = CalibratedEnsembleClassifier(CGCNNClassifier(max_epochs=3), n_estimators=2,
    ...                                      random_state=0).fit(X[:50], y[:50] < -5)
    >>> labels, sets = model.calibrate(X[50:], y[50:] < -5).predict_set(X[:3], confidence_level=0.8)
    >>> sets.shape, bool(sets[np.arange(3), np.searchsorted(model.classes_, labels)].all())
    ((3, 2), True)
    """

    # What calibrating adds to the fitted ensemble (model files store it).
    _calibration_attributes = ("calibration_scores_", "calibration_bands_", "band_edges_")

    def __init__(self, estimator=None, n_estimators: int = 5, bootstrap: bool = False, n_jobs=None,
                 random_state=None, verbose=0, n_bands: int = 5):
        super().__init__(estimator=estimator, n_estimators=n_estimators, bootstrap=bootstrap, n_jobs=n_jobs,
                         random_state=random_state, verbose=verbose)
        self.n_bands = n_bands

    def fit(self, X, y):
        """Train the members as :class:`~skcgcnn.ensemble.CGCNNEnsembleClassifier` does.

        A calibration of earlier members does not hold for new ones: it is dropped, and :meth:`calibrate` is
        needed again before prediction sets.

        Returns
        -------
        self
        """
        _drop(self, self._calibration_attributes)
        return super().fit(X, y)

    def calibrate(self, X_cal, y_cal):
        """Calibrate the prediction sets on crystals used for nothing else.

        Parameters
        ----------
        X_cal : CrystalGraphs or sequence of structures
        y_cal : array-like of shape (n_crystals,)

        Returns
        -------
        self
        """
        if not isinstance(self.n_bands, (int, np.integer)) or self.n_bands < 1:
            raise ValueError(f"n_bands must be a positive integer, got {self.n_bands!r}")
        y_cal = np.asarray(y_cal)
        unknown = ~np.isin(y_cal, self.classes_)
        if unknown.any():
            raise ValueError(f"y_cal holds labels the ensemble was not trained on: {sorted(set(y_cal[unknown]))}")
        proba, std = self.predict_proba(X_cal, return_std=True)
        if len(y_cal) != len(proba):
            raise ValueError(f"y_cal holds {len(y_cal)} labels for {len(proba)} calibration crystals")
        spread = _top_spread(proba, std)
        bands = max(1, min(self.n_bands, len(y_cal) // _LEAST_PER_BAND))
        self.band_edges_ = np.unique(np.quantile(spread, np.arange(1, bands) / bands))
        truth = proba[np.arange(len(y_cal)), np.searchsorted(self.classes_, y_cal)]
        order = np.argsort(1.0 - truth, kind="stable")
        self.calibration_scores_ = (1.0 - truth)[order]
        self.calibration_bands_ = self._band(spread)[order]
        return self

    def _band(self, spread) -> np.ndarray:
        # Files written before the bands hold one threshold for all.
        return np.searchsorted(getattr(self, "band_edges_", np.empty(0)), spread, side="right")

    def predict_proba(self, X, return_std: bool = False):
        """Class probabilities averaged over the members and, if asked, their standard deviation across members.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
        return_std : bool, default=False

        Returns
        -------
        proba : ndarray of shape (n_crystals, n_classes)
        std : ndarray of shape (n_crystals, n_classes)
            Only with ``return_std``.
        """
        graphs = self.featurize(X)
        each = np.zeros((len(self.estimators_), len(graphs), len(self.classes_)))
        for k, member in enumerate(self.estimators_):
            each[k][:, np.searchsorted(self.classes_, member.classes_)] = member.predict_proba(graphs)
        return (each.mean(axis=0), each.std(axis=0)) if return_std else each.mean(axis=0)

    def set_threshold(self, confidence_level: float) -> np.ndarray:
        """The probability a label needs to enter the set at ``confidence_level``, per band of the spread.

        Parameters
        ----------
        confidence_level : float

        Returns
        -------
        thresholds : ndarray
            One per band (``len(band_edges_) + 1``): one minus the conformal quantile of the band's calibration
            scores, from the least spread band up.
        """
        _check_calibrated(self)
        bands = getattr(self, "calibration_bands_", np.zeros(len(self.calibration_scores_), dtype=int))
        thresholds = []
        for band in range(len(getattr(self, "band_edges_", ())) + 1):
            scores = self.calibration_scores_[bands == band]
            try:
                thresholds.append(1.0 - _conformal_quantile(scores, confidence_level))
            except ValueError as error:
                if not 0 < confidence_level < 1:
                    raise
                raise ValueError(f"band {band} of the spread holds {len(scores)} calibration crystals, too few for "
                                 f"confidence_level={confidence_level}: calibrate on more crystals or with fewer "
                                 "n_bands") from error
        return np.array(thresholds)

    def prediction_sets(self, proba, std, confidence_level: float = 0.9) -> np.ndarray:
        """The conformal sets of probabilities already predicted (``predict_proba(X, return_std=True)``).

        Parameters
        ----------
        proba, std : ndarray of shape (n_crystals, n_classes)
        confidence_level : float, default=0.9

        Returns
        -------
        sets : ndarray of bool, shape (n_crystals, n_classes)
            Which of ``classes_`` each set holds: the most probable label, and every other whose probability
            reaches the threshold of the crystal's band of spread.
        """
        thresholds = self.set_threshold(confidence_level)
        proba = np.asarray(proba)
        sets = proba >= thresholds[self._band(_top_spread(proba, np.asarray(std)))][:, None]
        sets[np.arange(len(proba)), proba.argmax(axis=1)] = True
        return sets

    def predict_set(self, X, confidence_level: float = 0.9):
        """Most probable labels and conformal prediction sets that hold the true label with the asked probability.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
        confidence_level : float, default=0.9

        Returns
        -------
        labels : ndarray of shape (n_crystals,)
        sets : ndarray of bool, shape (n_crystals, n_classes)
            Which of ``classes_`` each set holds (see :meth:`prediction_sets`).
        """
        self.set_threshold(confidence_level)  # a level the calibration cannot give fails before predicting
        proba, std = self.predict_proba(X, return_std=True)
        return self.classes_[proba.argmax(axis=1)], self.prediction_sets(proba, std, confidence_level)


def _top_spread(proba: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The members' spread of each crystal's most probable label: what sorts crystals into bands."""
    return std[np.arange(len(proba)), proba.argmax(axis=1)]
