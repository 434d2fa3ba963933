"""Ensembles with return_std, conformal intervals with their coverage, calibration."""

import subprocess
import sys

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from skorch.callbacks import Callback

from conftest import FAST
from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.callbacks import StopTraining
from skcgcnn.ensemble import CGCNNEnsembleClassifier, CGCNNEnsembleRegressor
from skcgcnn.uncertainty import ConformalRegressor, calibration_curve, miscalibration_area


@pytest.fixture(scope="module")
def data(ionic_graphs):
    return ionic_graphs


@pytest.fixture(scope="module")
def ensemble(data):
    graphs, y, _ = data
    return CGCNNEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=3, random_state=0).fit(graphs[:120], y[:120])


def test_members_differ_and_the_mean_is_their_average(ensemble, data):
    graphs, _, _ = data
    mean, std = ensemble.predict(graphs[120:], return_std=True)
    members = np.stack([m.predict(graphs[120:]) for m in ensemble.estimators_])
    np.testing.assert_allclose(mean, members.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, members.std(axis=0), rtol=1e-6)
    assert (std > 0).all() and len({m.random_state for m in ensemble.estimators_}) == 3
    np.testing.assert_array_equal(ensemble.predict(graphs[120:]), mean)


def test_the_ensemble_is_reproducible_and_parallel_equals_serial(data):
    graphs, y, _ = data
    make = lambda n_jobs: CGCNNEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=2, n_jobs=n_jobs,  # noqa: E731
                                                 bootstrap=True, random_state=3).fit(graphs[:80], y[:80])
    serial, parallel = make(1).predict(graphs[80:100]), make(2).predict(graphs[80:100])
    # the same members; workers with fewer threads only sum in another order
    np.testing.assert_allclose(serial, parallel, rtol=1e-3)
    assert not np.allclose(serial, make(1).set_params(random_state=4).fit(graphs[:80], y[:80]).predict(graphs[80:100]),
                           rtol=1e-3)


def test_an_ensemble_shows_its_progress_when_asked_and_is_silent_otherwise(data, capsys):
    _, y, X = data
    CGCNNEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=2, n_jobs=1, random_state=0).fit(X[:30], y[:30])
    assert capsys.readouterr() == ("", "")
    CGCNNEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=2, n_jobs=1, random_state=0,
                           verbose=1).fit(X[:30], y[:30])
    err = capsys.readouterr().err
    assert "crystal graphs" in err and "ensemble members: 100%" in err and "2/2" in err


def test_the_ensemble_works_in_pipelines_searches_and_joblib(tmp_path, data):
    _, y, X = data
    pipe = Pipeline([("graph", CrystalGraphTransformer()),
                     ("ens", CGCNNEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=2, random_state=0))])
    scores = cross_val_score(clone(pipe), X[:60], y[:60], cv=2, scoring="neg_mean_absolute_error")
    assert np.isfinite(scores).all()
    pipe.fit(X[:60], y[:60])
    joblib.dump(pipe, tmp_path / "ens.joblib")
    code = (f"import joblib; p = joblib.load({str(tmp_path / 'ens.joblib')!r}); "
            "from skcgcnn.datasets import make_ionic_crystals; X, _ = make_ionic_crystals(240, random_state=7); "
            "m, s = p.predict(X[60:63], return_std=True); print(*m, *s)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    mean, std = pipe.predict(X[60:63], return_std=True)
    np.testing.assert_allclose(np.array(out, dtype=float), np.concatenate([mean, std]), rtol=1e-5)


class _EndSomeMembers(Callback):
    """After a member's first epoch: the first member trained in this process stops on purpose (as a time budget
    stops it), the second as on Ctrl-C; with ``every=True`` every member is interrupted."""

    started = 0

    def __init__(self, every=False):
        self.every = every

    def on_train_begin(self, net, **kwargs):
        type(self).started += 1

    def on_epoch_end(self, net, **kwargs):
        if self.every or type(self).started == 2:
            raise KeyboardInterrupt
        if type(self).started == 1:
            raise StopTraining


def test_an_interrupt_ends_the_whole_ensemble_and_keeps_the_members_trained(ensemble, data):
    graphs, y, _ = data
    _EndSomeMembers.started = 0
    member = CGCNNRegressor(**FAST, callbacks=[("end", _EndSomeMembers())])
    with pytest.warns(UserWarning, match="holds 2 of its 3 members [(]1 of them partly trained"):
        ens = CGCNNEnsembleRegressor(member, n_estimators=3, random_state=0).fit(graphs[:120], y[:120])
    assert ens.interrupted_ and _EndSomeMembers.started == 2
    assert [(m.interrupted_, len(m.history_)) for m in ens.estimators_] == [(False, 1), (True, 1)]
    assert [m.random_state for m in ens.estimators_] == [m.random_state for m in ensemble.estimators_[:2]]
    assert not ensemble.interrupted_ and ens.predict(graphs[120:], return_std=True)[1].shape == (120,)


def test_an_interrupt_in_parallel_members_keeps_the_first_returned_and_stops_the_rest(data):
    graphs, y, _ = data
    member = CGCNNRegressor(**FAST, callbacks=[("end", _EndSomeMembers(every=True))])
    with pytest.warns(UserWarning, match="holds 1 of its 3 members [(]1 of them partly trained"):
        ens = CGCNNEnsembleRegressor(member, n_estimators=3, n_jobs=2, random_state=0).fit(graphs[:80], y[:80])
    assert ens.interrupted_ and [(m.interrupted_, len(m.history_)) for m in ens.estimators_] == [(True, 1)]


def test_a_classifier_ensemble_averages_probabilities(data):
    graphs, y, _ = data
    labels = np.where(y < np.median(y), "deep", "shallow")
    ens = CGCNNEnsembleClassifier(CGCNNClassifier(**FAST), n_estimators=3, bootstrap=True, random_state=0)
    ens.fit(graphs[:120], labels[:120])
    proba = ens.predict_proba(graphs[120:])
    members = np.mean([m.predict_proba(graphs[120:]) for m in ens.estimators_], axis=0)
    np.testing.assert_allclose(proba, members, rtol=1e-6)
    assert list(ens.classes_) == ["deep", "shallow"] and set(ens.predict(graphs[120:])) <= {"deep", "shallow"}


class _Precomputed:
    """The ensemble's predictions on the held-out crystals, looked up by position (so 100 splits cost nothing)."""

    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def predict(self, rows, return_std=False):
        return (self.mean[rows], self.std[rows]) if return_std else self.mean[rows]


@pytest.mark.parametrize("scaled", [False, True])
def test_conformal_intervals_cover_at_least_the_nominal_share_of_held_out_crystals(ensemble, data, scaled):
    graphs, y, _ = data
    held_out = y[120:]
    one_split = ConformalRegressor(ensemble, confidence_level=0.9, scaled=scaled)
    one_split.conformalize(graphs[120:180], held_out[:60])
    pred, interval = one_split.predict_interval(graphs[180:])
    assert interval.shape == (60, 2) and (interval[:, 0] <= pred).all() and (pred <= interval[:, 1]).all()
    if scaled:
        assert np.ptp(interval[:, 1] - interval[:, 0]) > 0  # wider where the members disagree
    stub = _Precomputed(*ensemble.predict(graphs[120:], return_std=True))
    rng = np.random.default_rng(0)
    coverage = []
    for _ in range(500):  # many calibration/test splits of the same held-out crystals
        order = rng.permutation(len(held_out))
        calibration, test = order[:60], order[60:]
        conformal = ConformalRegressor(stub, confidence_level=0.9, scaled=scaled)
        _, interval = conformal.conformalize(calibration, held_out[calibration]).predict_interval(test)
        coverage.append(np.mean((interval[:, 0] <= held_out[test]) & (held_out[test] <= interval[:, 1])))
    assert np.mean(coverage) >= 0.895  # the guarantee is on the expected coverage: >= 0.9


def test_scaled_intervals_refuse_an_ensemble_without_spread():
    y = np.linspace(0.0, 1.0, 40)
    one_member = _Precomputed(y + 0.1, np.where(np.arange(40) == 7, 0.0, 0.2))
    with pytest.raises(ValueError, match="not positive for 1 of 40 inputs"):
        ConformalRegressor(one_member, scaled=True).conformalize(np.arange(40), y)
    constant = ConformalRegressor(one_member).conformalize(np.arange(40), y)
    assert constant.quantile_ == pytest.approx(0.1)


def test_mapie_takes_crystal_graphs_for_split_conformal(ensemble, data):
    mapie = pytest.importorskip("mapie.regression")
    graphs, y, _ = data
    conformal = mapie.SplitConformalRegressor(ensemble, confidence_level=0.9, prefit=True)
    conformal.conformalize(graphs[120:180], y[120:180])
    _, intervals = conformal.predict_interval(graphs[180:])
    ours = ConformalRegressor(ensemble, confidence_level=0.9).conformalize(graphs[120:180], y[120:180])
    np.testing.assert_allclose(intervals[:, :, 0], ours.predict_interval(graphs[180:])[1], rtol=1e-5)


def test_calibration_detects_overconfidence():
    y = np.random.default_rng(1).normal(size=5000)
    expected, observed = calibration_curve(y, np.zeros_like(y), 0.5 * np.ones_like(y), levels=[0.5, 0.9])
    assert (observed < expected).all()
    assert miscalibration_area(y, np.zeros_like(y), 0.5 * np.ones_like(y)) > 0.1
    assert miscalibration_area(y, np.zeros_like(y), np.ones_like(y)) < 0.02
    with pytest.raises(ValueError, match="too few for confidence_level=0.95"):
        from sklearn.dummy import DummyRegressor

        X = np.zeros((10, 1))
        ConformalRegressor(DummyRegressor().fit(X, y[:10]), confidence_level=0.95).conformalize(X, y[:10])


def test_calibration_refuses_unknown_targets():
    from sklearn.dummy import DummyRegressor

    X, y = np.zeros((30, 1)), np.linspace(0, 1, 30)
    model = DummyRegressor().fit(X, y)
    for bad in (np.nan, np.inf):
        broken = y.copy()
        broken[3] = bad
        with pytest.raises(ValueError, match="1 NaN or infinite values"):
            ConformalRegressor(model).conformalize(X, broken)
