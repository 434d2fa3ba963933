"""
Quickstart: a CGCNN in a scikit-learn Pipeline
==============================================

Turn crystal structures into crystal graphs, fit a CGCNN regressor and
score it, exactly as with any scikit-learn model. The structures are
generated ionic crystals labelled with their Ewald (electrostatic) energy
per atom, computed by pymatgen.
"""

from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.plotting import plot_parity

X, y = make_ionic_crystals(300, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

pipe = Pipeline([
    ("graph", CrystalGraphTransformer()),
    ("cgcnn", CGCNNRegressor(max_epochs=30, batch_size=32, random_state=0)),
])
pipe.fit(X_train, y_train)
print(f"R^2 on the test set: {pipe.score(X_test, y_test):.3f}")

# %%
# Predicted against reference energies:
ax = plot_parity(y_test, pipe.predict(X_test), bins=30, unit="eV/atom")
