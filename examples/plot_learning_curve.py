"""
Learning curve
==============

Test error against the number of training crystals on log-log axes, as in
the paper's Fig. 2b, with a reference error drawn as a horizontal line
(there, the DFT-vs-experiment MAE). Built on scikit-learn's
``learning_curve``.
"""

from sklearn.model_selection import KFold

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.plotting import plot_learning_curve

X, y = make_ionic_crystals(240, random_state=3)
graphs = CrystalGraphTransformer().transform(X)
ax = plot_learning_curve(
    CGCNNRegressor(max_epochs=20, batch_size=32, random_state=0),
    graphs,
    y,
    train_sizes=[40, 80, 160],
    cv=KFold(3, shuffle=True, random_state=0),
    reference=0.5,
    reference_label="an illustrative target error",
    unit="eV/atom",
)
