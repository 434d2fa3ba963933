import warnings

import numpy as np
import pytest
import torch
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, mean_absolute_error
from skorch.callbacks import Checkpoint, EarlyStopping
from skorch.dataset import ValidSplit

from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer

SMALL = dict(atom_fea_len=16, n_conv=2, h_fea_len=32, batch_size=16)


@pytest.fixture(scope="module")
def split(ionic):
    X, y = ionic
    return X[:60], y[:60], X[60:], y[60:]


@pytest.fixture(scope="module")
def fitted(split):
    X, y, _, _ = split
    return CGCNNRegressor(max_epochs=40, batch_size=16, random_state=0).fit(X, y)


def test_regressor_learns_beyond_dummy(split, fitted):
    X, y, Xt, yt = split
    dummy = mean_absolute_error(yt, DummyRegressor().fit(X, y).predict(Xt))
    ours = mean_absolute_error(yt, fitted.predict(Xt))
    assert ours < 0.5 * dummy


def test_classifier_learns_beyond_dummy(split):
    X, y, Xt, yt = split
    labels, labels_t = np.where(y < -20, "low", "high"), np.where(yt < -20, "low", "high")
    clf = CGCNNClassifier(max_epochs=40, batch_size=16, random_state=0).fit(X, labels)
    dummy = accuracy_score(labels_t, DummyClassifier().fit(X, labels).predict(Xt))
    assert accuracy_score(labels_t, clf.predict(Xt)) >= dummy + 0.1
    assert list(clf.classes_) == ["high", "low"]
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(Xt))


@pytest.mark.parametrize("labels", [[0, 1, 2], [True, False, True], ["a", "b", "c"]])
def test_classifier_label_types(split, labels):
    X = split[0][:12]
    y = np.array(labels * 4)
    clf = CGCNNClassifier(max_epochs=1, random_state=0, **SMALL).fit(X, y)
    pred = clf.predict(X)
    assert pred.dtype == y.dtype and set(pred) <= set(y)
    assert clf.predict_proba(X).shape == (12, len(set(labels)))


def test_shapes_for_1d_and_2d_targets(split):
    X, y = split[0][:20], split[1][:20]
    one = CGCNNRegressor(max_epochs=1, random_state=0, **SMALL).fit(X, y)
    assert one.predict(X).shape == (20,)
    assert one.predict(X).dtype == np.float32 or one.predict(X).dtype == np.float64
    two = CGCNNRegressor(max_epochs=1, random_state=0, **SMALL).fit(X, np.c_[y, -2 * y])
    assert two.predict(X).shape == (20, 2)
    column = CGCNNRegressor(max_epochs=1, random_state=0, **SMALL).fit(X, y[:, None])
    assert column.predict(X).shape == (20, 1)
    assert one.transform(X).shape == (20, 32)


def test_targets_are_standardised_on_training_data_only(split):
    X, y = split[0][:20], split[1][:20]
    reg = CGCNNRegressor(max_epochs=1, random_state=0, **SMALL).fit(X, y)
    np.testing.assert_allclose(reg.y_mean_, [y.mean()])
    np.testing.assert_allclose(reg.y_scale_, [y.std()])
    # predictions are the network's standardised outputs mapped back per target
    targets = np.c_[y, 1000 * y + 5]
    two = CGCNNRegressor(max_epochs=1, random_state=0, **SMALL).fit(X, targets)
    raw = two.forward(CrystalGraphTransformer().transform(X)).numpy()
    np.testing.assert_allclose(two.predict(X), raw * targets.std(0) + targets.mean(0), rtol=1e-5)


def test_random_state_makes_fits_reproducible(split):
    X, y = split[0][:24], split[1][:24]
    a = CGCNNRegressor(max_epochs=3, random_state=7, **SMALL).fit(X, y).predict(X)
    b = CGCNNRegressor(max_epochs=3, random_state=7, **SMALL).fit(X, y).predict(X)
    c = CGCNNRegressor(max_epochs=3, random_state=8, **SMALL).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_graphs_and_structures_give_identical_models(split):
    X, y = split[0][:24], split[1][:24]
    featurizer = CrystalGraphTransformer(radius=6.0)
    from_structures = CGCNNRegressor(max_epochs=2, random_state=0, featurizer=featurizer, **SMALL).fit(X, y)
    graphs = featurizer.transform(X)
    from_graphs = CGCNNRegressor(max_epochs=2, random_state=0, **SMALL).fit(graphs, y)
    np.testing.assert_array_equal(from_structures.predict(graphs), from_graphs.predict(graphs))
    # raw structures at predict time are featurized with the training graphs' settings
    np.testing.assert_array_equal(from_graphs.predict(X), from_graphs.predict(graphs))
    with pytest.raises(ValueError, match="radius=8.0"):
        from_graphs.predict(CrystalGraphTransformer().transform(X))


def test_predictions_follow_input_order(fitted, split):
    X = split[2]
    full = fitted.predict(X)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(fitted.predict([X[i] for i in order]), full[order], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.r_[np.nan, np.ones(11)], "NaN or infinite"),
        (np.r_[np.inf, np.ones(11)], "NaN or infinite"),
        (np.ones(5), "12 crystals but y holds 5"),
        (np.array(["a"] * 12), "numeric"),
        (np.ones((12, 2, 2)), "1-D or 2-D"),
        (None, "needs targets"),
    ],
)
def test_bad_regression_targets(split, y, match):
    with pytest.raises(ValueError, match=match):
        CGCNNRegressor(max_epochs=1, **SMALL).fit(split[0][:12], y)


def test_bad_classification_labels(split):
    X = split[0][:12]
    with pytest.raises(ValueError, match="single class"):
        CGCNNClassifier(max_epochs=1, **SMALL).fit(X, np.zeros(12))
    with pytest.raises(ValueError, match="1-D"):
        CGCNNClassifier(max_epochs=1, **SMALL).fit(X, np.zeros((12, 2)))
    with pytest.raises(ValueError, match="NaN"):
        CGCNNClassifier(max_epochs=1, **SMALL).fit(X, np.r_[np.nan, np.arange(11.0)])


def test_not_fitted_errors(split):
    for est in (CGCNNRegressor(), CGCNNClassifier()):
        with pytest.raises(NotFittedError):
            est.predict(split[0][:2])
    with pytest.raises(AttributeError):
        CGCNNClassifier().classes_


def test_partial_fit_keeps_scaling_and_continues(split):
    X, y = split[0][:20], split[1][:20]
    reg = CGCNNRegressor(max_epochs=2, random_state=0, **SMALL)
    reg.partial_fit(X, y)
    mean = reg.y_mean_.copy()
    reg.partial_fit(X, y + 100)
    np.testing.assert_array_equal(reg.y_mean_, mean)
    assert len(reg.history) == 4
    with pytest.raises(ValueError, match="1 target"):
        reg.partial_fit(X, np.c_[y, y])


def test_validation_callbacks_do_not_crash_without_a_split(split, tmp_path):
    X, y = split[0][:20], split[1][:20]
    checkpoint = Checkpoint(dirname=str(tmp_path), monitor="valid_loss_best", f_params=None, f_optimizer=None,
                            f_criterion=None, f_history=None)
    callbacks = [EarlyStopping(patience=2), checkpoint]
    reg = CGCNNRegressor(max_epochs=3, callbacks=callbacks, random_state=0, **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg.fit(X, y)
    messages = [str(w.message) for w in caught]
    assert any("monitors 'train_loss' instead" in m for m in messages)
    assert any("monitors 'train_loss_best' instead" in m for m in messages)
    assert callbacks[0].monitor == "valid_loss"  # the user's object is left untouched
    assert len(reg.history) >= 1


def test_validation_split_reports_valid_loss(split):
    X, y = split[0][:30], split[1][:30]
    reg = CGCNNRegressor(max_epochs=2, train_split=ValidSplit(0.2, random_state=0), random_state=0, **SMALL)
    reg.fit(X, y)
    assert np.isfinite(reg.history[-1, "valid_loss"])
    clf = CGCNNClassifier(max_epochs=2, train_split=ValidSplit(0.25, random_state=0), random_state=0, **SMALL)
    clf.fit(X, y < -20)
    assert "valid_acc" in clf.history[-1]


def test_quiet_by_default_and_verbose_prints_epochs(split, capsys):
    X, y = split[0][:12], split[1][:12]
    CGCNNRegressor(max_epochs=1, **SMALL).fit(X, y)
    assert capsys.readouterr().out == ""
    CGCNNRegressor(max_epochs=1, verbose=1, **SMALL).fit(X, y)
    assert "train_loss" in capsys.readouterr().out


def test_default_schedule_anneals_the_learning_rate(split):
    X, y = split[0][:12], split[1][:12]
    reg = CGCNNRegressor(max_epochs=4, lr=0.01, **SMALL).fit(X, y)
    assert reg.optimizer_.param_groups[0]["lr"] < 0.01 * 0.2
    flat = CGCNNRegressor(max_epochs=4, lr=0.01, callbacks__lr_scheduler=None, **SMALL).fit(X, y)
    assert flat.optimizer_.param_groups[0]["lr"] == 0.01


def test_featurizer_must_be_a_transformer(split):
    with pytest.raises(TypeError, match="featurizer"):
        CGCNNRegressor(featurizer="radius=6").fit(split[0][:4], split[1][:4])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_and_predict(split):
    X, y = split[0][:24], split[1][:24]
    reg = CGCNNRegressor(max_epochs=2, device="cuda", random_state=0, **SMALL).fit(X, y)
    assert reg.predict(X).shape == (24,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_fit_leaves_the_callers_cuda_random_state_as_it_was(split):
    X, y = split[0][:24], split[1][:24]
    torch.cuda.manual_seed_all(123)
    before = torch.cuda.get_rng_state()
    CGCNNRegressor(max_epochs=1, device="cuda", random_state=0, **SMALL).fit(X, y)
    assert torch.equal(torch.cuda.get_rng_state(), before)


def test_held_out_score_restores_the_best_epoch(split):
    from skcgcnn.callbacks import HeldOutScore

    X, y, Xt, yt = split
    held_out = HeldOutScore(Xt, yt)
    reg = CGCNNRegressor(max_epochs=8, lr=0.05, callbacks=[("held_out", held_out)], random_state=0, **SMALL)
    reg.fit(X, y)
    scores = reg.history[:, "held_out_score"]
    assert len(scores) == 8 and held_out.best_score_ == max(scores)
    assert -mean_absolute_error(yt, reg.predict(Xt)) == pytest.approx(max(scores), rel=1e-5)
    with pytest.raises(ValueError, match="holds 30 crystals but 3 targets"):
        CGCNNRegressor(max_epochs=1, callbacks=[HeldOutScore(Xt, yt[:3])], **SMALL).fit(X, y)


def test_time_budget_stops_gracefully(split):
    from skcgcnn.callbacks import HeldOutScore, TimeBudget

    X, y, Xt, yt = split
    reg = CGCNNRegressor(max_epochs=30, callbacks=[TimeBudget(0.0), HeldOutScore(Xt, yt)], **SMALL).fit(X, y)
    assert len(reg.history) == 1
    assert reg.predict(Xt).shape == (len(Xt),)


def test_weight_averaging_ends_with_the_mean_of_the_last_epochs_and_fresh_batch_statistics(split):
    from skorch.callbacks import Callback

    from skcgcnn.callbacks import WeightAveraging

    class Snapshots(Callback):
        def initialize(self):
            self.taken = []
            return self

        def on_epoch_end(self, net, **kwargs):
            self.taken.append({k: v.detach().clone() for k, v in net.module_.named_parameters()})

    X, y, Xt, yt = split
    snapshots = Snapshots()
    averaging = WeightAveraging(start=0.5)
    # the snapshots are taken before the averaging callback adds the epoch
    reg = CGCNNRegressor(max_epochs=6, random_state=0, callbacks=[snapshots, averaging], **SMALL).fit(X, y)
    assert averaging.n_averaged_ == 3
    for name, p in reg.module_.named_parameters():
        expected = torch.stack([epoch[name] for epoch in snapshots.taken[3:]]).mean(dim=0)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
    plain = CGCNNRegressor(max_epochs=6, random_state=0, **SMALL).fit(X, y)
    bn = [k for k in reg.module_.state_dict() if k.endswith("running_mean")][0]
    assert not torch.equal(reg.module_.state_dict()[bn], plain.module_.state_dict()[bn])
    assert np.isfinite(reg.predict(Xt)).all()
    with pytest.raises(ValueError, match="start must lie in"):
        CGCNNRegressor(max_epochs=1, callbacks=[WeightAveraging(start=1.0)], **SMALL).fit(X, y)


def test_bfloat16_precision_learns_and_stays_close_to_float32(split):
    X, y, Xt, yt = split
    full = CGCNNRegressor(max_epochs=40, batch_size=16, random_state=0).fit(X, y)
    mixed = CGCNNRegressor(max_epochs=40, batch_size=16, random_state=0, precision="bfloat16").fit(X, y)
    dummy = mean_absolute_error(yt, DummyRegressor().fit(X, y).predict(Xt))
    assert mean_absolute_error(yt, mixed.predict(Xt)) < 0.5 * dummy
    assert np.isfinite(mixed.predict(Xt)).all()
    assert not np.array_equal(mixed.predict(Xt), full.predict(Xt))
    with pytest.raises(ValueError, match="The .precision. parameter of CGCNNRegressor must be a str among"):
        CGCNNRegressor(max_epochs=1, precision="float16", **SMALL).fit(X, y)


def test_warm_start_continues_training_and_a_cold_fit_starts_again(split):
    X, y = split[0][:24], split[1][:24]
    warm = CGCNNRegressor(max_epochs=2, warm_start=True, random_state=0, **SMALL).fit(X, y)
    first = {k: v.clone() for k, v in warm.module_.state_dict().items()}
    warm.fit(X, y)
    assert len(warm.history) == 4
    assert any(not torch.equal(first[k], v) for k, v in warm.module_.state_dict().items())
    cold = CGCNNRegressor(max_epochs=2, random_state=0, **SMALL).fit(X, y).fit(X, y)
    assert len(cold.history) == 2
