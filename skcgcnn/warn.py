"""Warnings that point at the user's line, not at the library frames between it and the cause."""

from __future__ import annotations

import sys
import warnings

__all__ = ["warn"]

# Frames of these packages are skipped: a warning raised while scikit-learn's Pipeline or cross-validation
# calls the estimator is about the user's call of Pipeline.fit or cross_val_score.
_LIBRARIES = ("skcgcnn", "sklearn", "skorch", "joblib", "optuna", "optuna_integration", "torch", "contextlib",
              "functools")


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` at the first frame outside skcgcnn and the libraries it calls through.

    Parameters
    ----------
    message : str
    category : Warning subclass, default=UserWarning
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _LIBRARIES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1 if frame is not None else 2)
