import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from skcgcnn import CrystalGraphTransformer

GOOD = Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]])


def transform(items, **kw):
    return CrystalGraphTransformer(**kw).transform(items)


def test_disordered_structure_names_its_position():
    disordered = Structure(Lattice.cubic(4.0), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="input 1: .*disordered"):
        transform([GOOD, disordered])


def test_element_absent_from_table():
    with pytest.raises(ValueError, match=r"input 1: element\(s\) Cu absent"):
        transform([Structure(Lattice.cubic(4.0), ["H"], [[0, 0, 0]]), GOOD], atom_features={1: [1.0]})


def test_unparsable_cif_file_names_the_path(tmp_path):
    bad = tmp_path / "broken.cif"
    bad.write_text("data_x\n_cell_length_a 4\nnot a cif at all\n")
    with pytest.raises(ValueError, match=r"input 1 .*broken\.cif"):
        transform([GOOD, str(bad)])


def test_unparsable_cif_text():
    with pytest.raises(ValueError, match="input 0: CIF text could not be parsed"):
        transform(["data_x\n_cell_length_a 4\n_atom_site_fract_x\n"])


def test_missing_file():
    with pytest.raises(ValueError, match="input 0: .*neither an existing file nor CIF text"):
        transform(["/nonexistent/file.cif"])


def test_object_that_is_not_a_structure():
    with pytest.raises(TypeError, match="input 2: expected a pymatgen Structure.*got int"):
        transform([GOOD, GOOD, 7])


def test_empty_input():
    with pytest.raises(ValueError, match="no structures"):
        transform([])


def test_single_structure_instead_of_a_list():
    with pytest.raises(TypeError, match="wrap it in a list"):
        transform(GOOD)


def test_structure_with_zero_sites():
    with pytest.raises(ValueError, match="input 0: the structure has no sites"):
        transform([Structure(Lattice.cubic(4.0), [], np.zeros((0, 3)))])


@pytest.mark.parametrize("params", [{"radius": 0}, {"max_num_nbr": 0}, {"step": -1}, {"dmin": 9.0}])
def test_bad_parameters(params):
    with pytest.raises(ValueError):
        transform([GOOD], **params)
