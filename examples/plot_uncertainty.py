"""
Error bars: a deep ensemble, its calibration, and conformal intervals
=====================================================================

Five networks trained from different seeds disagree most where they know
least. :class:`~skcgcnn.ensemble.CGCNNEnsembleRegressor` returns their mean
and standard deviation (``predict(X, return_std=True)``); a calibration
curve shows whether that spread can be read as a Gaussian error bar; and
split conformal intervals (:class:`~skcgcnn.uncertainty.ConformalRegressor`),
calibrated on crystals the ensemble did not see, hold the truth at least as
often as asked, whatever the model's quality: on average over calibration
sets, so that on the 100 test crystals here the share covered can fall a few
points either side of 90 %.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.ensemble import CGCNNEnsembleRegressor
from skcgcnn.plotting import plot_calibration
from skcgcnn.uncertainty import ConformalRegressor, miscalibration_area

X, y = make_ionic_crystals(500, random_state=3)
graphs = CrystalGraphTransformer().transform(X)
train, calibration, test = np.split(np.random.default_rng(0).permutation(len(y)), [300, 400])

ensemble = CGCNNEnsembleRegressor(CGCNNRegressor(max_epochs=20, batch_size=32), n_estimators=5, random_state=0)
ensemble.fit(graphs[train], y[train])
mean, std = ensemble.predict(graphs[test], return_std=True)
error = np.abs(mean - y[test])
print(f"test MAE {error.mean():.3f} eV/atom; Spearman(|error|, std) = {spearmanr(error, std).statistic:.2f}; "
      f"miscalibration area {miscalibration_area(y[test], mean, std):.2f}")

# %%
# Conformal intervals: a constant half-width, or one proportional to the spread.
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
plot_calibration(y[test], mean, std, ax=axes[0])
order = np.argsort(std)
for scaled, colour in ((False, "C1"), (True, "C2")):
    conformal = ConformalRegressor(ensemble, confidence_level=0.9, scaled=scaled)
    conformal.conformalize(graphs[calibration], y[calibration])
    _, interval = conformal.predict_interval(graphs[test])
    covered = np.mean((interval[:, 0] <= y[test]) & (y[test] <= interval[:, 1]))
    width = interval[:, 1] - interval[:, 0]
    axes[1].plot(std[order], width[order], color=colour,
                 label=f"{'scaled' if scaled else 'constant'}: coverage {covered:.0%}, mean width {width.mean():.2f}")
axes[1].scatter(std, 2 * error, s=8, color="0.5", label="2 × |error|")
axes[1].set_xlabel("ensemble standard deviation (eV/atom)")
axes[1].set_ylabel("width of the 90 % interval (eV/atom)")
axes[1].legend(loc="upper left", fontsize="small")
fig.tight_layout()
