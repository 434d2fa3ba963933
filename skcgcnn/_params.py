"""What the CGCNN estimators' parameters may be: the optimizer aliases, the constraints checked at fit, the device."""

from __future__ import annotations

import os
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, Options, StrOptions

from .graphs import CrystalGraphTransformer
from .nn import POOLINGS

#: String aliases accepted for ``optimizer``; plain strings keep search spaces
#: JSON-serialisable (Optuna storages) where a class would not be.
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def check_device(device) -> None:
    """Refuse a CUDA device that this PyTorch cannot use, in one line, before any work."""
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r}, but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
            "use device='cpu' or install a CUDA build of PyTorch"
        )


def parameter_constraints() -> dict:
    """What each parameter may be, checked at ``fit`` with scikit-learn's validation and messages."""
    positive = Interval(Integral, 1, None, closed="left")
    return {
        "atom_fea_len": [positive],
        "n_conv": [positive],
        "h_fea_len": [positive],
        "n_h": [positive],
        "pooling": [StrOptions(set(POOLINGS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "featurizer": [CrystalGraphTransformer, None],
        "random_state": ["random_state"],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "pretrained": [str, os.PathLike, None],
        "target_name": [str, None],
        "target_unit": [str, None],
        "optimizer": [StrOptions(set(OPTIMIZERS)), callable],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [positive],
        "batch_size": [positive, Options(Integral, {-1})],
        "device": [str, torch.device, None],
    }
