"""Smoke tests of the benchmark scripts: Table I on a small subset of the real data, when it is present, and
the released models' assembly on small members."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PEROV = ROOT.parent / "shared" / "data" / "perov_5" / "perov_5_val_test.csv.gz"


@pytest.mark.skipif(not PEROV.is_file(), reason="../shared/data/perov_5 is not available")
def test_table1_runs_one_epoch_on_200_perovskites(tmp_path):
    results = tmp_path / "table1.jsonl"
    subprocess.run(
        [sys.executable, "table1.py", "--task", "perovskites", "--epochs", "1", "--limit", "200",
         "--results", str(results)],
        cwd=ROOT / "benchmarks", check=True, timeout=600, capture_output=True,
    )
    record = json.loads(results.read_text().splitlines()[-1])
    assert record["task"] == "perovskites" and record["epochs"] == 1
    assert (record["n_train"], record["n_val"], record["n_test"]) == (120, 40, 40)
    assert 0 < record["test"] < 5


def test_the_data_folder_named_by_skcgcnn_data_is_the_one_read(tmp_path):
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "table1.py", "--task", "perovskites", "--epochs", "1", "--results", str(tmp_path / "r.jsonl")],
        cwd=ROOT / "benchmarks", env={**os.environ, "SKCGCNN_DATA": str(elsewhere)}, timeout=600,
        capture_output=True, text=True,
    )
    assert done.returncode == 1
    assert f"data file {elsewhere / 'perov_5' / 'perov_5_val_test.csv.gz'} not found" in done.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_the_cif_reader_comparison_finds_the_same_graphs_and_predictions(tmp_path):
    import pandas as pd
    from pymatgen.io.cif import CifWriter

    from skcgcnn.datasets import make_ionic_crystals

    structures, _ = make_ionic_crystals(24, random_state=5)
    data = tmp_path / "toy" / "toy.csv"
    data.parent.mkdir()
    pd.DataFrame({"id": [f"c{i}" for i in range(24)], "cif": [str(CifWriter(s)) for s in structures]}).to_csv(data)
    results = tmp_path / "cif_paths.jsonl"
    subprocess.run([sys.executable, "cif_paths.py", "--data", str(data), "--chunk", "10", "--results", str(results)],
                   cwd=ROOT / "benchmarks", check=True, timeout=600, capture_output=True)
    record = json.loads(results.read_text().splitlines()[-1])
    assert record["data"] == "toy" and record["n"] == 24 and record["fast_path"] == 24
    for rule in ("shared", "first"):
        assert record[rule]["chunks_identical"] == "3 of 3"
        assert record[rule]["max_distance_difference"] == 0 and record[rule]["max_relative_prediction_difference"] == 0


@pytest.mark.parametrize("classification", [False, True])
def test_release_assembly_ships_calibrated_ensembles_it_reads_back(classification, ionic_graphs, tmp_path, monkeypatch):
    """What ``release.py`` runs once members exist, on small members: the file as read back is what is scored."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import release

    from skcgcnn import CGCNNClassifier, CGCNNRegressor
    from skcgcnn.persistence import load_model

    from conftest import FAST

    graphs, y, _ = ionic_graphs
    y = y > np.median(y) if classification else y
    parts = dict(zip(release.PARTS, np.array_split(np.arange(len(y)), [120, 160, 200])))
    by_part = {name: (graphs[rows], y[rows]) for name, rows in parts.items()}
    cls = CGCNNClassifier if classification else CGCNNRegressor
    members = [cls(**FAST, random_state=seed).fit(*by_part["train"]) for seed in (0, 1)]
    if classification:
        _, scores = release._score_classifier(members, by_part, tmp_path / "m.skcgcnn")
    else:
        _, scores = release._score_regressor(members, by_part, tmp_path / "m.skcgcnn", n_components=4)
    model = load_model(tmp_path / "m.skcgcnn")
    assert len(model.estimators_) == 2
    assert 0 <= scores["coverage_90"] <= 1 and len(scores["coverage_90_by_fifth_of_std"]) == 5
    if classification:
        assert 0 <= scores["roc_auc"] <= 1 and 1 <= scores["set_size_90_mean"] <= 2
    else:
        assert scores["mae"] > 0 and scores["width_90_mean"] > 0
        assert model.reference_.shape == (120, 4)


def test_original_agreement_reads_each_reference_row_with_its_own_crystal(tmp_path):
    """A reference file holding exactly what the models predict here: every difference must come out 0."""
    import warnings

    import pandas as pd

    from skcgcnn.pretrained import MODELS, load

    crystals = pd.read_csv(ROOT / "tests" / "data" / "real_crystals.csv", dtype={"id": str})
    # each data set's rows in reverse: a join by position instead of by id would pair rows with other crystals
    for name, path in (("mp_cgcnn_36737", "mp_cgcnn_36737/mp_cgcnn_36737.csv.gz"),
                       ("perov_5", "perov_5/perov_5_val_test.csv.gz")):
        (tmp_path / "data" / path).parent.mkdir(parents=True)
        crystals[crystals.dataset == name][["id", "cif"]][::-1].to_csv(tmp_path / "data" / path, index=False)
    reference = crystals[["dataset", "id", "tie_at_12th"]].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, entry in MODELS.items():
            model = load(name)
            reference[name] = (model.predict_proba(crystals.cif.tolist())[:, 1] if entry.task == "classification"
                               else model.predict(crystals.cif.tolist()))
    (tmp_path / "pretrained").mkdir()
    reference.to_csv(tmp_path / "pretrained" / "reference_predictions.csv", index=False)
    results = tmp_path / "agreement.jsonl"
    subprocess.run([sys.executable, "original_agreement.py", "--results", str(results)], cwd=ROOT / "benchmarks",
                   env={**os.environ, "SKCGCNN_DATA": str(tmp_path / "data")}, check=True, timeout=600,
                   capture_output=True)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["model"] for r in records] == list(MODELS)
    for r in records:
        assert (r["rows"], r["tied"]) == (len(crystals), int(crystals.tie_at_12th.sum()))
        assert r["max_difference_no_tie"] <= 1e-5 and r["max_difference_tied"] <= 1e-5 and r["rows_beyond_1e_4"] == 0
        assert r["shared_supercell_2x1x1_max_change"] <= 1e-4 and r["shared_sites_reversed_max_change"] <= 1e-4


def test_unseen_band_gap_leaves_out_the_listed_crystals_and_their_copies(tmp_path):
    import warnings

    import pandas as pd

    from skcgcnn.pretrained import load

    crystals = pd.read_csv(ROOT / "tests" / "data" / "real_crystals.csv", dtype={"id": str})
    table = crystals[crystals.dataset == "mp_cgcnn_36737"][["id", "cif"]].reset_index(drop=True)
    table["band_gap"] = [1.5, 2.0, 0.0, 0.0, 0.3, 1.0, 2.5, 0.2]
    table["in_cgcnn_bandgap_ids"] = [1, 1, 1, 0, 0, 0, 0, 0]
    copy = table.iloc[[0]].assign(id="copy-of-a-listed-crystal", band_gap=0.4, in_cgcnn_bandgap_ids=0)
    table = pd.concat([copy, table[::-1]], ignore_index=True)
    path = tmp_path / "data" / "mp_cgcnn_36737" / "mp_cgcnn_36737.csv.gz"
    path.parent.mkdir(parents=True)
    table.to_csv(path, index=False)
    results = tmp_path / "unseen.jsonl"
    subprocess.run([sys.executable, "unseen_band_gap.py", "--n-jobs", "1", "--results", str(results)],
                   cwd=ROOT / "benchmarks", env={**os.environ, "SKCGCNN_DATA": str(tmp_path / "data")}, check=True,
                   timeout=600, capture_output=True)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["n"] for r in records] == [4, 2, 1, 1]  # all, below 0.5 eV, 0.5-2 eV, from 2 eV
    assert records[0]["left_out_as_copies_of_listed"] == 1
    unseen = table[(table.in_cgcnn_bandgap_ids == 0) & (table.band_gap > 0) & (table.id != "copy-of-a-listed-crystal")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        released = load("mp-band-gap").predict(unseen.cif.tolist())
        old = load("band-gap").predict(unseen.cif.tolist())
    assert records[0]["mae_released"] == pytest.approx(np.mean(np.abs(released - unseen.band_gap)), abs=1e-3)
    assert records[0]["mae_2018_model"] == pytest.approx(np.mean(np.abs(old - unseen.band_gap)), abs=1e-3)
