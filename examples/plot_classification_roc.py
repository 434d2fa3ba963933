"""
Classification and the ROC curve
================================

The paper classifies metals and semiconductors with the same network and a
cross-entropy loss (Fig. 2d). Here the generated crystals are split into
strongly and weakly bound ones by their Ewald energy; labels may be strings,
booleans or integers.
"""

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from skcgcnn import CGCNNClassifier, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.plotting import plot_roc

X, energy = make_ionic_crystals(300, random_state=2)
labels = np.where(energy < np.median(energy), "strongly bound", "weakly bound")
X_train, X_test, y_train, y_test = train_test_split(X, labels, test_size=0.3, random_state=0, stratify=labels)

clf = Pipeline([
    ("graph", CrystalGraphTransformer()),
    ("cgcnn", CGCNNClassifier(max_epochs=30, batch_size=32, random_state=0)),
]).fit(X_train, y_train)
print("classes:", clf.classes_, "accuracy:", round(clf.score(X_test, y_test), 3))

# %%
ax = plot_roc(y_test, clf.predict_proba(X_test), pos_label="weakly bound")
