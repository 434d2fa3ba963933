"""skcgcnn: Crystal Graph Convolutional Neural Networks with a scikit-learn interface."""

from .elements import ATOM_FEATURE_SETS, AtomFeatures
from .estimators import CGCNNClassifier, CGCNNRegressor
from .graphs import CrystalGraphs, CrystalGraphTransformer, GraphSettings

__version__ = "0.1.0"

__all__ = [
    "ATOM_FEATURE_SETS",
    "AtomFeatures",
    "CGCNNClassifier",
    "CGCNNRegressor",
    "CrystalGraphs",
    "CrystalGraphTransformer",
    "GraphSettings",
]
