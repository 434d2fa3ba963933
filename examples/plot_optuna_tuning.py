"""
Hyperparameter search with Optuna
=================================

:func:`skcgcnn.tuning.tune` runs an Optuna study whose trials report their
validation error after every epoch, so the pruner stops poor trials early.
The study can live in a storage shared by several processes or machines
(``storage="sqlite:///tune.db"``, ``"journal:/shared/tune.log"``, or a
PostgreSQL URL). Graphs are computed once per graph setting, not per trial.
"""

import matplotlib.pyplot as plt
import optuna
from optuna.distributions import FloatDistribution, IntDistribution

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.tuning import tune

optuna.logging.set_verbosity(optuna.logging.WARNING)
X, y = make_ionic_crystals(240, random_state=4)
graphs = CrystalGraphTransformer().transform(X)

space = {"n_conv": IntDistribution(1, 4), "lr": FloatDistribution(3e-4, 1e-2, log=True)}
best, study = tune(
    CGCNNRegressor(max_epochs=15, batch_size=32, random_state=0),
    graphs,
    y,
    search_space=space,
    n_trials=8,
    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
)
print("best parameters:", study.best_params, "validation MAE:", round(-study.best_value, 3))

# %%
# Validation error per epoch of every trial; pruned trials stop early.
fig, ax = plt.subplots()
for trial in study.trials:
    epochs, scores = zip(*sorted(trial.intermediate_values.items()))
    ax.plot(epochs, [-s for s in scores], alpha=0.7, ls="--" if trial.state.name == "PRUNED" else "-")
ax.set_xlabel("epoch")
ax.set_ylabel("validation MAE (eV/atom)")
ax.set_yscale("log")
