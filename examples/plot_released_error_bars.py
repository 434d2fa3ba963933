"""
A released model's error bars: narrow where it knows, wide where it does not
============================================================================

``mp-formation-energy``, trained by this project on Materials Project
crystals (:doc:`/released`), predicts a formation energy with a calibrated
standard deviation and a 90 % conformal interval, no training needed.

Five rock salts are built at their Materials Project (PBE) lattice
constants and then squeezed and stretched, which no DFT data set holds.
At the relaxed lattice every prediction lands within 0.05 eV/atom of the
Materials Project value and every 90 % interval holds it; the standard
deviation is 3-18 meV/atom for NaCl, KBr and LiF, which are among the
model's training crystals, and 0.05-0.08 eV/atom for CaO and MgO, which
it never trained on (they lie in its calibration and validation parts). As
the lattice moves away the error bar grows, to 1-2 eV/atom for MgO and
LiF squeezed by 10-15 %, whose predictions are far off: the user is told
to distrust exactly the predictions that deserve it.
"""

import matplotlib.pyplot as plt
import numpy as np
from pymatgen.core import Lattice, Structure

from skcgcnn import pretrained

# species, conventional lattice constant (Å) and formation energy (eV/atom) of the Materials Project entry
# (mp-22862, mp-1265, mp-23251, mp-1138, mp-2605)
ROCK_SALTS = {"NaCl": (["Na", "Cl"], 5.692, -2.105), "MgO": (["Mg", "O"], 4.257, -3.062),
              "KBr": (["K", "Br"], 6.703, -1.762), "LiF": (["Li", "F"], 4.083, -3.180),
              "CaO": (["Ca", "O"], 4.839, -3.316)}
SCALES = np.round(np.arange(0.85, 1.301, 0.05), 2)

model = pretrained.load("mp-formation-energy")
crystals = [Structure.from_spacegroup("Fm-3m", Lattice.cubic(a * s), species, [[0, 0, 0], [0.5, 0.5, 0.5]])
            for species, a, _ in ROCK_SALTS.values() for s in SCALES]
pred, std = model.predict(crystals, return_std=True)
_, interval = model.predict_interval(crystals, confidence_level=0.9)
shape = (len(ROCK_SALTS), len(SCALES))
pred, std, interval = pred.reshape(shape), std.reshape(shape), interval.reshape(*shape, 2)

relaxed = int(np.flatnonzero(SCALES == 1.0)[0])
print("crystal  Materials Project  predicted  std    90 % interval     (eV/atom, relaxed lattice)")
for k, (name, (_, _, reference)) in enumerate(ROCK_SALTS.items()):
    low, high = interval[k, relaxed]
    print(f"{name:8} {reference:17.3f}  {pred[k, relaxed]:9.3f}  {std[k, relaxed]:.3f}  [{low:.3f}, {high:.3f}]")

# %%
# Left: the prediction and its 90 % interval against the lattice constant,
# the Materials Project value as a star. Right: the standard deviation on a
# logarithmic scale, smallest at or next to the relaxed lattice of every
# salt.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
for k, (name, (_, _, reference)) in enumerate(ROCK_SALTS.items()):
    color = f"C{k}"
    left.plot(SCALES, pred[k], "o-", color=color, label=name)
    left.fill_between(SCALES, interval[k, :, 0], interval[k, :, 1], color=color, alpha=0.15)
    left.plot(1.0, reference, "*", color=color, markersize=14, markeredgecolor="black")
    right.semilogy(SCALES, std[k], "o-", color=color, label=name)
left.set_ylim(-5.5, 1.0)
left.set_xlabel("lattice constant / Materials Project's")
left.set_ylabel("formation energy (eV/atom)")
left.set_title("prediction and 90 % interval (star: Materials Project)")
left.legend(fontsize=8, loc="upper right")
right.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
right.set_xlabel("lattice constant / Materials Project's")
right.set_ylabel("calibrated std (eV/atom)")
right.set_title("the error bar grows away from known crystals")
fig.suptitle("mp-formation-energy on strained rock salts")
fig.tight_layout()
plt.show()
