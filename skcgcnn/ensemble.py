"""Deep ensembles of CGCNN models: one estimator, several networks, a prediction with its spread.

Members differ by the seed of their initialisation and shuffling (and, with
``bootstrap=True``, by a resample of the training data). The spread of their
predictions is a cheap estimate of the error: it ranks crystals by how far
to trust them, but read as a Gaussian error bar it is usually too narrow
(measured in docs/benchmarks.md), which is why
:class:`skcgcnn.uncertainty.ConformalRegressor` calibrates it.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_parameter_constraints
from tqdm.auto import tqdm

from ._jobs import capped_jobs
from .estimators import CGCNNClassifier, CGCNNRegressor
from .graphs import CrystalGraphs, CrystalGraphTransformer
from .warn import warn

__all__ = ["CGCNNEnsembleRegressor", "CGCNNEnsembleClassifier"]


def _fit_member(position: int, member, graphs: CrystalGraphs, y):
    return position, member.fit(graphs, y)


class _EnsembleMixin:
    """Featurize once, train the members in parallel (CPU) or one after another (GPU), featurize once to predict."""

    _member_class: type

    def __init__(self, estimator=None, n_estimators: int = 5, bootstrap: bool = False, n_jobs=None,
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = self.random_state is None
        return tags

    def _base(self):
        base = self._member_class() if self.estimator is None else self.estimator
        if not isinstance(base, self._member_class):
            raise TypeError(f"estimator must be a {self._member_class.__name__} or None, got {type(base).__name__}")
        return base

    def fit(self, X, y):
        """Train ``n_estimators`` members on the same crystal graphs.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
            Structures are featurized once, with the members' ``featurizer``.
        y : array-like
            Targets or labels.

        Returns
        -------
        self

        Notes
        -----
        An interrupt (Ctrl-C) ends the training of the whole ensemble, not
        of one member. The members trained so far are kept: trained one
        after another, the interrupted one too, partly trained; trained in
        parallel, those that had finished. ``interrupted_`` is then True
        and a warning says how many members there are. If none is left, the
        interrupt is raised.
        """
        constraints = {"n_estimators": [Interval(Integral, 1, None, closed="left")], "bootstrap": ["boolean"],
                       "n_jobs": [Integral, None], "random_state": ["random_state"], "verbose": ["verbose"]}
        validate_parameter_constraints(constraints, {k: getattr(self, k) for k in constraints}, type(self).__name__)
        base = self._base()
        if isinstance(X, CrystalGraphs):
            graphs = X
        else:
            featurizer = clone(base.featurizer) if base.featurizer is not None else CrystalGraphTransformer()
            graphs = featurizer.set_params(verbose=featurizer.verbose or self.verbose).transform(X)
        y = np.asarray(y)
        if len(y) != len(graphs):
            raise ValueError(f"X holds {len(graphs)} crystals but y holds {len(y)} targets")
        rng = check_random_state(self.random_state)
        seeds = rng.randint(2**31 - 1, size=self.n_estimators)
        rows = [rng.randint(len(y), size=len(y)) if self.bootstrap else np.arange(len(y)) for _ in seeds]
        # One GPU serves one member at a time; on CPU the members train in parallel processes.
        n_jobs = 1 if str(base.device).startswith("cuda") else self.n_jobs
        tasks = (delayed(_fit_member)(position, clone(base).set_params(random_state=int(seed)), graphs[idx], y[idx])
                 for position, (seed, idx) in enumerate(zip(seeds, rows)))
        # Members come back as they finish, so that an interrupt keeps those already trained.
        outputs = Parallel(n_jobs=capped_jobs(n_jobs), return_as="generator_unordered")(tasks)
        trained = {}
        progress = tqdm(total=self.n_estimators, desc="ensemble members", unit="member", disable=not self.verbose)
        try:
            for position, member in outputs:
                trained[position] = member
                progress.update()
                if member.interrupted_:
                    break
        except KeyboardInterrupt:
            if not trained:
                raise
            self.interrupted_ = True
        else:
            self.interrupted_ = any(member.interrupted_ for member in trained.values())
        finally:
            progress.close()
            with warnings.catch_warnings():
                # joblib's advice on members cancelled by the interrupt; the warning below says what happened
                warnings.filterwarnings("ignore", ".*adjusting the input task iterator", UserWarning)
                outputs.close()
        self.estimators_ = [trained[position] for position in sorted(trained)]
        self.graph_settings_ = self.estimators_[0].graph_settings_
        if self.interrupted_:
            partial = sum(member.interrupted_ for member in self.estimators_)
            warn(f"training was interrupted: the ensemble holds {len(self.estimators_)} of its {self.n_estimators} "
                 f"members ({partial} of them partly trained; interrupted_ is True); fit again for the full ensemble")
        return self

    def featurize(self, X) -> CrystalGraphs:
        """Crystal graphs of ``X`` as the members read them (see :meth:`CGCNNRegressor.featurize`).

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        CrystalGraphs
        """
        if not hasattr(self, "estimators_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first.")
        return self.estimators_[0].featurize(X)

    def unseen_elements(self, X) -> list[list[str]]:
        """Per input, the elements absent from the training data (see :meth:`CGCNNRegressor.unseen_elements`)."""
        return self.estimators_[0].unseen_elements(X)


class CGCNNEnsembleRegressor(_EnsembleMixin, RegressorMixin, BaseEstimator):
    """Several CGCNN regressors trained from different seeds; predictions with a standard deviation.

    Parameters
    ----------
    estimator : CGCNNRegressor, default=None
        The member template (``CGCNNRegressor()`` when None); its
        ``random_state`` is replaced by one drawn per member.
    n_estimators : int, default=5
        Number of members.
    bootstrap : bool, default=False
        Train each member on a resample (with replacement) of the data
        instead of all of it.
    n_jobs : int, default=None
        Members trained at once on CPU (joblib processes, each with its
        share of the cores); on a GPU they train one after another. Any
        joblib backend but ``"multiprocessing"`` serves (members come back
        as they finish, which that one cannot do).
    random_state : int, RandomState or None, default=None
        Draws the members' seeds (and resamples); a fixed value makes the
        ensemble reproducible on CPU.
    verbose : int, default=0
        ``1`` shows a progress bar of the members trained (and of the
        featurizing of structures); each member's table of epochs follows
        its own ``verbose``.

    Attributes
    ----------
    estimators_ : list of CGCNNRegressor
        The members, in the order of their seeds.
    graph_settings_ : GraphSettings
    interrupted_ : bool
        Whether an interrupt ended training early (see :meth:`fit`).

    Examples
    --------
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(40, random_state=0)
    >>> ens = CGCNNEnsembleRegressor(CGCNNRegressor(max_epochs=2), n_estimators=3, random_state=0).fit(X, y)
    >>> mean, std = ens.predict(X[:4], return_std=True)
    >>> mean.shape, bool((std > 0).all())
    ((4,), True)
    """

    _member_class = CGCNNRegressor

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X, return_std: bool = False):
        """Mean prediction of the members, and their standard deviation if asked.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
            Featurized once for all members.
        return_std : bool, default=False
            Also return the standard deviation over the members (the
            scikit-learn convention of ``GaussianProcessRegressor``).

        Returns
        -------
        mean : ndarray of shape (n_crystals,) or (n_crystals, n_outputs)
        std : ndarray of the same shape
            Only when ``return_std`` is true.
        """
        graphs = self.featurize(X)
        predictions = np.stack([member.predict(graphs) for member in self.estimators_])
        mean = predictions.mean(axis=0)
        return (mean, predictions.std(axis=0)) if return_std else mean


class CGCNNEnsembleClassifier(_EnsembleMixin, ClassifierMixin, BaseEstimator):
    """Several CGCNN classifiers trained from different seeds; their class probabilities averaged.

    Parameters
    ----------
    estimator : CGCNNClassifier, default=None
    n_estimators, bootstrap, n_jobs, random_state, verbose
        As in :class:`CGCNNEnsembleRegressor`.

    Attributes
    ----------
    estimators_ : list of CGCNNClassifier
    interrupted_ : bool
        Whether an interrupt ended training early (see :meth:`CGCNNEnsembleRegressor.fit`).
    classes_ : ndarray
        All labels of the training data, in the order of ``predict_proba``
        columns (a member trained on a resample without some label gives it
        probability 0).

    Examples
    --------
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(40, random_state=0)
    >>> ens = CGCNNEnsembleClassifier(CGCNNClassifier(max_epochs=2), n_estimators=3, random_state=0)
    >>> ens.fit(X, y < -5).predict_proba(X[:2]).shape
    (2, 2)
    """

    _member_class = CGCNNClassifier

    def fit(self, X, y):
        """Train the members; see :meth:`CGCNNEnsembleRegressor.fit`.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        super().fit(X, y)
        self.classes_ = np.unique(np.asarray(y))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities averaged over the members; columns follow ``classes_``.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        ndarray of shape (n_crystals, n_classes)
        """
        graphs = self.featurize(X)
        total = np.zeros((len(graphs), len(self.classes_)))
        for member in self.estimators_:
            total[:, np.searchsorted(self.classes_, member.classes_)] += member.predict_proba(graphs)
        return total / len(self.estimators_)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each input.

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        ndarray of shape (n_crystals,)
        """
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
