"""Inputs checked at the door: parameters, targets, files, structure text, and elements never seen in training."""

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import IStructure, Lattice, Structure

from conftest import write_original_layout
from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.cli import main
from skcgcnn.datasets import load_cgcnn_dir, load_csv, make_ionic_crystals
from skcgcnn.persistence import load_model, save_model

FAST = dict(max_epochs=1, batch_size=16, atom_fea_len=8, h_fea_len=8, n_conv=1, random_state=0)
NACL = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def data():
    return make_ionic_crystals(24, random_state=1)


@pytest.mark.parametrize("param, value, allowed", [
    ("max_epochs", 0, "an int in the range [1, inf)"),
    ("n_conv", 0, "an int in the range [1, inf)"),
    ("h_fea_len", 0, "an int in the range [1, inf)"),
    ("atom_fea_len", 0, "an int in the range [1, inf)"),
    ("batch_size", 0, "an int in the range [1, inf)"),
    ("lr", -0.1, "a float in the range (0.0, inf)"),
    ("dropout", 1.0, "a float in the range [0.0, 1.0)"),
    ("pooling", "median", "a str among"),
    ("optimizer", "lbfgs", "a str among"),
])
@pytest.mark.parametrize("cls", [CGCNNRegressor, CGCNNClassifier])
def test_parameters_are_checked_at_fit_naming_the_allowed_range(cls, param, value, allowed, data):
    X, y = data
    with pytest.raises(ValueError, match=rf"The '{param}' parameter of {cls.__name__} must be .*"):
        try:
            cls(**{**FAST, param: value}).fit(X, y > np.median(y) if cls is CGCNNClassifier else y)
        except ValueError as exc:
            assert allowed in str(exc)
            raise


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_a_cuda_request_without_cuda_is_refused_in_one_line(data, tmp_path, capsys):
    X, y = data
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        CGCNNRegressor(device="cuda", **FAST).fit(X, y)
    folder = write_original_layout(tmp_path / "d", X, y)
    assert main(["fit", str(folder), "--device", "cuda", "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sees no CUDA GPU" in err and "Traceback" not in err


def test_sample_weight_is_refused_with_a_clear_message(data):
    X, y = data
    with pytest.raises(TypeError, match="does not take sample_weight"):
        CGCNNRegressor(**FAST).fit(X, y, sample_weight=np.ones(len(y)))


def _layout(folder, data, lines):
    structures, _ = data
    folder.mkdir()
    for i in range(3):
        structures[i].to(filename=str(folder / f"mp-{i}.cif"))
    (folder / "id_prop.csv").write_bytes(lines)


def test_id_prop_targets_and_encodings_are_checked(tmp_path, data):
    _layout(tmp_path / "nan", data, b"mp-0,1.0\nmp-1,nan\nmp-2,2.0\n")
    with pytest.raises(ValueError, match=r"id_prop.csv, line 2: id 'mp-1' has a NaN or infinite target"):
        load_cgcnn_dir(tmp_path / "nan")
    _layout(tmp_path / "bom", data, "\ufeffmp-0,1.0\nmp-1,0.5\nmp-2,2.0\n".encode())
    assert load_cgcnn_dir(tmp_path / "bom")[2][0] == "mp-0"
    _layout(tmp_path / "latin", data, "mp-0,1.0\nmp-1,0.5\nmp-2,2.0 # \xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.id_prop.csv: not UTF-8 text \(byte 0xe9 at offset"):
        load_cgcnn_dir(tmp_path / "latin")


def test_csv_targets_with_units_or_infinities_are_refused(tmp_path, data):
    structures, _ = data
    cifs = [s.to(fmt="cif") for s in structures[:3]]
    path = tmp_path / "gaps.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "cif": cifs, "gap": ["0.039 eV", "1.2 eV", "3 eV"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="column 'gap' holds numbers with units \\(e.g. '0.039 eV'\\)"):
        load_csv(path, target="gap", parse=False)
    pd.DataFrame({"id": ["a", "b", "c"], "cif": cifs, "gap": [0.1, np.inf, 2.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="infinite target, first id 'b'"):
        load_csv(path, target="gap", parse=False)
    pd.DataFrame({"id": ["a", "b", "c"], "cif": cifs, "kind": ["metal", "insulator", "metal"]}).to_csv(path)
    assert list(load_csv(path, target="kind", parse=False)[1]) == ["metal", "insulator", "metal"]


def test_structure_text_istructure_and_cells_are_read_or_refused_on_purpose():
    texts = [NACL.to(fmt="poscar"), NACL.to(fmt="json")]
    graphs = CrystalGraphTransformer().transform([*texts, IStructure.from_sites(NACL)])
    assert list(graphs.n_atoms) == [2, 2, 2]
    two_blocks = NACL.to(fmt="cif") + "\n" + NACL.to(fmt="cif")
    with pytest.raises(ValueError, match="input 1: the CIF holds 2 structures"):
        CrystalGraphTransformer().transform([NACL, two_blocks])
    flat = "Na\n1.0\n4 0 0\n0 4 0\n0 0 0\nNa\n1\ndirect\n0 0 0 Na\n"
    with pytest.raises(ValueError, match="input 0: the cell volume is 0"):
        CrystalGraphTransformer().transform([flat])
    from ase import Atoms

    with pytest.raises(ValueError, match=r"input 0: the ASE Atoms \(ClNa\) has no three-dimensional cell"):
        CrystalGraphTransformer().transform([Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]])])


def test_a_prediction_folder_reads_every_structure_format_and_lists_what_it_skipped(tmp_path, capsys):
    folder = tmp_path / "cifs"
    folder.mkdir()
    with gzip.open(folder / "mp-1.cif.gz", "wt") as handle:
        handle.write(NACL.to(fmt="cif"))
    (folder / "mp-2.json").write_text(NACL.to(fmt="json"))
    NACL.to(filename=str(folder / "POSCAR_mp-3"), fmt="poscar")
    (folder / "notes.txt").write_text("not a structure")
    (folder / "sub").mkdir()
    out = tmp_path / "p.csv"
    assert main(["predict", "formation-energy-per-atom", str(folder), "-o", str(out)]) == 0
    assert "skipped 2 entries that are not structure files: notes.txt, sub/" in capsys.readouterr().out
    assert sorted(pd.read_csv(out).id) == ["POSCAR_mp-3", "mp-1", "mp-2"]


def test_elements_never_seen_in_training_are_flagged(tmp_path, data):
    X, y = data
    reg = CGCNNRegressor(**FAST).fit(X, y)
    assert set(reg.elements_) == {site.specie.Z for s in X for site in s}
    necl = Structure(Lattice.cubic(5.5), ["Ne", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.warns(UserWarning, match=r"1 of 3 inputs hold elements absent from the training data \(Ne\)"):
        reg.predict([X[0], necl, X[1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.predict(X[:3])
    path = save_model(reg, tmp_path / "m.skcgcnn")
    assert load_model(path).unseen_elements([necl, X[0]]) == [["Ne"], []]

    folder = tmp_path / "new"
    folder.mkdir()
    X[0].to(filename=str(folder / "known.cif"))
    necl.to(filename=str(folder / "necl.cif"))
    out = tmp_path / "p.csv"
    assert main(["predict", str(path), str(folder), "-o", str(out)]) == 0
    table = pd.read_csv(out, keep_default_na=False).set_index("id")
    assert table.unseen_elements.to_dict() == {"known": "", "necl": "Ne"}
    assert main(["predict", str(path), str(folder), "-o", str(tmp_path / "q.csv"), "--strict"]) == 2
    assert list(pd.read_csv(tmp_path / "q.csv").id) == ["known"]
    refused = pd.read_csv(tmp_path / "q.csv.errors.csv")
    assert refused.to_dict("records") == [{"id": "necl", "error": "elements absent from the model's training data: Ne"}]
