"""
Cross-validation and a parity plot
==================================

Featurize once, then cross-validate the network on the
:class:`~skcgcnn.CrystalGraphs` container: it keeps its type through
scikit-learn's splitters, so the graphs are never rebuilt per fold.
``cross_val_predict`` gives an out-of-fold prediction for every crystal
(the paper's Fig. 2c).
"""

from sklearn.model_selection import KFold, cross_val_predict, cross_val_score

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.plotting import plot_parity

X, y = make_ionic_crystals(300, random_state=1)
graphs = CrystalGraphTransformer().transform(X)
net = CGCNNRegressor(max_epochs=25, batch_size=32, random_state=0)
cv = KFold(5, shuffle=True, random_state=0)

scores = cross_val_score(net, graphs, y, cv=cv, scoring="neg_mean_absolute_error")
print("MAE per fold (eV/atom):", (-scores).round(3))

# %%
pred = cross_val_predict(net, graphs, y, cv=cv)
ax = plot_parity(y, pred, bins=40, unit="eV/atom", label="CGCNN, 5-fold CV")
