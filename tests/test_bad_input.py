import warnings

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
    with pytest.raises(ValueError, match="input 0: .*neither an existing file nor structure text"):
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


@pytest.mark.parametrize("params", [{"radius": 0}, {"max_num_nbr": 0}, {"step": -1}, {"dmin": 9.0}, {"radius": 1e6},
                                    {"max_num_nbr": 10**9}, {"step": 1e-6}])
def test_bad_parameters(params):
    with pytest.raises(ValueError):
        transform([GOOD], **params)


def test_atoms_at_the_same_position_name_the_input_and_the_atoms():
    twice = Structure(Lattice.cubic(4.0), ["Cu", "Au"], [[0, 0, 0], [1.0, 0, 0]])
    with pytest.raises(ValueError, match=r"input 1: atom 0 \(Cu\) and atom 1 \(Au\) are 0.000 Å apart"):
        transform([GOOD, twice])


def test_atoms_too_close_and_a_cell_smaller_than_an_atom():
    close = Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(ValueError, match=r"input 0: .* 0.200 Å apart, closer than 0.5 Å"):
        transform([close])
    with pytest.raises(ValueError, match="input 0: atom 0 .* and its own periodic image"):
        transform([Structure(Lattice.tetragonal(3.0, 0.4), ["Cu"], [[0, 0, 0]])])


def test_a_search_beyond_the_pair_budget_is_refused_before_it_starts(monkeypatch):
    import skcgcnn.graphs

    monkeypatch.setattr(skcgcnn.graphs, "MAX_PAIRS", 1000)
    big = Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]]) * (4, 4, 4)
    with pytest.raises(ValueError, match=r"input 1: a neighbour search of 64 atoms within 8 Å would find about "
                                         r"2.1e\+0?3 pairs \(more than 1e\+0?3\)"):
        transform([GOOD, big], n_jobs=1)
    transform([GOOD], n_jobs=1)


def test_a_cell_squeezed_below_any_real_crystal_is_reported_naming_the_input():
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    squeezed = Structure(Lattice.cubic(1.0), ["Na"], [[0, 0, 0]])
    with pytest.warns(UserWarning, match=r"1 of 2 structures \(input 1 first\) .* \(there 1.00 Å, 30%\)"):
        transform([nacl, squeezed])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        transform([nacl, Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]])])


@pytest.mark.parametrize("bad", ["coords", "lattice"])
def test_non_finite_geometry_is_refused_naming_the_input(bad):
    lattice = np.eye(3) * 4.0
    coords = np.zeros((1, 3))
    if bad == "coords":
        coords[0, 1] = np.nan
    else:
        lattice[2, 2] = np.inf
    structure = Structure(Lattice(lattice), ["Cu"], coords, validate_proximity=False)
    with pytest.raises(ValueError, match="input 1: the lattice or the coordinates hold NaN or infinite"):
        transform([GOOD, structure])


def test_degenerate_cell_is_refused():
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 0]]), ["Cu"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="input 0: the cell volume is 0 Å\\^3 for 1 atoms"):
        transform([flat])


@pytest.mark.parametrize("params", [{"nbr_rule": "nearest"}, {"tie_tol": -1e-3}, {"tie_tol": 0.5}])
def test_bad_neighbour_rule_parameters(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        transform([GOOD], **params)


POSCAR_FAR = """NaCl with one atom far away
1.0
5.64 0 0
0 5.64 0
0 0 5.64
Na Cl
1 1
direct
0.0 0.0 0.0
{far} 0.5 0.5
"""


def test_an_atom_far_outside_its_cell_is_refused_at_once_within_bounded_memory(tmp_path):
    import subprocess
    import sys

    (tmp_path / "POSCAR").write_text(POSCAR_FAR.format(far="1e15"))
    script = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30)); "
              "from skcgcnn import CrystalGraphTransformer; "
              f"CrystalGraphTransformer().transform([{str(tmp_path / 'POSCAR')!r}])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "atom 1 lies 1e+15 cells away from the cell" in done.stderr


def test_atoms_outside_the_cell_give_the_graph_of_the_wrapped_crystal():
    inside = Structure.from_str(POSCAR_FAR.format(far="0.5"), fmt="poscar")
    outside = Structure.from_str(POSCAR_FAR.format(far="-6.5"), fmt="poscar")
    a, b = transform([inside]), transform([outside])
    np.testing.assert_allclose(a.nbr_dist, b.nbr_dist, atol=1e-6)
    np.testing.assert_array_equal(a.nbr_idx, b.nbr_idx)


def test_structure_json_naming_a_foreign_module_is_refused_unread(tmp_path):
    import json

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    hostile = nacl.as_dict()
    hostile["@module"] = "this"  # importing it prints the Zen of Python: code run from a file
    with pytest.raises(ValueError, match="asks for the module 'this'"):
        transform([json.dumps(hostile)])
    (tmp_path / "s.json").write_text(json.dumps(hostile))
    with pytest.raises(ValueError, match="asks for the module 'this'"):
        transform([tmp_path / "s.json"])
    assert len(transform([json.dumps(nacl.as_dict())])) == 1


def test_a_parser_that_runs_away_is_stopped_naming_the_input(monkeypatch, tmp_path):
    import time

    import skcgcnn.structures

    def endless(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(skcgcnn.structures, "PARSE_TIME_LIMIT", 0.2)
    monkeypatch.setattr(Structure, "from_str", endless)
    monkeypatch.setattr(Structure, "from_file", endless)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"input 1: pymatgen's parser ran for more than 0.2 s and was stopped"):
        transform([GOOD, GOOD.to(fmt="cif")], cif_reader="pymatgen", n_jobs=1)
    GOOD.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    with pytest.raises(ValueError, match=r"input 0 \(.*POSCAR\): pymatgen's parser ran for more than 0.2 s"):
        transform([str(tmp_path / "POSCAR")], n_jobs=1)
    assert time.perf_counter() - start < 10
