"""Per-site contributions of a linear-pooling CGCNN (paper Fig. 3)."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Element

__all__ = ["site_contributions"]


def site_contributions(estimator, X):
    """Split every prediction of a ``pooling="linear"`` regressor into per-site contributions.

    With linear pooling the network maps each convolved atom vector to one
    value per target and the prediction is their mean over the crystal, so
    the contributions (in target units) average exactly to the prediction.

    Parameters
    ----------
    estimator : CGCNNRegressor
        Fitted with ``pooling="linear"``.
    X : CrystalGraphs or sequence of structures

    Returns
    -------
    pandas.DataFrame
        One row per site, in input order: ``crystal`` (position in ``X``),
        ``site`` (index in its structure), ``element`` (symbol) and
        ``contribution`` (or ``contribution_0``, ``contribution_1``, ... for
        several targets).

    Raises
    ------
    ValueError
        If the estimator does not use linear pooling.
    sklearn.exceptions.NotFittedError
        If it is not fitted.

    Examples
    --------
    >>> from skcgcnn import CGCNNRegressor
    >>> from skcgcnn.datasets import make_ionic_crystals
    >>> X, y = make_ionic_crystals(30, random_state=0)
    >>> reg = CGCNNRegressor(pooling="linear", max_epochs=2, random_state=0).fit(X, y)
    >>> site_contributions(reg, X[:1]).columns.tolist()
    ['crystal', 'site', 'element', 'contribution']
    """
    import pandas as pd

    graphs = estimator.featurize(X)
    if estimator.module_.pooling != "linear":
        raise ValueError(
            f"site contributions need a model fitted with pooling='linear'; this one uses "
            f"pooling={estimator.module_.pooling!r}"
        )
    sites = estimator.run_batches(graphs, "site_contributions") * estimator.y_scale_ + estimator.y_mean_
    n_atoms = graphs.n_atoms
    # One symbol lookup per distinct element, then a vectorised gather per atom.
    present, inverse = np.unique(graphs.atomic_numbers, return_inverse=True)
    symbols = np.array([Element.from_Z(int(z)).symbol for z in present], dtype=object)
    frame = pd.DataFrame({
        "crystal": np.repeat(np.arange(len(graphs)), n_atoms),
        "site": np.arange(n_atoms.sum()) - np.repeat(graphs.offsets[:-1], n_atoms),
        "element": symbols[inverse],
    })
    if sites.shape[1] == 1:
        frame["contribution"] = sites[:, 0]
    else:
        for k in range(sites.shape[1]):
            frame[f"contribution_{k}"] = sites[:, k]
    return frame
