"""Figures of the CGCNN paper: parity histogram, ROC curve, learning curve, periodic-table heat map.

Every function draws on the given matplotlib ``ax`` (a new figure when
``None``) and returns it; nothing calls ``plt.show``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_parity", "plot_roc", "plot_learning_curve", "plot_training_history", "plot_calibration",
           "plot_periodic_table"]


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _plain_log_ticks(axis) -> None:
    """Ticks of a log axis as plain numbers (1, 10, 0.5), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_parity(y_true, y_pred, ax=None, bins: int = 100, unit: str = "", label: str = "CGCNN",
                max_points: int = 2000, quantity: str = "", ids=None, n_labelled: int = 3, flagged=None):
    """Predicted against reference values with the diagonal, MAE, R² and count (paper Fig. 2c).

    Up to ``max_points`` crystals are drawn one by one; more as a 2-D
    histogram (the paper's figure) whose colour scale starts at one crystal,
    so that a lone outlier stays as visible as the dense centre.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Reference (e.g. DFT) and predicted values.
    ax : matplotlib Axes, default=None
    bins : int, default=100
        Histogram bins per axis.
    unit : str, default=""
        Unit shown in the axis labels and the MAE, e.g. ``"eV/atom"``.
    label : str, default="CGCNN"
        Legend entry of the predictions.
    max_points : int, default=2000
        Above this many crystals, the histogram is drawn.
    quantity : str, default=""
        What the values are, e.g. ``"formation energy"``, named on both axes.
    ids : sequence of str, default=None
        The crystals' ids: the ``n_labelled`` worst predicted are labelled with theirs.
    n_labelled : int, default=3
    flagged : array-like of bool, default=None
        Crystals drawn apart (open red circles), such as those holding elements the model never saw in training.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_parity([0.0, 1.0, 2.0], [0.1, 0.9, 2.2], unit="eV")
    >>> [text.get_text() for text in ax.get_legend().get_texts()]
    ['CGCNN', 'y = x']
    >>> ax.get_legend().get_title().get_text()
    'MAE = 0.133 eV\\nR² = 0.970\\nn = 3'
    """
    from matplotlib.colors import LogNorm

    y_true, y_pred = np.ravel(y_true).astype(float), np.ravel(y_pred).astype(float)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}")
    if not len(y_true) or not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("plot_parity needs finite values, at least one pair")
    ax = _axes(ax)
    low, high = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
    pad = 0.03 * (high - low or 1.0)
    edges = np.linspace(low - pad, high + pad, bins + 1)
    if len(y_true) <= max_points:
        handle = ax.scatter(y_true, y_pred, s=14, color="C0", alpha=0.7, linewidths=0, label=label)
    else:
        from matplotlib.patches import Patch

        *_, image = ax.hist2d(y_true, y_pred, bins=[edges, edges], norm=LogNorm(vmin=1), cmap="viridis", cmin=1)
        bar = ax.figure.colorbar(image, ax=ax, label="crystals per bin", shrink=0.8)
        _plain_log_ticks(bar.ax.yaxis)
        handle = Patch(color=image.get_cmap()(0.5), label=label)
    (diagonal,) = ax.plot([edges[0], edges[-1]], [edges[0], edges[-1]], "k--", lw=1, label="y = x")
    suffix = f" {unit}" if unit else ""
    mae = np.mean(np.abs(y_true - y_pred))
    spread = np.sum((y_true - y_true.mean()) ** 2)
    r2 = 1 - np.sum((y_true - y_pred) ** 2) / spread if spread > 0 else float("nan")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(edges[0], edges[-1])
    what = f" {quantity}" if quantity else ""
    ax.set_xlabel(f"reference{what}{f' ({unit})' if unit else ''}")
    ax.set_ylabel(f"predicted{what}{f' ({unit})' if unit else ''}")
    ax.set_aspect("equal")
    handles = [handle, diagonal]
    if flagged is not None and np.any(flagged):
        flagged = np.asarray(flagged, dtype=bool)
        handles.append(ax.scatter(y_true[flagged], y_pred[flagged], s=40, facecolors="none", edgecolors="C3",
                                  label="elements unseen in training"))
    if ids is not None and n_labelled:
        for k in np.argsort(-np.abs(y_true - y_pred))[:n_labelled]:
            ax.annotate(str(ids[k]), (y_true[k], y_pred[k]), xytext=(4, 4), textcoords="offset points", fontsize=8)
    # An outlier is what a reader looks for: the box goes where it hides no crystal ("best" sees points, not
    # histogram bins, so next to a histogram it goes below the axes).
    place = {"loc": "best"} if len(y_true) <= max_points else {"loc": "upper center", "bbox_to_anchor": (0.5, -0.13)}
    legend = ax.legend(handles=handles, title=f"MAE = {mae:.3g}{suffix}\nR² = {r2:.3f}\nn = {len(y_true)}",
                       framealpha=0.9, **place)
    legend.get_title().set_multialignment("left")
    return ax


def plot_roc(y_true, proba, ax=None, pos_label=None, name: str = "CGCNN"):
    """ROC curve with its area under the curve (paper Fig. 2d).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Binary labels (numbers, strings or booleans).
    proba : array-like of shape (n_samples,) or (n_samples, 2)
        Probability of ``pos_label``, or ``predict_proba`` output, whose
        columns follow the sorted labels (a classifier's ``classes_``): the
        column of ``pos_label`` is used.
    ax : matplotlib Axes, default=None
    pos_label : label, default=None
        The positive class; by default the greater of the two labels.
    name : str, default="CGCNN"

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ValueError
        If ``y_true`` does not hold exactly two labels or ``pos_label`` is not
        one of them.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_roc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> ax.get_legend().get_texts()[0].get_text()
    'CGCNN (AUC = 0.75)'
    """
    from sklearn.metrics import RocCurveDisplay

    y_true = np.asarray(y_true)
    labels = np.unique(y_true)
    if len(labels) != 2:
        raise ValueError(f"plot_roc needs two labels in y_true, found {len(labels)}: {labels.tolist()[:5]}")
    pos_label = labels[1] if pos_label is None else pos_label
    if pos_label not in labels.tolist():
        raise ValueError(f"pos_label={pos_label!r} is not one of the labels {labels.tolist()}")
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 2:
        if proba.shape[1] != 2:
            raise ValueError(f"plot_roc needs binary probabilities, got {proba.shape[1]} columns")
        proba = proba[:, labels.tolist().index(pos_label)]
    ax = _axes(ax)
    RocCurveDisplay.from_predictions(y_true, proba, pos_label=pos_label, name=name, ax=ax, plot_chance_level=True)
    ax.set_title(f"positive class: {pos_label}")
    return ax


def plot_learning_curve(
    estimator,
    X,
    y,
    train_sizes=(0.1, 0.2, 0.4, 0.7, 1.0),
    cv=5,
    scoring: str = "neg_mean_absolute_error",
    reference: float | None = None,
    reference_label: str = "DFT vs experiment",
    unit: str = "",
    n_jobs: int | None = None,
    ax=None,
):
    """Test error against the number of training crystals on log-log axes (paper Fig. 2b).

    Built on :func:`sklearn.model_selection.learning_curve`.

    Parameters
    ----------
    estimator : estimator
        E.g. a Pipeline of :class:`~skcgcnn.CrystalGraphTransformer` and a
        regressor, or a regressor fed with :class:`~skcgcnn.CrystalGraphs`.
    X, y
        Data, as for ``estimator.fit``.
    train_sizes : array-like, default=(0.1, 0.2, 0.4, 0.7, 1.0)
        Fractions (or counts) of the training folds.
    cv : int or splitter, default=5
    scoring : str, default="neg_mean_absolute_error"
        An error scorer; its negative is plotted.
    reference : float, default=None
        Draw a horizontal line at this error, e.g. the DFT-vs-experiment MAE.
    reference_label : str, default="DFT vs experiment"
    unit : str, default=""
    n_jobs : int, default=None
        Parallel fits.
    ax : matplotlib Axes, default=None

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(30, random_state=0)
    >>> graphs = CrystalGraphTransformer().transform(X)
    >>> ax = plot_learning_curve(CGCNNRegressor(max_epochs=2), graphs, y, train_sizes=[10, 20], cv=3)
    >>> ax.lines[0].get_xdata().tolist()
    [10, 20]
    """
    from sklearn.model_selection import learning_curve

    sizes, _, test_scores = learning_curve(
        estimator, X, y, train_sizes=train_sizes, cv=cv, scoring=scoring, n_jobs=n_jobs, error_score="raise"
    )
    errors = -np.asarray(test_scores)
    ax = _axes(ax)
    ax.errorbar(sizes, errors.mean(axis=1), yerr=errors.std(axis=1), marker="o", capsize=3, label="CGCNN (test)")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training crystals")
    ax.set_ylabel(f"test MAE{f' ({unit})' if unit else ''}")
    ax.legend()
    return ax


def plot_training_history(history, ax=None, score: str = "held_out_score", error_label: str = "validation MAE",
                          unit: str = "", loss_label: str = "training loss"):
    """Training loss and held-out error per epoch, the record of one fit, in two panels.

    The loss (top, log scale) is what the optimizer minimises, in its own
    units; the held-out error (bottom, linear, in the target's units) is what
    a user reads. Each has its own panel so that neither scale suggests a
    relation between the two curves' heights.

    Parameters
    ----------
    history : skorch History or list of dict
        ``net.history``, or the ``history.json`` of a run folder read back.
    ax : matplotlib Axes, default=None
        Where to draw; with a score in the history its place is split into
        the loss panel and the error panel below it.
    score : str, default="held_out_score"
        History key of a greater-is-better score (as
        :class:`~skcgcnn.callbacks.HeldOutScore` records); its negative, an
        error, is drawn in the second panel when present.
    error_label : str, default="validation MAE"
        Name of that error (``"validation log-loss"`` for a classifier's
        default score).
    unit : str, default=""
        Unit of that error, e.g. ``"eV/atom"``.
    loss_label : str, default="training loss"
        Name of the loss, e.g. ``"training loss (MSE of standardised targets)"``.

    Returns
    -------
    matplotlib Axes
        The loss panel (the error panel is ``ax.figure.axes[-1]``).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> history = [{"epoch": 1, "train_loss": 0.9, "held_out_score": -0.30},
    ...            {"epoch": 2, "train_loss": 0.5, "held_out_score": -0.21}]
    >>> ax = plot_training_history(history, unit="eV/atom")
    >>> ax.get_ylabel(), ax.figure.axes[-1].get_ylabel()
    ('training loss', 'validation MAE (eV/atom)')
    """
    rows = list(history)
    epochs = [row["epoch"] for row in rows]
    ax = _axes(ax)
    scored = bool(rows) and all(score in row for row in rows)
    if scored:
        # The given axes' place is split in two panels sharing the epochs.
        figure, place = ax.figure, ax.get_subplotspec().subgridspec(2, 1, hspace=0.1)
        ax.remove()
        ax = figure.add_subplot(place[0])
        below = figure.add_subplot(place[1], sharex=ax)
        ax.tick_params(labelbottom=False)
    ax.plot(epochs, [row["train_loss"] for row in rows], color="C0", label=loss_label)
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set_ylabel(loss_label)
    ax.set_xlabel("" if scored else "epoch")
    if scored:
        errors = -np.array([row[score] for row in rows])
        below.plot(epochs, errors, color="C1", label=error_label)
        best = int(np.argmin(errors))
        below.plot(epochs[best], errors[best], "o", color="C1", mfc="none", ms=9,
                   label=f"best epoch ({epochs[best]}: {errors[best]:.3g}{f' {unit}' if unit else ''})")
        below.set_ylabel(f"{error_label}{f' ({unit})' if unit else ''}")
        below.set_xlabel("epoch")
        below.legend(loc="upper right")
        figure.align_ylabels([ax, below])
    return ax


def plot_calibration(y_true, y_pred, y_std, ax=None, label: str = "CGCNN ensemble"):
    """Observed against expected coverage of the intervals ``y_pred ± z·y_std`` (a calibration curve).

    Parameters
    ----------
    y_true, y_pred, y_std : array-like of shape (n_samples,)
        Reference values, predictions and their standard deviations (e.g.
        ``CGCNNEnsembleRegressor.predict(X, return_std=True)``).
    ax : matplotlib Axes, default=None
    label : str, default="CGCNN ensemble"

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> y = np.random.default_rng(0).normal(size=1000)
    >>> ax = plot_calibration(y, np.zeros_like(y), np.ones_like(y))
    >>> ax.get_xlabel(), ax.get_legend().get_texts()[0].get_text()
    ('expected coverage', 'CGCNN ensemble (miscalibration area 0.01)')
    """
    from .uncertainty import calibration_curve, miscalibration_area

    expected, observed = calibration_curve(y_true, y_pred, y_std)
    area = miscalibration_area(y_true, y_pred, y_std)
    ax = _axes(ax)
    ax.plot(expected, observed, color="C0", label=f"{label} (miscalibration area {area:.2f})")
    ax.fill_between(expected, expected, observed, color="C0", alpha=0.2)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("expected coverage")
    ax.set_ylabel("observed coverage")
    ax.text(0.97, 0.03, "below the diagonal: overconfident\nabove: intervals too wide", transform=ax.transAxes,
            ha="right", va="bottom", fontsize="small", color="0.3")
    ax.legend(loc="upper left")
    return ax


def _table_position(element) -> tuple[int, int]:
    """(row, column) of an element in the 18-column table, f-block below in rows 8 and 9."""
    if element.is_lanthanoid:
        return 8, element.Z - 57 + 3
    if element.is_actinoid:
        return 9, element.Z - 89 + 3
    return element.row, element.group


def plot_periodic_table(values_by_element, ax=None, cmap: str = "coolwarm", label: str = "", fmt: str = ".2f"):
    """Heat map of a per-element quantity on the periodic table (paper Fig. 3c,d).

    Parameters
    ----------
    values_by_element : dict
        Keys are element symbols, atomic numbers or pymatgen ``Element``;
        values are floats. Elements without a value are drawn in grey.
    ax : matplotlib Axes, default=None
    cmap : str, default="coolwarm"
    label : str, default=""
        Colour-bar label.
    fmt : str, default=".2f"
        Format of the value written under each symbol.

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_periodic_table({"Ca": -1.2, "Sr": -0.8, "Ti": 0.3})
    >>> len(ax.patches)
    118
    """
    import matplotlib as mpl
    from matplotlib.patches import Rectangle
    from pymatgen.core import Element

    values = {}
    for key, value in values_by_element.items():
        if isinstance(key, Element):
            element = key
        else:
            element = Element.from_Z(int(key)) if isinstance(key, (int, np.integer)) else Element(key)
        values[element.Z] = float(value)
    if not values:
        raise ValueError("values_by_element is empty")
    ax = _axes(ax)
    finite = [v for v in values.values() if np.isfinite(v)]
    norm = mpl.colors.Normalize(min(finite), max(finite)) if finite else mpl.colors.Normalize(0, 1)
    colormap = mpl.colormaps[cmap]
    for z in range(1, 119):
        element = Element.from_Z(z)
        row, col = _table_position(element)
        value = values.get(z)
        colour = colormap(norm(value)) if value is not None and np.isfinite(value) else (0.9, 0.9, 0.9, 1.0)
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 0.95, 0.95, facecolor=colour, edgecolor="white"))
        ax.text(col - 0.03, row - 0.12, element.symbol, ha="center", va="center", fontsize=7)
        if value is not None:
            ax.text(col - 0.03, row + 0.22, format(value, fmt), ha="center", va="center", fontsize=4.5)
    ax.set_xlim(0.4, 18.6)
    ax.set_ylim(9.6, 0.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=colormap), ax=ax, label=label, shrink=0.6)
    return ax
