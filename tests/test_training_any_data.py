"""Training works for every data set and batch size, one-atom crystals included."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals

ONE_ATOM = [Structure(Lattice.cubic(a), [el], [[0, 0, 0]]) for a, el in [(4.6, "Cs"), (3.5, "U"), (2.5, "Ni")]]
POOL = CrystalGraphTransformer().transform(ONE_ATOM + make_ionic_crystals(9, random_state=0)[0])
SMALL = dict(atom_fea_len=8, n_conv=1, h_fea_len=8, max_epochs=2)


@settings(max_examples=20, deadline=None)
@given(picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=12), batch_size=st.integers(1, 8),
       seed=st.integers(0, 3))
def test_any_data_set_and_batch_size_trains(picks, batch_size, seed):
    graphs = POOL[picks]
    y = np.random.default_rng(seed).normal(size=len(picks))
    reg = CGCNNRegressor(batch_size=batch_size, random_state=seed, **SMALL).fit(graphs, y)
    assert np.isfinite(reg.predict(graphs)).all()
