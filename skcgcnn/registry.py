"""The released models by name: what each predicts, in which units, from which data, and where its file lies.

This module holds facts only (no model is built here), so every other part of
the package may consult it.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["PretrainedModel", "ReleasedModel", "MODELS", "RELEASED", "model_path", "source_path"]

_MP = "Materials Project (Jain et al., APL Mater. 1, 011002, 2013)"
_PAPER = "Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018)"


@dataclass(frozen=True)
class PretrainedModel:
    """One released model of the original CGCNN code.

    Parameters
    ----------
    name : str
        Its name here (the checkpoint's file name without ``.pth.tar``).
    property : str
        What it predicts.
    units : str
    task : {"regression", "classification"}
    n_train : int
        Training crystals.
    validation_score : float
        Best validation MAE (in ``units``) or, for the classifier, ROC-AUC, as stored in the checkpoint.
    data : str
        Source of the training data.
    reference : str
        The publication to cite.
    """

    name: str
    property: str
    units: str
    task: str
    n_train: int
    validation_score: float
    data: str = _MP
    reference: str = _PAPER

    @property
    def metric(self) -> str:
        """``"MAE"`` or ``"ROC-AUC"``."""
        return "ROC-AUC" if self.task == "classification" else "MAE"


#: The models released with the original code, by name.
MODELS = {m.name: m for m in [
    PretrainedModel("formation-energy-per-atom", "formation energy", "eV/atom", "regression", 28046, 0.03972),
    PretrainedModel("final-energy-per-atom", "absolute (final) energy", "eV/atom", "regression", 28046, 0.07929),
    PretrainedModel("band-gap", "band gap", "eV", "regression", 16458, 0.36897),
    PretrainedModel("efermi", "Fermi energy", "eV", "regression", 28046, 0.35514),
    PretrainedModel("bulk-moduli", "bulk modulus", "log10(GPa)", "regression", 2041, 0.05528),
    PretrainedModel("shear-moduli", "shear modulus", "log10(GPa)", "regression", 2041, 0.09075),
    PretrainedModel("poisson-ratio", "Poisson ratio", "-", "regression", 2041, 0.02931),
    PretrainedModel("semi-metal-classification", "metal (class 1) or semiconductor (class 0)", "probability",
                    "classification", 37394, 0.95860),
]}


@dataclass(frozen=True)
class ReleasedModel:
    """One model trained and released by this project: a calibrated ensemble with its card.

    Parameters
    ----------
    name : str
    property : str
        What it predicts.
    units : str
    task : {"regression", "classification"}
    n_train : int
        Training crystals.
    test : dict
        Scores on its own test crystals (``mae``, ``spearman_error_std``, ``coverage_90``, ...).
    data : str
        Source of the training data.
    card : dict
        Everything the model card says: split file, recipe, licence and citation of the data.
    """

    name: str
    property: str
    units: str
    task: str
    n_train: int
    test: dict = field(hash=False)
    data: str
    card: dict = field(hash=False, repr=False)

    @property
    def metric(self) -> str:
        """``"MAE"`` or ``"ROC-AUC"``."""
        return "ROC-AUC" if self.task == "classification" else "MAE"

    @property
    def test_score(self) -> float:
        """Test MAE (in ``units``) or ROC-AUC."""
        return self.test["roc_auc" if self.task == "classification" else "mae"]


def _released() -> dict[str, ReleasedModel]:
    cards = json.loads(resources.files("skcgcnn.data").joinpath("released", "cards.json").read_text())
    return {name: ReleasedModel(name, c["property"], c["units"], c["task"], c["n_train"], c["test"], c["data"], c)
            for name, c in cards.items()}


#: The models trained and released by this project, by name (cards in ``skcgcnn/data/released/cards.json``).
RELEASED = _released()


def model_path(name: str) -> Path:
    """Where the file of a released model (2018 or this project's) lies in the installed package."""
    data = resources.files("skcgcnn.data")
    if name in RELEASED:
        return Path(str(data.joinpath("released", f"{name}.skcgcnn")))
    if name not in MODELS:
        names = [*RELEASED, *MODELS]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"unknown pretrained model {name!r}; {hint}'skcgcnn models' lists them all: "
                         f"{', '.join(names)}")
    return Path(str(data.joinpath("pretrained", f"{name}.pth.tar")))


def source_path(name_or_path) -> Path:
    """The checkpoint file of a released model's name, or the path itself."""
    if isinstance(name_or_path, str) and name_or_path in MODELS:
        return model_path(name_or_path)
    return Path(name_or_path)
