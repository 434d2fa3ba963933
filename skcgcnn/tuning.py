"""Hyperparameter search with Optuna: a default search space and :func:`tune` with per-epoch pruning."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from collections import Counter, OrderedDict

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sklearn.base import clone, is_classifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from .callbacks import HeldOutScore
from .files import process_alive
from ._net import CGCNNMixin
from .graphs import CrystalGraphs, CrystalGraphTransformer

__all__ = ["NoTrialCompleted", "default_search_space", "make_storage", "tune"]


class NoTrialCompleted(RuntimeError):
    """A search ended without a completed trial, so there is no best model to refit."""


def _steps(estimator) -> tuple[str | None, str]:
    """Prefixes of the graph step (or None) and of the network inside ``estimator``."""
    if isinstance(estimator, CGCNNMixin):
        return None, ""
    if isinstance(estimator, Pipeline) and isinstance(estimator.steps[-1][1], CGCNNMixin):
        graph = [name for name, step in estimator.steps[:-1] if isinstance(step, CrystalGraphTransformer)]
        return (graph[0] + "__" if graph else None), estimator.steps[-1][0] + "__"
    raise TypeError(
        "expected a CGCNNRegressor/CGCNNClassifier or a Pipeline ending in one, "
        f"got {type(estimator).__name__}"
    )


def default_search_space(estimator=None) -> dict:
    """A search space over the ranges explored in the CGCNN paper.

    Architecture: ``atom_fea_len`` (32-128), ``n_conv`` (the paper's R, 1-5),
    ``h_fea_len`` (32-256), ``n_h`` (the paper's L2, 1-4); training: ``lr``
    (1e-4 to 1e-2, log scale), ``optimizer__weight_decay`` (1e-7 to 1e-2,
    log scale) and ``batch_size``; and, when ``estimator`` is a Pipeline with
    a :class:`CrystalGraphTransformer`, its ``radius`` (6-8 Å) and
    ``max_num_nbr`` (8-16). Every value is a plain number or string, so the
    space works with any Optuna storage.

    Parameters
    ----------
    estimator : estimator or Pipeline, default=None
        Names are prefixed to match it (``"cgcnn__lr"``, ``"graph__radius"``);
        ``None`` gives the bare network's names.

    Returns
    -------
    dict of str to optuna.distributions.BaseDistribution
        Ready for ``optuna_integration.OptunaSearchCV`` or :func:`tune`.

    Examples
    --------
    >>> space = default_search_space()
    >>> sorted(space)[:3]
    ['atom_fea_len', 'batch_size', 'h_fea_len']
    """
    graph, net = (None, "") if estimator is None else _steps(estimator)
    space = {
        f"{net}atom_fea_len": CategoricalDistribution([32, 64, 96, 128]),
        f"{net}n_conv": IntDistribution(1, 5),
        f"{net}h_fea_len": CategoricalDistribution([32, 64, 128, 256]),
        f"{net}n_h": IntDistribution(1, 4),
        f"{net}lr": FloatDistribution(1e-4, 1e-2, log=True),
        f"{net}optimizer__weight_decay": FloatDistribution(1e-7, 1e-2, log=True),
        f"{net}batch_size": CategoricalDistribution([32, 64, 128, 256]),
    }
    if graph is not None:
        space[f"{graph}radius"] = FloatDistribution(6.0, 8.0, step=0.5)
        space[f"{graph}max_num_nbr"] = IntDistribution(8, 16, step=2)
    return space


def make_storage(storage):
    """Turn a storage string into an Optuna storage: a journal file, or a database with heartbeats.

    A journal file (``"journal:PATH"``) works for processes on one machine or
    on several machines sharing a file system; a database URL
    (``"sqlite:///study.db"`` for one machine, ``"postgresql://..."`` for
    many) becomes an ``RDBStorage`` whose workers send a heartbeat every
    :data:`HEARTBEAT_S` seconds, so that Optuna fails the trials of a worker
    that died. Storage objects and ``None`` pass through.

    Parameters
    ----------
    storage : str, optuna storage or None

    Returns
    -------
    optuna storage or None

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> type(make_storage(f"journal:{folder}/study.log")).__name__
    'JournalStorage'
    >>> make_storage(f"sqlite:///{folder}/study.db").heartbeat_interval
    30
    """
    if isinstance(storage, str) and storage.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(storage[len("journal:") :]))
    if isinstance(storage, str) and "://" in storage:
        # Workers send a heartbeat; Optuna fails the trials of one that stopped sending (killed, lost node).
        return optuna.storages.RDBStorage(storage, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S)
    return storage


#: Seconds between the heartbeats of a worker on a database storage.
HEARTBEAT_S = 30
_WORKER = "worker"


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_dead_workers_trials(study: optuna.Study) -> list[int]:
    """Fail the running trials of processes of this machine that no longer run (storages without heartbeats).

    Returns
    -------
    list of int
        Numbers of the trials marked failed.
    """
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get(_WORKER, "")).rpartition(":")
        if worker_host == host and pid.isdigit() and not process_alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


def _fingerprint(X, y) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(y, dtype=object).astype(str)).tobytes())
    if isinstance(X, CrystalGraphs):
        digest.update(X.atomic_numbers.tobytes())
        digest.update(X.offsets.tobytes())
    else:
        digest.update("|".join(getattr(x, "formula", str(x)[:200]) for x in X).encode())
    return digest.hexdigest()


def _fixed_settings(estimator, space: dict, X, y, validation_fraction, random_state) -> dict:
    """What must stay the same for the trials of one study to be comparable."""
    plain = (bool, int, float, str, type(None))
    params = {k: v for k, v in estimator.get_params(deep=True).items()
              if k not in space and isinstance(v, plain) and "callbacks__" not in k
              and not k.endswith(("n_jobs", "verbose", "device"))}
    return {"data": _fingerprint(X, y), "n_samples": len(y), "validation_fraction": validation_fraction,
            "split_seed": random_state, "search_space": sorted(space), "fixed_params": params}


def _check_resumable(study: optuna.Study, settings: dict) -> None:
    recorded = study.user_attrs.get("fixed_settings")
    if recorded is None:
        if study.trials:
            return  # a study created elsewhere: nothing to compare with
        study.set_user_attr("fixed_settings", settings)
        return
    recorded = json.loads(json.dumps(recorded))
    current = json.loads(json.dumps(settings))
    differ = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if "fixed_params" in differ:
        old, new = recorded["fixed_params"], current["fixed_params"]
        differ.remove("fixed_params")
        differ += sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise ValueError(
            f"study {study.study_name!r} was run with other fixed settings ({', '.join(differ)}); its scores "
            "would not be comparable: resume it with the same data and settings, or start a new study"
        )


def _suggest(trial: optuna.Trial, name: str, distribution):
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, (IntDistribution, FloatDistribution)):
        suggest = trial.suggest_int if isinstance(distribution, IntDistribution) else trial.suggest_float
        return suggest(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    raise TypeError(f"{name}: unsupported distribution {type(distribution).__name__}")


class _ReportAndPrune(HeldOutScore):
    """Report the held-out score after every epoch and stop a trial the pruner gives up on."""

    def __init__(self, trial, X, y, scoring):
        super().__init__(X, y, scoring=scoring, name="tune_score", restore_best=False)
        self.trial = trial

    def on_epoch_end(self, net, **kwargs):
        super().on_epoch_end(net, **kwargs)
        epoch, score = len(net.history), net.history[-1, self.name]
        self.trial.report(score, epoch)
        if not np.isfinite(score) or self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} with score {score:.5g}")


class _GraphCache:
    """Graphs of one data set under each graph setting, keeping the ``size`` most recent."""

    def __init__(self, X, size: int = 4):
        self.X, self.size, self.entries, self.n_computed = X, size, OrderedDict(), 0

    def get(self, transformer: CrystalGraphTransformer | None) -> CrystalGraphs:
        if isinstance(self.X, CrystalGraphs):
            return self.X if transformer is None else transformer.transform(self.X)
        transformer = transformer or CrystalGraphTransformer()
        key = repr(sorted((k, repr(v)) for k, v in transformer.get_params().items() if k not in ("n_jobs", "verbose")))
        if key not in self.entries:
            self.entries[key] = transformer.transform(self.X)
            self.n_computed += 1
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        return self.entries[key]


def tune(
    estimator,
    X,
    y,
    search_space: dict | None = None,
    n_trials: int | None = 20,
    timeout: float | None = None,
    validation_fraction: float = 0.2,
    scoring=None,
    storage=None,
    study_name: str | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    refit: bool = True,
    random_state: int | None = 0,
    sampler_seed: int | None = None,
    show_progress_bar: bool = False,
):
    """Search hyperparameters with Optuna, pruning poor trials epoch by epoch.

    Each trial trains on ``1 - validation_fraction`` of the data, scores the
    held-out rest after every epoch and reports it to Optuna, whose pruner
    stops trials that fall behind. Crystal graphs are computed once per
    distinct graph setting, not once per trial. With a shared ``storage``
    several processes (or machines) can run trials of the same study; each
    call adds up to ``n_trials`` trials.

    Parameters
    ----------
    estimator : CGCNNRegressor, CGCNNClassifier or Pipeline ending in one
        The starting point; trial parameters are set on clones of it.
    X : sequence of structures or CrystalGraphs
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
    search_space : dict of str to optuna distribution, default=None
        Parameter names as for ``estimator.set_params``; by default
        :func:`default_search_space` of ``estimator``.
    n_trials : int or None, default=20
        Trials run by this call (``None``: until ``timeout``).
    timeout : float, default=None
        Stop starting new trials after this many seconds.
    validation_fraction : float, default=0.2
        Held-out share of the data (stratified for classifiers).
    scoring : str or callable, default=None
        A scikit-learn scorer (greater is better); by default
        ``"neg_mean_absolute_error"`` for regression and ``"neg_log_loss"``
        for classification.
    storage : str or optuna storage, default=None
        ``None`` keeps the study in memory; ``"sqlite:///tune.db"``,
        ``"postgresql://..."`` or ``"journal:/shared/path/tune.log"`` (see
        :func:`make_storage`) persist it and let processes share it.
    study_name : str, default=None
        Name of the study in ``storage``; an existing study is resumed.
    pruner : optuna pruner, default=None
        By default ``MedianPruner(n_startup_trials=5, n_warmup_steps=5)``.
    sampler : optuna sampler, default=None
        By default ``TPESampler(seed=sampler_seed)``.
    refit : bool, default=True
        Fit a clone of ``estimator`` with the best parameters on all of ``X``.
    random_state : int or None, default=0
        Seeds the split into training and validation data, which every
        worker and every resumed run of a study share, so that their scores
        compare.
    sampler_seed : int or None, default=None
        Seeds the default sampler. ``None``: ``random_state`` for a study in
        memory (a reproducible search); a fresh seed for a study in a
        ``storage``, so that workers sharing it, and a run resumed after an
        interruption, explore different configurations instead of repeating
        each other's.
    show_progress_bar : bool, default=False
        Optuna's progress bar over trials.

    Returns
    -------
    best_estimator : estimator or None
        Refitted on all data (``None`` when ``refit=False``).
    study : optuna.Study
        All trials; ``study.best_params`` and ``study.best_value``.

    Raises
    ------
    ValueError
        If the study in ``storage`` was run with other fixed settings (data,
        split, parameters outside the search space such as ``max_epochs``,
        the search space itself); they are recorded in the study's user
        attribute ``"fixed_settings"``.
    KeyboardInterrupt
        On Ctrl-C: the running trial is marked failed, completed ones stay in
        the storage, and the same call resumes the study.

    Notes
    -----
    Trials of a worker that died (killed, lost node) do not stay running for
    ever: on a database storage Optuna's heartbeats fail them; on a journal
    file, the next call on the same machine fails those whose process is
    gone.

    Examples
    --------
    >>> from skcgcnn import CGCNNRegressor
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> from optuna.distributions import IntDistribution
    >>> X, y = make_ionic_crystals(40, random_state=0)
    >>> best, study = tune(CGCNNRegressor(max_epochs=2), X, y,
    ...                    search_space={"n_conv": IntDistribution(1, 2)}, n_trials=2)
    >>> len(study.trials)
    2
    """
    graph_prefix, net_prefix = _steps(estimator)
    space = default_search_space(estimator) if search_space is None else dict(search_space)
    y = np.asarray(y)
    indices = np.arange(len(y))
    train, val = train_test_split(
        indices,
        test_size=validation_fraction,
        random_state=random_state,
        stratify=y if is_classifier(estimator) else None,
    )
    cache = _GraphCache(X)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(_WORKER, _worker())
        candidate = clone(estimator).set_params(**{name: _suggest(trial, name, d) for name, d in space.items()})
        if net_prefix:
            net = candidate.steps[-1][1]
            transformer = candidate.named_steps[graph_prefix[:-2]] if graph_prefix else None
        else:
            net, transformer = candidate, candidate.featurizer
        graphs = cache.get(transformer)
        pruning = ("tune_pruning", _ReportAndPrune(trial, graphs[val], y[val], scoring))
        net.set_params(callbacks=[*(net.callbacks or []), pruning])
        net.fit(graphs[train], y[train])
        if getattr(net, "interrupted_", False):
            raise KeyboardInterrupt  # skorch ended the epoch loop quietly; Optuna must fail the trial and stop
        return float(net.history[-1, "tune_score"])

    if sampler_seed is None and storage is None:
        sampler_seed = random_state
    study = optuna.create_study(
        storage=make_storage(storage),
        study_name=study_name,
        direction="maximize",
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
        sampler=sampler or optuna.samplers.TPESampler(seed=sampler_seed),
        load_if_exists=True,
    )
    _check_resumable(study, _fixed_settings(estimator, space, X, y, validation_fraction, random_state))
    _fail_dead_workers_trials(study)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "training was interrupted", UserWarning)  # the trial fails instead
        study.optimize(objective, n_trials=n_trials, timeout=timeout, show_progress_bar=show_progress_bar)
    best = None
    if refit:
        if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            states = Counter(t.state.name.lower() for t in study.trials)
            raise NoTrialCompleted(f"no trial completed ({states['fail']} failed, {states['pruned']} pruned, "
                                   f"{states['running']} running), so there are no best parameters to refit with")
        best = clone(estimator).set_params(**study.best_params)
        best.fit(X, y)
    return best, study
