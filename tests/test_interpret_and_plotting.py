import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer  # noqa: E402
from skcgcnn.plotting import (plot_calibration, plot_learning_curve, plot_parity, plot_periodic_table,  # noqa: E402
                              plot_roc, plot_training_history)

FAST = dict(max_epochs=3, batch_size=16, atom_fea_len=16, h_fea_len=16, random_state=0)


@pytest.fixture(scope="module")
def linear(ionic):
    X, y = ionic
    return CGCNNRegressor(pooling="linear", **FAST).fit(X[:50], y[:50])


def test_contributions_average_exactly_to_the_prediction(linear, ionic):
    X = ionic[0][50:70]
    sites = linear.predict_contributions(X)
    assert list(sites.columns) == ["crystal", "site", "element", "contribution"]
    assert len(sites) == sum(len(s) for s in X)
    np.testing.assert_allclose(sites.groupby("crystal").contribution.mean().to_numpy(), linear.predict(X), atol=1e-5)
    first = sites[sites.crystal == 0]
    assert list(first.element) == [site.specie.symbol for site in X[0]]
    assert list(first.site) == list(range(len(X[0])))


def test_contributions_with_two_targets(ionic):
    X, y = ionic
    Y = np.column_stack([y[:40], 2 * y[:40] + 1])
    reg = CGCNNRegressor(pooling="linear", **FAST).fit(X[:40], Y)
    sites = reg.predict_contributions(X[:5])
    means = sites.groupby("crystal")[["contribution_0", "contribution_1"]].mean().to_numpy()
    np.testing.assert_allclose(means, reg.predict(X[:5]), atol=1e-5)


def test_contributions_follow_a_site_permutation(linear, ionic):
    structure = next(s for s in ionic[0][50:] if len(s) >= 8)
    order = np.random.default_rng(0).permutation(len(structure))
    permuted = type(structure).from_sites([structure[i] for i in order])
    linear.module_.eval()
    a = linear.predict_contributions([structure]).contribution.to_numpy()
    b = linear.predict_contributions([permuted]).contribution.to_numpy()
    np.testing.assert_allclose(b, a[order], atol=1e-5)


def test_contributions_need_linear_pooling_and_a_fit(ionic):
    X, y = ionic
    with pytest.raises(NotFittedError):
        CGCNNRegressor(pooling="linear").predict_contributions(X[:2])
    mean_pooled = CGCNNRegressor(**FAST).fit(X[:30], y[:30])
    with pytest.raises(ValueError, match="pooling='linear'.*pooling='mean'"):
        mean_pooled.predict_contributions(X[:2])


def test_plot_parity_shows_every_crystal_the_diagonal_and_the_scores():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    pred = y + 0.1
    pred[7] = 16.0  # one outlier far from the rest
    fig, ax = plt.subplots()
    assert plot_parity(y, pred, ax=ax, unit="eV/atom") is ax
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["CGCNN", "y = x"]
    mae = np.mean(np.abs(y - pred))
    assert ax.get_legend().get_title().get_text().startswith(f"MAE = {mae:.3g} eV/atom\nR² = ")
    points = ax.collections[0].get_offsets()
    assert len(points) == 500 and ax.get_ylim()[1] > 16.0
    assert ax.get_xlabel() == "reference (eV/atom)"

    big = rng.normal(size=5000)
    big_pred = big + rng.normal(scale=0.1, size=5000)
    big_pred[0] = 9.0
    fig, ax = plt.subplots()
    plot_parity(big, big_pred, ax=ax)
    counts = ax.collections[0].get_array()
    image_norm = ax.collections[0].norm
    assert image_norm.vmin == 1 and counts.min() == 1  # a bin of one crystal is at the bottom of the scale,
    assert ax.collections[0].get_cmap()(0.0)[:3] != (1.0, 1.0, 1.0)  # drawn in a colour, not white
    assert fig.axes[1].get_ylabel() == "crystals per bin"
    with pytest.raises(ValueError, match="500 values but y_pred has 3"):
        plot_parity(y, [1, 2, 3])
    plt.close("all")


def test_plot_roc_reports_the_auc():
    y = np.array([0, 0, 1, 1])
    ax = plot_roc(y, np.array([[0.9, 0.1], [0.6, 0.4], [0.35, 0.65], [0.2, 0.8]]))
    assert "AUC = 1.00" in ax.get_legend().get_texts()[0].get_text()
    assert len(ax.lines) == 2  # the curve and the chance level
    plt.close("all")


def test_plot_learning_curve_uses_sklearn_learning_curve(ionic):
    X, y = ionic
    graphs = CrystalGraphTransformer().transform(X[:45])
    ax = plot_learning_curve(CGCNNRegressor(**FAST), graphs, y[:45], train_sizes=[10, 30], cv=KFold(3), reference=0.5)
    curve = ax.lines[0]
    np.testing.assert_array_equal(curve.get_xdata(), [10, 30])
    assert np.all(np.asarray(curve.get_ydata()) > 0)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.lines[-1].get_ydata()[0] == 0.5
    plt.close("all")


def test_plot_periodic_table_places_and_colours_elements():
    ax = plot_periodic_table({"Na": 1.0, 8: -1.0, "La": 0.0})
    texts = {t.get_text(): t.get_position() for t in ax.texts}
    assert len(ax.patches) == 118
    assert round(texts["Na"][1]) == 3 and round(texts["Na"][0]) == 1
    assert round(texts["La"][1]) == 8  # f-block rows sit below the main table
    assert "1.00" in texts and "-1.00" in texts
    with pytest.raises(ValueError, match="empty"):
        plot_periodic_table({})
    plt.close("all")


def test_the_training_history_draws_the_loss_and_the_held_out_error_of_each_epoch():
    history = [{"epoch": e, "train_loss": 1.0 / e, "held_out_score": -0.5 + 0.05 * e} for e in range(1, 6)]
    ax = plot_training_history(history, unit="eV")
    loss = ax.get_lines()[0]
    np.testing.assert_allclose(loss.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(loss.get_ydata(), [1.0 / e for e in range(1, 6)])
    twin = [other for other in ax.figure.axes if other is not ax][0]
    np.testing.assert_allclose(twin.get_lines()[0].get_ydata(), [0.5 - 0.05 * e for e in range(1, 6)])
    assert "eV" in twin.get_ylabel()
    plt.close("all")


def test_a_calibration_curve_of_too_narrow_error_bars_lies_below_the_diagonal():
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    ax = plot_calibration(y, np.zeros_like(y), np.full_like(y, 0.5))
    expected, observed = ax.get_lines()[0].get_data()
    assert (observed[10:-1] < expected[10:-1]).all()
    plt.close("all")


def test_the_parity_plot_names_the_quantity_labels_the_worst_crystals_and_marks_flagged_ones():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    pred = np.array([0.1, 1.0, 3.5, 3.0, 4.2])
    ax = plot_parity(y, pred, quantity="band gap", unit="eV", ids=["a", "b", "c", "d", "e"], n_labelled=2,
                     flagged=[False, False, False, False, True])
    assert ax.get_xlabel() == "reference band gap (eV)" and ax.get_ylabel() == "predicted band gap (eV)"
    assert [text.get_text() for text in ax.texts] == ["c", "e"]
    assert "elements unseen in training" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close("all")
