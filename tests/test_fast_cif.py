"""The gemmi CIF path: the graphs of pymatgen's path, and pymatgen for every CIF it does not represent the same way."""

import gzip
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from skcgcnn import CrystalGraphTransformer
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.fast_cif import read_cif

pytest.importorskip("gemmi")

MIXED = Structure(Lattice.from_parameters(5.1, 5.6, 6.3, 80, 95, 112), ["Cl", "Na", "O", "Na", "Cl", "Fe"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [0, 0.5, 0], [0.5, 0, 0.5], [0.7, 0.7, 0.2]])
ROUNDED = """data_x
_symmetry_space_group_name_H-M 'P 1'
_cell_length_a 3.0
_cell_length_b 3.0
_cell_length_c 5.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 120
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Mg Mg0 0.333333 0.666667 0.25 1
  Mg Mg1 0.666667 1.333333 0.75 1
  B B2 -0.000001 0.0(1) 0.0 1.0
"""


def _same_graphs(items, **params):
    fast = CrystalGraphTransformer(cif_reader="auto", **params).transform(items)
    slow = CrystalGraphTransformer(cif_reader="pymatgen", **params).transform(items)
    for name in fast.ARRAYS:
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)


@pytest.mark.parametrize("rule", ["shared", "first"])
def test_the_fast_path_gives_the_graphs_of_pymatgens_path(rule):
    structures, _ = make_ionic_crystals(40, random_state=1)
    cifs = [str(CifWriter(s)) for s in structures] + [str(CifWriter(MIXED)), ROUNDED]
    assert all(read_cif(text) is not None for text in cifs)
    _same_graphs(cifs, nbr_rule=rule)


def test_files_are_read_by_the_fast_path_too(tmp_path):
    (tmp_path / "a.cif").write_text(str(CifWriter(MIXED)))
    with gzip.open(tmp_path / "b.cif.gz", "wt") as handle:
        handle.write(ROUNDED)
    _same_graphs([tmp_path / "a.cif", str(tmp_path / "b.cif.gz")])


def _variant(old, new):
    return ROUNDED.replace(old, new)


NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
SYMMETRIC = str(CifWriter(NACL, symprec=0.1))


@pytest.mark.parametrize("text, readable", [
    (SYMMETRIC, True),
    (_variant("B B2", "Fe2+ B2"), True),  # an oxidation state: pymatgen orders such species apart
    (_variant("B B2", "He B2"), True),  # no electronegativity: pymatgen's order is not a plain sort
    (_variant("B B2 -0.000001 0.0(1) 0.0 1.0", "B B2 -0.000001 0.0(1) 0.0 0.5"), False),  # partly occupied
    (ROUNDED + "\n" + ROUNDED.replace("data_x", "data_y"), False),  # two data blocks
    (_variant("_cell_length_c 5.0", "_cell_length_c ?"), False),
])
def test_what_the_fast_path_does_not_take_goes_to_pymatgen(text, readable):
    assert read_cif(text) is None
    if readable:
        _same_graphs([text])
    else:
        with pytest.raises(ValueError, match="input 0"):
            CrystalGraphTransformer().transform([text])


def test_a_site_listed_twice_is_refused_by_either_reader():
    twice = _variant("B B2 -0.000001 0.0(1) 0.0", "Mg B2 0.33333 0.666667 0.25")
    with pytest.raises(ValueError, match=r"input 0: atom 0 \(Mg\) and atom 2 \(Mg\) are 0.000 Å apart"):
        CrystalGraphTransformer().transform([twice])
    with pytest.raises(ValueError, match="input 0: CIF text could not be parsed"):
        CrystalGraphTransformer(cif_reader="pymatgen").transform([twice])


def test_without_gemmi_every_cif_goes_to_pymatgen(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemmi", None)
    assert read_cif(ROUNDED) is None
    _same_graphs([ROUNDED])


def test_bad_cif_text_keeps_its_message_and_the_reader_is_checked():
    with pytest.raises(ValueError, match="input 0: CIF text could not be parsed"):
        CrystalGraphTransformer().transform(["data_x\n_cell_length_a 4\n_atom_site_fract_x\n"])
    with pytest.raises(ValueError, match="cif_reader must be one of"):
        CrystalGraphTransformer(cif_reader="gemmi").transform([ROUNDED])


def test_a_folder_loaded_unparsed_gives_the_graphs_of_its_parsed_structures(tmp_path):
    from conftest import write_original_layout
    from skcgcnn.datasets import load_cgcnn_dir

    folder = write_original_layout(tmp_path / "data", *make_ionic_crystals(12, random_state=2))
    paths, y, ids = load_cgcnn_dir(folder, parse=False)
    structures, y_parsed, _ = load_cgcnn_dir(folder)
    assert paths == [str(folder / f"{i}.cif") for i in ids] and np.array_equal(y, y_parsed)
    fast = CrystalGraphTransformer().transform(paths)
    parsed = CrystalGraphTransformer().transform(structures)
    for name in fast.ARRAYS:
        np.testing.assert_array_equal(getattr(fast, name), getattr(parsed, name), err_msg=name)


def test_structures_read_by_gemmi_are_the_ones_pymatgen_reads():
    from skcgcnn.fast_cif import read_cif_structure
    from skcgcnn.structures import as_structure

    structures, _ = make_ionic_crystals(20, random_state=3)
    for text in [str(CifWriter(s)) for s in structures] + [str(CifWriter(MIXED)), ROUNDED]:
        fast, slow = read_cif_structure(text), as_structure(text, cif_reader="pymatgen")
        assert fast is not None and as_structure(text).frac_coords.tolist() == fast.frac_coords.tolist()
        np.testing.assert_array_equal(fast.lattice.matrix, slow.lattice.matrix)
        np.testing.assert_array_equal(fast.frac_coords, slow.frac_coords)
        assert [site.species for site in fast] == [site.species for site in slow] and fast.labels == slow.labels
    assert read_cif_structure(SYMMETRIC) is None
