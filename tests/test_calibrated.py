"""Calibrated ensembles: error bars from the spread and the distance to training crystals, conformal intervals."""

from math import ceil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError

from conftest import FAST
from skcgcnn import CGCNNClassifier, CGCNNRegressor
from skcgcnn.calibrated import CalibratedEnsembleClassifier, CalibratedEnsembleRegressor
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.persistence import load_model, save_model
from skcgcnn.registry import RELEASED, model_path
from skcgcnn.streaming import predict_to_csv


@pytest.fixture(scope="module")
def data(ionic_graphs):
    return ionic_graphs


@pytest.fixture(scope="module")
def model(data):
    graphs, y, _ = data
    fitted = CalibratedEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=3, random_state=0, n_components=8)
    fitted.fit(graphs[:100], y[:100])
    return fitted.calibrate(graphs[:100], y[:100], graphs[100:140], y[100:140], graphs[140:180], y[140:180])


def test_the_interval_is_the_conformal_quantile_of_the_calibration_scores(model, data):
    graphs, y, _ = data
    mean, std = model.predict(graphs[140:180], return_std=True)
    scores = np.sort(np.abs(mean - y[140:180]) / std)
    np.testing.assert_allclose(model.calibration_scores_, scores, rtol=1e-6)
    pred, interval = model.predict_interval(graphs[180:], confidence_level=0.8)
    q = scores[ceil(41 * 0.8) - 1]
    _, std_new = model.predict(graphs[180:], return_std=True)
    np.testing.assert_allclose(interval[:, 1] - pred, q * std_new, rtol=1e-6)
    assert len(np.unique(np.round(std_new, 8))) > 1  # the width adapts to each crystal
    inside = (interval[:, 0] <= y[180:]) & (y[180:] <= interval[:, 1])
    assert inside.mean() >= 0.6


def signs_of_doubt(model, graphs, y_train, train_graphs):
    """The six signs, computed from their definitions by brute force."""
    fitted = np.mean([member.predict(train_graphs) for member in model.estimators_], axis=0)
    features = np.mean([member.transform(graphs) for member in model.estimators_], axis=0)
    reduced = (features - model.center_) / model.scale_ @ model.components_.T
    gaps = np.linalg.norm(reduced[:, None, :] - model.reference_[None, :, :], axis=2)
    nearest = np.argsort(gaps, axis=1)[:, :model.n_neighbors]
    members = np.stack([member.predict(graphs) for member in model.estimators_])
    return np.column_stack([members.std(axis=0), np.take_along_axis(gaps, nearest, axis=1).mean(axis=1),
                            y_train[nearest].std(axis=1), gaps.min(axis=1),
                            np.abs(y_train[nearest[:, 0]] - members.mean(axis=0)),
                            np.abs(fitted - y_train)[nearest].mean(axis=1)])


def test_the_uncertainty_reads_the_spread_the_neighbours_and_the_nearest_training_crystal(model, data):
    graphs, y, _ = data
    doubts = signs_of_doubt(model, graphs[180:], y[:100], graphs[:100])
    _, std = model.predict(graphs[180:], return_std=True)
    a, *coefficients = model.error_model_
    np.testing.assert_allclose(std, np.exp(a + np.log(doubts) @ coefficients), rtol=1e-4)
    assert model.error_model_.shape == (7,)
    with pytest.raises(ValueError, match=r"y_train holds \(99,\) targets for 100"):
        model.calibrate(graphs[:100], y[:99], graphs[100:140], y[100:140], graphs[140:180], y[140:180])
    with pytest.raises(ValueError, match="y_train holds NaN"):
        model.calibrate(graphs[:100], np.where(np.arange(100) == 3, np.nan, y[:100]), graphs[100:140], y[100:140],
                        graphs[140:180], y[140:180])


def test_the_prediction_adds_the_kernel_weighted_residuals_of_the_training_neighbours(model, data):
    graphs, y, _ = data
    members = np.stack([member.predict(graphs) for member in model.estimators_])
    residuals = y[:100] - members[:, :100].mean(axis=0)
    np.testing.assert_allclose(model.reference_residuals_, residuals, rtol=1e-4, atol=1e-5)
    features = np.mean([member.transform(graphs[180:]) for member in model.estimators_], axis=0)
    reduced = (features - model.center_) / model.scale_ @ model.components_.T
    gaps = np.linalg.norm(reduced[:, None, :] - model.reference_[None, :, :], axis=2)
    nearest = np.argsort(gaps, axis=1)[:, :model.n_neighbors]
    weight, width = model.correction_
    kernel = np.exp(-(np.take_along_axis(gaps, nearest, axis=1) / width) ** 2)
    expected = members[:, 180:].mean(axis=0) + weight * (kernel * residuals[nearest]).sum(axis=1) / kernel.sum(axis=1)
    np.testing.assert_allclose(model.predict(graphs[180:]), expected, rtol=1e-4)
    np.testing.assert_allclose(model.predict(graphs[180:], return_std=True)[0], expected, rtol=1e-4)
    # Few epochs leave the members biased, and their training neighbours' residuals show where: the weight chosen
    # on the validation crystals corrects them there and on new crystals.
    assert weight > 0
    for part in (slice(100, 140), slice(180, None)):
        mean = members[:, part].mean(axis=0)
        assert np.abs(model.predict(graphs[part]) - y[part]).mean() < np.abs(mean - y[part]).mean()


def test_a_file_written_before_the_correction_predicts_the_members_mean(tmp_path, model, data):
    graphs, _, _ = data
    old = load_model(save_model(model, tmp_path / "new.skcgcnn"))
    del old.correction_
    old.reference_residuals_ = np.abs(old.reference_residuals_)  # what such files hold
    read = load_model(save_model(old, tmp_path / "old.skcgcnn"))
    assert not hasattr(read, "correction_")
    members = np.mean([member.predict(graphs[180:]) for member in read.estimators_], axis=0)
    np.testing.assert_allclose(read.predict(graphs[180:]), members, rtol=1e-6)
    mean, std = read.predict(graphs[180:], return_std=True)
    _, expected = model.predict(graphs[180:], return_std=True)
    np.testing.assert_allclose(mean, members, rtol=1e-6)
    np.testing.assert_allclose(std, expected, rtol=1e-4)


def test_a_file_without_training_targets_keeps_its_two_sign_error_model(tmp_path, model, data):
    graphs, y, _ = data
    old = load_model(save_model(model, tmp_path / "new.skcgcnn"))
    del old.reference_targets_, old.reference_residuals_, old.correction_
    old.error_model_ = old.error_model_[:3]
    read = load_model(save_model(old, tmp_path / "old.skcgcnn"))
    assert not hasattr(read, "reference_targets_")
    _, std = read.predict(graphs[180:], return_std=True)
    _, expected = old.predict(graphs[180:], return_std=True)
    np.testing.assert_allclose(std, expected, rtol=1e-6)
    assert np.isfinite(std).all() and len(np.unique(np.round(std, 8))) > 1
    doubts = signs_of_doubt(model, graphs[180:], y[:100], graphs[:100])[:, :2]
    np.testing.assert_allclose(std, np.exp(old.error_model_[0] + np.log(doubts) @ old.error_model_[1:]), rtol=1e-4)


@pytest.mark.parametrize("signs", [3, 5])
def test_a_file_of_an_earlier_error_model_reads_only_its_signs(tmp_path, model, data, signs):
    graphs, y, _ = data
    old = load_model(save_model(model, tmp_path / "new.skcgcnn"))
    old.error_model_ = old.error_model_[:signs + 1]
    del old.correction_  # both written before the local correction
    old.reference_residuals_ = np.abs(old.reference_residuals_)
    if signs == 5:  # written before the training residuals were stored
        del old.reference_residuals_
    read = load_model(save_model(old, tmp_path / "old.skcgcnn"))
    assert hasattr(read, "reference_residuals_") == (signs == 3)
    _, std = read.predict(graphs[180:], return_std=True)
    doubts = signs_of_doubt(model, graphs[180:], y[:100], graphs[:100])[:, :signs]
    np.testing.assert_allclose(std, np.exp(read.error_model_[0] + np.log(doubts) @ read.error_model_[1:]), rtol=1e-4)


def test_a_model_file_keeps_the_calibration_and_the_streamed_columns_agree(tmp_path, model, data):
    graphs, _, X = data
    model.card_ = {"name": "toy", "units": "eV/atom"}
    read = load_model(save_model(model, tmp_path / "toy.skcgcnn"))
    assert read.card_ == model.card_
    expected = model.predict_interval(graphs[180:], confidence_level=0.9)
    found = read.predict_interval(graphs[180:], confidence_level=0.9)
    np.testing.assert_allclose(found[1], expected[1], rtol=1e-6)

    cifs = tmp_path / "cifs"
    cifs.mkdir()
    for i, structure in enumerate(X[180:]):
        structure.to(filename=str(cifs / f"c{i:02d}.cif"))
    predict_to_csv(read, [cifs], tmp_path / "out.csv", confidence_level=0.9, report=lambda *a: None)
    table = pd.read_csv(tmp_path / "out.csv").sort_values("id")
    assert list(table.columns) == ["id", "prediction", "std", "lower_90", "upper_90", "unseen_elements"]
    pred, interval = read.predict_interval([cifs / f"{i}.cif" for i in table.id], confidence_level=0.9)
    np.testing.assert_allclose(table[["lower_90", "upper_90"]].to_numpy(), interval, rtol=1e-5, atol=1e-6)


def test_a_calibrated_classifier_gives_conformal_sets_that_survive_its_file_and_the_command_line(tmp_path, data):
    graphs, y, X = data
    labels = np.where(y < np.median(y), "deep", "shallow")
    model = CalibratedEnsembleClassifier(CGCNNClassifier(**FAST), n_estimators=2, random_state=0, n_bands=2)
    model.fit(graphs[:120], labels[:120]).calibrate(graphs[120:170], labels[120:170])
    proba, std = model.predict_proba(graphs[120:170], return_std=True)
    truth = proba[np.arange(50), np.searchsorted(model.classes_, labels[120:170])]
    spread = std[np.arange(50), proba.argmax(axis=1)]
    np.testing.assert_allclose(model.calibration_scores_, np.sort(1 - truth), rtol=1e-6)
    assert std.shape == (50, 2) and (std >= 0).all()
    unsure = spread > np.median(spread)
    assert model.band_edges_ == pytest.approx([np.median(spread)]) and unsure.sum() == 25
    for band, members in enumerate([~unsure, unsure]):
        expected = 1 - np.sort(1 - truth[members])[ceil(26 * 0.8) - 1]
        assert model.set_threshold(0.8)[band] == pytest.approx(expected)
        assert np.mean(truth[members] >= expected) >= 0.8  # the level holds within each band
    best, sets = model.predict_set(graphs[170:], confidence_level=0.8)
    proba, std = model.predict_proba(graphs[170:], return_std=True)
    band = (std[np.arange(len(proba)), proba.argmax(axis=1)] > model.band_edges_[0]).astype(int)
    top = np.eye(2, dtype=bool)[proba.argmax(axis=1)]
    np.testing.assert_array_equal(sets, top | (proba >= model.set_threshold(0.8)[band][:, None]))
    assert list(best) == list(model.predict(graphs[170:]))
    with pytest.raises(ValueError, match="labels the ensemble was not trained on"):
        model.calibrate(graphs[:3], ["deep", "deep", "medium"])
    with pytest.raises(ValueError, match="band 0 of the spread holds 25 calibration crystals, too few"):
        model.set_threshold(0.97)

    read = load_model(save_model(model, tmp_path / "clf.skcgcnn"))
    np.testing.assert_allclose(read.calibration_scores_, model.calibration_scores_)
    np.testing.assert_array_equal(read.calibration_bands_, model.calibration_bands_)
    np.testing.assert_allclose(read.set_threshold(0.8), model.set_threshold(0.8))
    content = torch.load(tmp_path / "clf.skcgcnn", weights_only=True)
    content["ensemble"]["calibration"]["calibration_bands_"][0] = 7
    torch.save(content, tmp_path / "bad.skcgcnn")
    with pytest.raises(ValueError, match="bad.skcgcnn: its calibration bands do not match"):
        load_model(tmp_path / "bad.skcgcnn")
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    for i, structure in enumerate(X[170:180]):
        structure.to(filename=str(cifs / f"c{i}.cif"))
    predict_to_csv(read, [cifs], tmp_path / "out.csv", confidence_level=0.8, report=lambda *a: None)
    table = pd.read_csv(tmp_path / "out.csv", keep_default_na=False).sort_values("id")
    assert list(table.columns) == ["id", "prediction", "proba_deep", "proba_shallow", "std", "set_80",
                                   "unseen_elements"]
    _, expected = read.predict_set([cifs / f"{i}.cif" for i in table.id], confidence_level=0.8)
    assert list(table.set_80) == ["|".join(model.classes_[row]) for row in expected]
    with pytest.raises(ValueError, match="too few for confidence_level=0.97"):
        predict_to_csv(read, [cifs], tmp_path / "high.csv", confidence_level=0.97, report=lambda *a: None)
    assert not (tmp_path / "high.csv").exists()


def test_prediction_sets_take_the_threshold_of_their_band_and_are_never_empty():
    model = CalibratedEnsembleClassifier()
    model.classes_ = np.array(["metal", "not metal"])
    # Sure band (spread <= 0.05): errors rare, its 80 % threshold high; unsure band: a second label joins easily.
    model.calibration_scores_ = np.array([0.0] * 8 + [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    model.calibration_bands_ = np.array([0] * 8 + [0, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    model.band_edges_ = np.array([0.05])
    np.testing.assert_allclose(model.set_threshold(0.8), [1.0, 1 - 0.9])
    proba = np.array([[0.55, 0.45], [0.55, 0.45], [0.95, 0.05], [0.3, 0.7]])
    std = np.array([[0.01, 0.01], [0.2, 0.2], [0.2, 0.2], [0.01, 0.01]])
    sets = model.prediction_sets(proba, std, confidence_level=0.8)
    np.testing.assert_array_equal(sets, [[True, False], [True, True], [True, False], [False, True]])
    del model.calibration_bands_, model.band_edges_  # a file written before the bands: one threshold for all
    np.testing.assert_allclose(model.set_threshold(0.8), [1 - 0.8])
    np.testing.assert_array_equal(model.prediction_sets(proba, std, 0.8), [[1, 1], [1, 1], [1, 0], [1, 1]])
    with pytest.raises(ValueError, match="n_bands must be a positive integer"):
        CalibratedEnsembleClassifier(n_bands=0).calibrate([], [])


def test_a_small_calibration_set_gets_fewer_bands(data):
    graphs, y, _ = data
    labels = np.where(y < np.median(y), "deep", "shallow")
    model = CalibratedEnsembleClassifier(CGCNNClassifier(**FAST), n_estimators=2, random_state=0)
    model.fit(graphs[:120], labels[:120]).calibrate(graphs[120:159], labels[120:159])
    assert len(model.band_edges_) == 0  # 39 crystals: one band of 20 or more
    assert model.set_threshold(0.95).shape == (1,)
    model.calibrate(graphs[120:180], labels[120:180])
    assert len(model.band_edges_) == 2 and np.bincount(model.calibration_bands_).min() >= 20


def test_calibration_needs_two_members_and_an_interval_needs_enough_crystals(model, data):
    graphs, y, _ = data
    single = CalibratedEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=1, random_state=0)
    single.fit(graphs[:40], y[:40])
    with pytest.raises(ValueError, match="two or more members"):
        single.calibrate(graphs[:40], y[:40], graphs[40:60], y[40:60], graphs[60:80], y[60:80])
    with pytest.raises(ValueError, match="too few for confidence_level=0.99"):
        model.predict_interval(graphs[:2], confidence_level=0.99)


@pytest.mark.parametrize("name", list(RELEASED))
def test_each_released_model_loads_by_name_and_gives_error_bars(name):
    from pymatgen.core import Lattice, Structure

    from skcgcnn.pretrained import load

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    model = load(name)
    if RELEASED[name].task == "classification":
        proba, std = model.predict_proba([nacl, nacl * (2, 1, 1)], return_std=True)
        labels, sets = model.predict_set([nacl, nacl * (2, 1, 1)], confidence_level=0.9)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(proba[0], proba[1], rtol=1e-5)  # the supercell is the same crystal
        assert (std >= 0).all() and not labels.any()  # rock salt is an insulator
        assert sets[:, list(model.classes_).index(False)].all()
    else:
        pred, interval = model.predict_interval([nacl, nacl * (2, 1, 1)], confidence_level=0.9)
        assert np.isfinite(pred).all() and (interval[:, 0] < pred).all() and (pred < interval[:, 1]).all()
        np.testing.assert_allclose(pred[0], pred[1], rtol=1e-5)
    assert model.card_["name"] == name and model.card_["split"]


def test_a_released_model_names_its_prediction_column_after_its_target_and_unit(tmp_path):
    from pymatgen.core import Lattice, Structure

    from skcgcnn.cli import main

    name = "mp-bulk-modulus"
    cif = tmp_path / "nacl.cif"
    Structure(Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(cif))
    assert main(["predict", name, str(cif), "-o", str(tmp_path / "p.csv")]) == 0
    columns = ["id", "log10_K_VRH (log10(GPa))", "std", "lower_90", "upper_90", "unseen_elements"]
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == columns
    assert RELEASED[name].card["target"] == "log10_K_VRH"


def test_the_released_models_fit_the_size_budget():
    total = sum(model_path(name).stat().st_size for name in RELEASED)
    assert total <= 15 * 2**20


@pytest.mark.parametrize("name", list(RELEASED)[:1])
def test_training_starts_from_a_released_model_by_name(name):
    from skcgcnn.pretrained import load

    X, y = make_ionic_crystals(24, random_state=2)
    reg = CGCNNRegressor.from_pretrained(name, max_epochs=1, lr=1e-12, optimizer__weight_decay=0.0).fit(X, y)
    first = load(name).estimators_[0].module_.state_dict()
    for key in ("embedding.weight", "convs.0.fc.weight", "conv_to_fc.weight"):
        np.testing.assert_allclose(reg.module_.state_dict()[key].numpy(), first[key].numpy(), atol=1e-6)
    assert reg.featurizer.settings == load(name).graph_settings_


def test_refitting_drops_the_calibration_of_the_earlier_members(data):
    graphs, y, _ = data
    model = CalibratedEnsembleRegressor(CGCNNRegressor(**FAST), n_estimators=2, random_state=0, n_components=4)
    model.fit(graphs[:60], y[:60]).calibrate(graphs[:60], y[:60], graphs[60:90], y[60:90], graphs[90:120], y[90:120])
    model.fit(graphs[60:120], y[60:120])
    assert not any(hasattr(model, name) for name in ("correction_", "reference_", "calibration_scores_"))
    members = np.mean([member.predict(graphs[120:]) for member in model.estimators_], axis=0)
    np.testing.assert_allclose(model.predict(graphs[120:]), members, rtol=1e-6)
    with pytest.raises(NotFittedError, match="not calibrated yet"):
        model.predict(graphs[120:], return_std=True)

    labels = np.where(y < np.median(y), "deep", "shallow")
    classifier = CalibratedEnsembleClassifier(CGCNNClassifier(**FAST), n_estimators=2, random_state=0, n_bands=1)
    classifier.fit(graphs[:60], labels[:60]).calibrate(graphs[60:120], labels[60:120])
    classifier.fit(graphs[60:120], labels[60:120])
    with pytest.raises(NotFittedError, match="not calibrated yet"):
        classifier.predict_set(graphs[120:])
