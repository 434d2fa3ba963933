"""
Site contributions with linear pooling
======================================

With ``pooling="linear"`` every prediction is the mean of per-site
contributions (the paper's Fig. 3). Trained on total energies only, the
model assigns an energy to every site; averaging the contributions of the
A and B sites of the perovskites per element gives periodic-table maps.
"""

import matplotlib.pyplot as plt

from skcgcnn import CGCNNRegressor
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.plotting import plot_periodic_table

X, y = make_ionic_crystals(400, random_state=5)
reg = CGCNNRegressor(pooling="linear", max_epochs=40, batch_size=32, random_state=0).fit(X, y)
sites = reg.predict_contributions(X)
print(sites.head())

# %%
# The generated perovskites are ABO3 cells with A at site 0 and B at site 1.
perovskites = [k for k, s in enumerate(X) if len(s) == 5 and s[2].specie.symbol == "O"]
chosen = sites[sites.crystal.isin(perovskites)]
a_site = chosen[chosen.site == 0].groupby("element").contribution.mean()
b_site = chosen[chosen.site == 1].groupby("element").contribution.mean()
fig, (ax_a, ax_b) = plt.subplots(2, 1, figsize=(8, 8))
plot_periodic_table(a_site.to_dict(), ax=ax_a, label="A-site contribution (eV/atom)")
plot_periodic_table(b_site.to_dict(), ax=ax_b, label="B-site contribution (eV/atom)")
