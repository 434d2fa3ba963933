"""scikit-learn and Optuna workflows end to end: Pipeline, CV, searches, tuning, persistence."""

import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna_integration import OptunaSearchCV
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict, cross_val_score
from sklearn.pipeline import Pipeline

from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.graphs import CrystalGraphs
from skcgcnn.tuning import default_search_space, tune

FAST = dict(max_epochs=3, batch_size=16, atom_fea_len=16, h_fea_len=16, random_state=0)


@pytest.fixture(scope="module")
def data(ionic):
    X, y = ionic
    return X[:60], y[:60], X[60:75]


@pytest.fixture(scope="module")
def graphs(data):
    return CrystalGraphTransformer(radius=6.0).transform(data[0])


def pipeline(net):
    return Pipeline([("graph", CrystalGraphTransformer(radius=6.0)), ("cgcnn", net)])


@pytest.fixture
def count_featurizations(monkeypatch):
    calls = []
    original = CrystalGraphTransformer.transform

    def counted(self, X):
        if not isinstance(X, CrystalGraphs):
            calls.append(len(X))
        return original(self, X)

    monkeypatch.setattr(CrystalGraphTransformer, "transform", counted)
    return calls


def test_pipeline_regressor_equals_transform_then_fit(data, graphs):
    X, y, X_new = data
    pipe = pipeline(CGCNNRegressor(**FAST)).fit(X, y)
    direct = CGCNNRegressor(**FAST).fit(graphs, y)
    new_graphs = CrystalGraphTransformer(radius=6.0).transform(X_new)
    np.testing.assert_allclose(pipe.predict(X_new), direct.predict(new_graphs), rtol=1e-5)
    assert pipe.predict(X_new).shape == (len(X_new),)


def test_pipeline_classifier_predicts_labels(data):
    X, y, X_new = data
    labels = np.where(y < np.median(y), "low", "high")
    pipe = pipeline(CGCNNClassifier(**FAST)).fit(X, labels)
    assert set(pipe.predict(X_new)) <= {"low", "high"}
    np.testing.assert_allclose(pipe.predict_proba(X_new).sum(axis=1), 1.0, rtol=1e-5)
    assert list(pipe.classes_) == ["high", "low"]


@pytest.mark.parametrize("scoring", ["neg_mean_absolute_error", "r2"])
def test_cross_val_score_on_structures_and_on_graphs_agree(data, graphs, scoring):
    X, y, _ = data
    cv = KFold(3, shuffle=True, random_state=0)
    on_structures = cross_val_score(pipeline(CGCNNRegressor(**FAST)), X, y, cv=cv, scoring=scoring, error_score="raise")
    on_graphs = cross_val_score(CGCNNRegressor(**FAST), graphs, y, cv=cv, scoring=scoring, error_score="raise")
    assert np.all(np.isfinite(on_structures)) and len(on_structures) == 3
    np.testing.assert_allclose(on_structures, on_graphs, rtol=1e-5)


def test_cross_val_predict_keeps_input_order(data, graphs):
    X, y, _ = data
    cv = KFold(3)
    pred = cross_val_predict(CGCNNRegressor(**FAST), graphs, y, cv=cv)
    by_hand = np.empty_like(y)
    for train, test in cv.split(graphs):
        by_hand[test] = CGCNNRegressor(**FAST).fit(graphs[train], y[train]).predict(graphs[test])
    np.testing.assert_allclose(pred, by_hand, rtol=1e-5)


def test_roc_auc_scorers_binary_and_three_classes(data, graphs):
    X, y, _ = data
    cv = KFold(3, shuffle=True, random_state=0)
    binary = (y < np.median(y)).astype(int)
    auc = cross_val_score(pipeline(CGCNNClassifier(**FAST)), X, binary, cv=cv, scoring="roc_auc", error_score="raise")
    three = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    ovr = cross_val_score(CGCNNClassifier(**FAST), graphs, three, cv=cv, scoring="roc_auc_ovr", error_score="raise")
    assert np.all((auc >= 0) & (auc <= 1)) and np.all((ovr >= 0) & (ovr <= 1))
    proba = cross_val_predict(CGCNNClassifier(**FAST), graphs, three, cv=cv, method="predict_proba")
    assert proba.shape == (len(y), 3)


@pytest.mark.filterwarnings("ignore:.*fewer than max_num_nbr")
def test_grid_search_over_both_steps_refits_the_best(data):
    X, y, X_new = data
    grid = {"graph__radius": [5.0, 6.0], "cgcnn__n_conv": [1, 2], "cgcnn__lr": [1e-3, 3e-3]}
    search = GridSearchCV(pipeline(CGCNNRegressor(**FAST)), grid, cv=KFold(2), scoring="neg_mean_absolute_error",
                          error_score="raise", refit=True).fit(X, y)
    assert len(search.cv_results_["params"]) == 8
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert best.named_steps["cgcnn"].graph_settings_.radius == search.best_params_["graph__radius"]
    assert len(best.named_steps["cgcnn"].module_.convs) == search.best_params_["cgcnn__n_conv"]
    assert search.predict(X_new).shape == (len(X_new),)


def test_search_over_the_estimator_featurizes_once(data, count_featurizations):
    X, y, _ = data
    graphs = CrystalGraphTransformer(radius=6.0).transform(X)
    assert count_featurizations == [len(X)]
    GridSearchCV(CGCNNRegressor(**FAST), {"n_conv": [1, 2], "lr": [1e-3, 2e-3]}, cv=KFold(3)).fit(graphs, y)
    assert count_featurizations == [len(X)]  # 3 folds x 4 candidates + refit, no new graphs


def test_pipeline_search_featurizes_per_fit_and_score(data, count_featurizations):
    X, y, _ = data
    GridSearchCV(pipeline(CGCNNRegressor(**FAST)), {"cgcnn__n_conv": [1, 2]}, cv=KFold(3)).fit(X, y)
    # Each of the 6 fits featurizes its training fold and scores its test fold; the refit adds one.
    assert len(count_featurizations) == 2 * 6 + 1


def test_default_search_space_names_and_json_values(data):
    pipe = pipeline(CGCNNRegressor())
    space = default_search_space(pipe)
    assert {"cgcnn__n_conv", "cgcnn__lr", "cgcnn__optimizer__weight_decay", "graph__radius",
            "graph__max_num_nbr"} <= set(space)
    assert all(name.startswith(("cgcnn__", "graph__")) for name in space)
    assert not any(name.startswith("graph__") for name in default_search_space(CGCNNRegressor()))
    pipe.set_params(**{name: (d.choices[0] if hasattr(d, "choices") else d.low) for name, d in space.items()})
    for d in space.values():
        assert optuna.distributions.json_to_distribution(optuna.distributions.distribution_to_json(d)) == d
    with pytest.raises(TypeError, match="Pipeline ending in one"):
        default_search_space(CrystalGraphTransformer())


def test_optuna_search_cv_with_the_default_space(data):
    X, y, X_new = data
    pipe = pipeline(CGCNNRegressor(max_epochs=2, random_state=0))
    space = default_search_space(pipe)
    space["cgcnn__optimizer"] = CategoricalDistribution(["adamw", "sgd"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        search = OptunaSearchCV(pipe, space, cv=KFold(2), n_trials=3, error_score="raise", random_state=0,
                                scoring="neg_mean_absolute_error")
        search.fit(X, y)
    assert len(search.trials_) == 3 and set(search.best_params_) == set(space)
    assert search.predict(X_new).shape == (len(X_new),)


def test_tune_prunes_trials_per_epoch(graphs, data):
    y = data[1]
    _, study = tune(CGCNNRegressor(**{**FAST, "max_epochs": 5}), graphs, y,
                    search_space={"lr": FloatDistribution(1e-4, 1e-2, log=True)}, n_trials=2,
                    pruner=optuna.pruners.ThresholdPruner(lower=0.0), refit=False)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in study.trials)
    with pytest.raises(RuntimeError, match="no trial completed"):
        tune(CGCNNRegressor(**FAST), graphs, y, search_space={"lr": FloatDistribution(1e-4, 1e-2, log=True)},
             n_trials=1, pruner=optuna.pruners.ThresholdPruner(lower=0.0))


@pytest.mark.filterwarnings("ignore:.*fewer than max_num_nbr")
def test_tune_pipeline_caches_graphs_and_refits_the_best(data, count_featurizations):
    X, y, X_new = data
    space = {"graph__radius": CategoricalDistribution([5.0, 6.0]), "cgcnn__n_conv": IntDistribution(1, 2)}
    best, study = tune(pipeline(CGCNNRegressor(**FAST)), X, y, search_space=space, n_trials=6,
                       pruner=optuna.pruners.NopPruner())
    radii = {t.params["graph__radius"] for t in study.trials}
    # One featurization per distinct radius during the search, one by the refit.
    assert len(count_featurizations) == len(radii) + 1
    assert all(len(t.intermediate_values) == FAST["max_epochs"] for t in study.trials)
    assert best.named_steps["graph"].radius == study.best_params["graph__radius"]
    assert best.predict(X_new).shape == (len(X_new),)


@pytest.mark.slow
def test_two_processes_share_a_journal_study(tmp_path):
    journal = tmp_path / "study.log"
    script = textwrap.dedent(f"""
        from optuna.distributions import IntDistribution
        from skcgcnn import CGCNNRegressor
        from skcgcnn.datasets import make_ionic_crystals
        from skcgcnn.tuning import tune
        X, y = make_ionic_crystals(30, random_state=0)
        tune(CGCNNRegressor(max_epochs=2, batch_size=16, atom_fea_len=16, h_fea_len=16), X, y,
             search_space={{"n_conv": IntDistribution(1, 3)}}, n_trials=2, refit=False,
             storage="journal:{journal}", study_name="shared", random_state=None)
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    from skcgcnn.tuning import make_storage

    study = optuna.load_study(study_name="shared", storage=make_storage(f"journal:{journal}"))
    assert len(study.trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.slow
@pytest.mark.parametrize("as_pipeline", [False, True])
def test_joblib_round_trip_in_a_fresh_process(tmp_path, data, graphs, as_pipeline):
    X, y, X_new = data
    model = pipeline(CGCNNRegressor(**FAST)) if as_pipeline else CGCNNRegressor(**FAST)
    model.fit(X if as_pipeline else graphs, y)
    new = X_new if as_pipeline else CrystalGraphTransformer(radius=6.0).transform(X_new)
    path, inputs, out = tmp_path / "model.joblib", tmp_path / "inputs.joblib", tmp_path / "pred.npy"
    joblib.dump(model, path)
    joblib.dump(new, inputs)
    code = (f"import joblib, numpy; "
            f"numpy.save({str(out)!r}, joblib.load({str(path)!r}).predict(joblib.load({str(inputs)!r})))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    np.testing.assert_array_equal(np.load(out), model.predict(new))


def test_model_saved_with_cuda_device_loads_on_cpu(tmp_path, graphs, data):
    model = CGCNNRegressor(**FAST).fit(graphs, data[1])
    expected = model.predict(graphs)
    model.device = "cuda"  # what a GPU fit leaves behind; skorch maps it back on a CPU-only machine
    joblib.dump(model, tmp_path / "m.joblib")
    if sys.modules["torch"].cuda.is_available():
        pytest.skip("the CPU fallback path needs a machine without CUDA")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = joblib.load(tmp_path / "m.joblib")
    assert any("device (cuda) is not available" in str(w.message) for w in caught)
    assert str(loaded.device) == "cpu"
    np.testing.assert_allclose(loaded.predict(graphs), expected, rtol=1e-6)
