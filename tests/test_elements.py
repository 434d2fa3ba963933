import json

import numpy as np
import pytest

from skcgcnn.elements import ATOM_FEATURE_SETS, AtomFeatures


def test_cgcnn_table_is_92_wide_one_hot_for_z_1_to_100():
    feats = AtomFeatures.from_spec("cgcnn")
    assert feats.n_features == 92
    assert feats.known[1:101].all() and not feats.known[101:].any() and not feats.known[0]
    table = feats.table[1:101]
    assert set(np.unique(table)) <= {0.0, 1.0}
    # group and period are always present: exactly one entry in each of those blocks
    assert (table[:, :19].sum(1) == 1).all() and (table[:, 19:26].sum(1) == 1).all()
    assert np.isfinite(feats.table).all()


def test_group_period_is_the_first_26_columns_of_cgcnn():
    cgcnn = AtomFeatures.from_spec("cgcnn")
    gp = AtomFeatures.from_spec("group_period")
    np.testing.assert_array_equal(gp.table, cgcnn.table[:, :26])


def test_onehot_identifies_each_element():
    table = AtomFeatures.from_spec("onehot").table
    np.testing.assert_array_equal(table[1:101], np.eye(100))


def test_lanthanides_share_the_19th_group_category():
    table = AtomFeatures.from_spec("cgcnn").table
    assert table[57, 18] == 1 and table[64, 18] == 1 and table[26, 18] == 0


def test_dict_and_atom_init_json(tmp_path):
    mapping = {"1": [0, 1], "8": [1, 0]}
    path = tmp_path / "atom_init.json"
    path.write_text(json.dumps(mapping))
    from_file = AtomFeatures.from_spec(path)
    from_dict = AtomFeatures.from_spec({1: [0, 1], 8: [1, 0]})
    assert from_file == from_dict
    assert from_file.known[[1, 8]].all() and from_file.known.sum() == 2


@pytest.mark.parametrize(
    "spec, error",
    [("nope", ValueError), (3, TypeError), ({}, ValueError), ({"1": [0, 1], "2": [1]}, ValueError),
     ({"x": [1]}, ValueError), ({"1": [float("nan")]}, ValueError)],
)
def test_bad_specs_raise(spec, error):
    with pytest.raises(error):
        AtomFeatures.from_spec(spec)


def test_documented_names():
    assert set(ATOM_FEATURE_SETS) == {"cgcnn", "group_period", "onehot", "cgcnn_original"}


def test_original_table_is_the_released_models_input():
    original, ours = AtomFeatures.from_spec("cgcnn_original"), AtomFeatures.from_spec("cgcnn")
    assert original.n_features == 92 and np.flatnonzero(original.known).tolist() == list(range(1, 101))
    # the same categories, one-hot, but binned from other element data than pymatgen's
    np.testing.assert_array_equal(np.unique(original.table), [0.0, 1.0])
    assert original != ours


def test_a_models_atom_table_is_its_own_copy_and_the_shared_tables_are_read_only():
    from skcgcnn.nn import CGCNN

    shared = AtomFeatures.from_spec("cgcnn")
    before = shared.table.copy()
    module = CGCNN(shared.table)
    module.atom_table.add_(1.0)  # in place, as an optimizer or a user could
    assert np.array_equal(AtomFeatures.from_spec("cgcnn").table, before)
    with pytest.raises(ValueError, match="read-only"):
        shared.table[8, 0] = 5.0
