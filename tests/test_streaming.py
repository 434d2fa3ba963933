"""Prediction in chunks: flat memory, resumable after a kill, bad inputs reported with their id."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from skcgcnn import CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.cli import main
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.persistence import save_model
from skcgcnn.streaming import iter_inputs, predict_to_csv


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    X, y = make_ionic_crystals(80, random_state=6)
    reg = CGCNNRegressor(max_epochs=2, batch_size=16, atom_fea_len=16, h_fea_len=16, random_state=0).fit(X, y)
    model = save_model(reg, root / "m.skcgcnn")
    folder = root / "cifs"
    folder.mkdir()
    for i, s in enumerate(X):
        s.to(filename=str(folder / f"mp-{i:03d}.cif"))
    return reg, model, folder, X


def test_chunks_give_the_same_predictions_as_one_call(tmp_path, setup):
    reg, model, folder, X = setup
    assert main(["predict", str(model), str(folder), "-o", str(tmp_path / "p.csv"), "--chunk-size", "7"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.id) == [f"mp-{i:03d}" for i in range(80)]
    np.testing.assert_allclose(table.prediction, reg.predict(X), rtol=1e-5)
    chunks = list(iter_inputs([folder], chunk_size=32))
    assert [len(ids) for _, ids in chunks] == [32, 32, 16]


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, setup):
    reg, model, folder, X = setup
    output = tmp_path / "p.csv"
    partial = tmp_path / "p.csv.partial"
    command = [sys.executable, "-m", "skcgcnn", "predict", str(model), str(folder), "-o", str(output),
               "--chunk-size", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if partial.exists() and partial.read_text().count("\n") > 5:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists() and partial.exists()
    with open(partial, "a") as handle:
        handle.write("mp-07")  # a row cut short by the kill
    assert main(["predict", str(model), str(folder), "-o", str(output)]) == 2  # refuses to start over silently
    assert main(["predict", str(model), str(folder), "-o", str(output), "--resume"]) == 0
    table = pd.read_csv(output)
    assert list(table.id) == [f"mp-{i:03d}" for i in range(80)]  # each id once, none cut
    np.testing.assert_allclose(table.prediction, reg.predict(X), rtol=1e-5)
    assert not partial.exists()


def test_bad_inputs_stop_the_run_or_are_listed_with_their_id(tmp_path, setup, capsys):
    reg, model, folder, X = setup
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i in range(5):
        X[i].to(filename=str(mixed / f"ok-{i}.cif"))
    (mixed / "broken.cif").write_text("data_x\n_cell_length_a 4\nnot a cif\n")
    output = tmp_path / "p.csv"
    assert main(["predict", str(model), str(mixed), "-o", str(output)]) == 2
    assert not output.exists()
    assert "broken (" in capsys.readouterr().err  # named by its id, not by a position in a chunk
    assert main(["predict", str(model), str(mixed), "-o", str(output), "--on-error", "skip", "--force"]) == 0
    assert sorted(pd.read_csv(output).id) == [f"ok-{i}" for i in range(5)]
    errors = pd.read_csv(tmp_path / "p.csv.errors.csv")
    assert list(errors.id) == ["broken"] and "broken.cif" in errors.error[0]


class _Counting(CrystalGraphTransformer):
    """Records the size of every batch it featurizes."""

    sizes: list = []

    def transform(self, X):
        _Counting.sizes.append(len(X))
        return super().transform(X)


def test_no_more_than_a_chunk_is_held_at_a_time(tmp_path, setup):
    reg, _, _, X = setup
    texts = [s.to(fmt="cif") for s in X]
    path = tmp_path / "many.csv"
    pd.DataFrame({"id": [f"c{i}" for i in range(1000)], "cif": [texts[i % 80] for i in range(1000)]}).to_csv(path)
    _Counting.sizes = []
    pipe = Pipeline([("graph", _Counting()), ("cgcnn", reg)])
    counts = predict_to_csv(pipe, [path], tmp_path / "out.csv", chunk_size=150, report=lambda line: None)
    assert counts["written"] == 1000 and len(pd.read_csv(tmp_path / "out.csv")) == 1000
    assert max(_Counting.sizes) == 150 and sum(_Counting.sizes) == 1000


def test_an_ase_database_is_read_row_by_row_with_ids_from_a_key(tmp_path, setup):
    ase_db = pytest.importorskip("ase.db")
    from ase import Atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    reg, model, _, X = setup
    path = tmp_path / "candidates.db"
    with ase_db.connect(str(path)) as database:
        for i, s in enumerate(X[:30]):
            database.write(AseAtomsAdaptor.get_atoms(s), material_id=f"gen-{i}")
        database.write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), material_id="molecule")
    output = tmp_path / "p.csv"
    assert main(["predict", str(model), str(path), "-o", str(output), "--id-column", "material_id",
                 "--chunk-size", "8", "--on-error", "skip"]) == 0
    table = pd.read_csv(output)
    assert list(table.id) == [f"gen-{i}" for i in range(30)]
    np.testing.assert_allclose(table.prediction, reg.predict(X[:30]), rtol=1e-5)
    assert list(pd.read_csv(tmp_path / "p.csv.errors.csv").id) == ["molecule"]
    assert [ids[:2] for _, ids in iter_inputs([path], chunk_size=16)] == [["1", "2"], ["17", "18"]]
    with pytest.raises(ValueError, match="row 1 has no key 'mp_id'"):
        list(iter_inputs([path], id_column="mp_id"))
    (tmp_path / "broken.db").write_text("not a database")
    with pytest.raises(ValueError, match="broken.db: not a readable ASE database"):
        list(iter_inputs([tmp_path / "broken.db"]))


def _interrupted(monkeypatch, after: int):
    """Make predict_to_csv stop as on Ctrl-C once ``after`` chunks are written."""
    from skcgcnn import streaming

    original, calls = streaming._predict_chunk, []

    def chunk(*args):
        if len(calls) == after:
            raise KeyboardInterrupt
        calls.append(1)
        original(*args)

    monkeypatch.setattr(streaming, "_predict_chunk", chunk)
    return lambda: monkeypatch.setattr(streaming, "_predict_chunk", original)


def test_a_resume_continues_only_what_it_started_and_keeps_repeated_and_na_like_ids(tmp_path, setup, monkeypatch):
    reg, _, _, X = setup
    ids = ["NA", "null", "", "nan"] + [f"c{i % 30}" for i in range(56)]  # 26 ids twice
    table = pd.DataFrame({"id": ids, "cif": [s.to(fmt="cif") for s in X[:60]]})
    table.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    restore = _interrupted(monkeypatch, after=2)
    with pytest.raises(KeyboardInterrupt):
        predict_to_csv(reg, [tmp_path / "in.csv"], out, chunk_size=16, report=lambda *a: None)
    restore()
    other = CGCNNRegressor(max_epochs=1, batch_size=16, atom_fea_len=16, h_fea_len=16, random_state=1)
    other.fit(X, reg.predict(X))
    with pytest.raises(ValueError, match="was written with other model; resuming would mix"):
        predict_to_csv(other, [tmp_path / "in.csv"], out, chunk_size=16, resume=True, report=lambda *a: None)
    table.iloc[:40].to_csv(tmp_path / "fewer.csv", index=False)
    with pytest.raises(ValueError, match="was written with other inputs"):
        predict_to_csv(reg, [tmp_path / "fewer.csv"], out, chunk_size=16, resume=True, report=lambda *a: None)
    with pytest.warns(UserWarning, match="26 ids appear more than once"):
        predict_to_csv(reg, [tmp_path / "in.csv"], out, chunk_size=16, resume=True, report=lambda *a: None)
    written = pd.read_csv(out, keep_default_na=False, dtype={"id": str})
    assert list(written.id) == ids
    np.testing.assert_allclose(written.prediction, reg.predict(X[:60]), rtol=1e-5)


def test_one_writer_per_output_and_no_input_is_overwritten(tmp_path, setup):
    reg, _, folder, _ = setup
    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.lock").write_text(f"{__import__('socket').gethostname()}:{__import__('os').getpid()}")
    with pytest.raises(ValueError, match="out.csv is being written by process"):
        predict_to_csv(reg, [folder], out, report=lambda *a: None)
    (tmp_path / "out.csv.lock").unlink()
    pd.DataFrame({"id": ["a"], "cif": ["x"]}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ValueError, match="in.csv is one of the inputs"):
        predict_to_csv(reg, [tmp_path / "in.csv"], tmp_path / "in.csv", force=True, report=lambda *a: None)
    assert pd.read_csv(tmp_path / "in.csv").id.tolist() == ["a"]


def test_an_sqlite_file_that_is_not_an_ase_database_is_refused_unchanged(tmp_path, setup):
    import sqlite3

    reg = setup[0]
    db = tmp_path / "mine.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE samples (name TEXT)")
    before = db.read_bytes()
    with pytest.raises(ValueError, match="not an ASE database .*it was not changed"):
        predict_to_csv(reg, [db], tmp_path / "out.csv", report=lambda *a: None)
    assert db.read_bytes() == before
