"""How a fitted CGCNN estimator reads inputs and runs its network: graphs, batches, precision, unseen elements."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch.utils.data import Subset

from .applicability import unseen_elements, warn_unseen
from .batching import CrystalGraphDataset
from .graphs import CrystalGraphs, CrystalGraphTransformer


class PredictingMixin:
    """The inference half of :class:`skcgcnn._net.CGCNNMixin`: everything a fitted model needs to predict."""

    def featurize(self, X) -> CrystalGraphs:
        """Crystal graphs of ``X`` as this fitted model reads them (its graph settings).

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures
            Graphs are checked against the model's settings; structures are
            featurized with them.

        Returns
        -------
        CrystalGraphs

        Raises
        ------
        sklearn.exceptions.NotFittedError
        ValueError
            If ``X`` are graphs built with other settings.
        """
        if not getattr(self, "initialized_", False) or not hasattr(self, "graph_settings_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first.")
        settings = self.graph_settings_
        if isinstance(X, Subset) and isinstance(X.dataset, CrystalGraphDataset):
            X = X.dataset.X[np.asarray(X.indices)]  # skorch's scoring callbacks pass validation subsets
        if isinstance(X, CrystalGraphs):
            if X.settings != settings:
                raise ValueError(
                    f"the model was trained on graphs built with {settings.describe()}, "
                    f"but these graphs were built with {X.settings.describe()}"
                )
            return X
        return CrystalGraphTransformer.from_settings(settings, n_jobs=getattr(self.featurizer, "n_jobs", None)
                                                     ).transform(X)

    def autocast(self):
        """Context that runs the network in the chosen ``precision`` (mixed precision for ``"bfloat16"``)."""
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        device_type = torch.device(self.device).type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def infer(self, x, **fit_params):
        with self.autocast():
            return self.module_(**x.to(self.device, non_blocking=True), **fit_params)

    def unseen_elements(self, X) -> list[list[str]]:
        """The elements of each input that the training data did not hold (its domain of applicability).

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        list of list of str
            Per input, the symbols of elements absent from the training
            crystals (empty where all were seen; empty for every input of a
            model that did not record its training elements, such as an
            imported checkpoint).

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> from skcgcnn import CGCNNRegressor
        >>> from skcgcnn.datasets import make_ionic_crystals
        >>> X, y = make_ionic_crystals(30, random_state=0)
        >>> reg = CGCNNRegressor(max_epochs=1).fit(X, y)
        >>> reg.unseen_elements([X[0], Structure(Lattice.cubic(5.5), ["Ne", "Cl"], [[0, 0, 0], [0.5] * 3])])
        [[], ['Ne']]
        """
        return unseen_elements(getattr(self, "elements_", None), self.featurize(X))

    def _forward_numpy(self, graphs: CrystalGraphs) -> np.ndarray:
        warn_unseen(unseen_elements(getattr(self, "elements_", None), graphs))
        return self.run_batches(graphs, "forward")

    def run_batches(self, graphs: CrystalGraphs, method: str) -> np.ndarray:
        """A method of the network over ``graphs``, batch by batch: the one inference loop.

        ``predict`` runs ``"forward"``, ``transform`` ``"crystal_features"``, site contributions
        ``"site_contributions"``.

        Parameters
        ----------
        graphs : CrystalGraphs
            Built with the model's settings (:meth:`featurize`).
        method : str
            The name of a method of :class:`~skcgcnn.nn.CGCNN` that takes a batch.

        Returns
        -------
        ndarray
            Its outputs in float32, concatenated along the first axis.
        """
        self.module_.eval()
        call = self.module_ if method == "forward" else getattr(self._plain_module(), method)
        with torch.no_grad(), self.autocast():
            parts = [self._gathered(call(**batch.to(self.device, non_blocking=True))).float().cpu()
                     for batch, _ in self.get_iterator(self.get_dataset(graphs), training=False)]
        return torch.cat(parts).numpy()

    def _plain_module(self) -> torch.nn.Module:
        """The network itself (a data-parallel estimator's is wrapped)."""
        return self.module_

    def _gathered(self, output: torch.Tensor) -> torch.Tensor:
        """A batch's outputs from every process (one process here: its own)."""
        return output

    def transform(self, X) -> np.ndarray:
        """Crystal feature vectors (after pooling and the first hidden layer).

        Parameters
        ----------
        X : CrystalGraphs or sequence of structures

        Returns
        -------
        ndarray of shape (n_crystals, h_fea_len)
        """
        return self.run_batches(self.featurize(X), "crystal_features")
