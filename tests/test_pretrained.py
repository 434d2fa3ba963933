"""The original CGCNN's checkpoints as fitted estimators, written back, and trained on."""

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from pymatgen.core import Structure
from skorch.callbacks import Freezer

from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer
from skcgcnn.cli import main
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.pretrained import MODELS, load, load_checkpoint, model_path, read_checkpoint, save_checkpoint
from skcgcnn.registry import RELEASED

REFERENCE_CSV = Path(__file__).parent / "data" / "reference_predictions_no_tie.csv"
REFERENCE = pd.read_csv(REFERENCE_CSV)


@pytest.fixture(scope="module")
def crystals():
    return make_ionic_crystals(40, random_state=3)


@pytest.mark.parametrize("name", list(MODELS))
def test_registry_agrees_with_the_shipped_checkpoints(name):
    checkpoint = read_checkpoint(model_path(name))
    entry = MODELS[name]
    assert checkpoint["args"]["task"] == entry.task
    assert float(checkpoint["best_mae_error"]) == pytest.approx(entry.validation_score, abs=1e-5)
    assert checkpoint["args"]["train_size"] == entry.n_train


@pytest.mark.parametrize("name", list(MODELS))
def test_predictions_agree_with_the_original_code_where_no_shell_is_tied(name):
    model = load(name)
    if MODELS[name].task == "classification":
        assert model.classes_.tolist() == [0, 1]
        predicted = model.predict_proba(REFERENCE.cif.tolist())[:, 1]
    else:
        predicted = model.predict(REFERENCE.cif.tolist())
    # float32 rounding: 1e-4 relative, and 1e-5 in the target's units for values near zero
    np.testing.assert_allclose(predicted, REFERENCE[name], rtol=1e-4, atol=1e-5)


def test_an_imported_model_is_an_ordinary_fitted_estimator(tmp_path, crystals):
    model = load("formation-energy-per-atom")
    X = REFERENCE.cif.tolist()
    assert model.checkpoint_["epoch"] == 968 and model.graph_settings_.nbr_rule == "first"
    assert model.transform(X).shape == (len(X), 32)
    assert model.score(X, REFERENCE["formation-energy-per-atom"]) > 0.999
    pipe = make_pipeline(clone(model.featurizer), FrozenEstimator(model))
    np.testing.assert_allclose(pipe.predict(X), model.predict(X), rtol=1e-6)
    joblib.dump(model, tmp_path / "m.joblib")
    script = (f"import joblib, pandas as pd; m = joblib.load({str(tmp_path / 'm.joblib')!r}); "
              f"print(m.predict(pd.read_csv({str(REFERENCE_CSV)!r}).cif.tolist()).tolist())")
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    np.testing.assert_allclose(eval(fresh.stdout), model.predict(X), rtol=1e-6)


def test_shared_rule_makes_an_imported_model_independent_of_the_cell():
    crystals = pd.read_csv(Path(__file__).parent / "data" / "real_crystals.csv").set_index("id")
    cell = Structure.from_str(crystals.cif["mp-1001571"], fmt="cif")  # cubic CaFeO3, tied at the 12th
    reversed_sites = Structure.from_sites(list(cell)[::-1])
    first, shared = load("efermi"), load("efermi", nbr_rule="shared")
    assert abs(np.diff(first.predict([cell, reversed_sites]))[0]) > 0.5  # eV
    # a supercell keeps each site's images together, so the first rule keeps the same neighbours in it
    np.testing.assert_allclose(*first.predict([cell, cell * (2, 1, 1)]), rtol=1e-5)
    predictions = shared.predict([cell, reversed_sites, cell * (2, 1, 1)])
    np.testing.assert_allclose(predictions, predictions[0], rtol=1e-5)


@pytest.mark.parametrize("name", ["band-gap", "semi-metal-classification"])
def test_export_round_trip_gives_identical_predictions(tmp_path, name):
    model = load(name)
    path = save_checkpoint(model, tmp_path / f"{name}.pth.tar")
    back = load_checkpoint(path)
    X = REFERENCE.cif.tolist()[:6]
    if name.startswith("semi"):
        np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    else:
        np.testing.assert_array_equal(back.predict(X), model.predict(X))
    saved = torch.load(path, weights_only=True)
    assert set(saved["state_dict"]) == set(read_checkpoint(model_path(name))["state_dict"])
    with pytest.raises(ValueError, match="exists; pass force=True"):
        save_checkpoint(model, path)


def test_a_model_trained_here_exports_with_its_atom_features(tmp_path, crystals):
    X, y = crystals
    model = CGCNNRegressor(n_conv=2, max_epochs=2, random_state=0).fit(X, y)
    path = save_checkpoint(model, tmp_path / "mine.pth.tar")
    assert (tmp_path / "mine.atom_init.json").is_file()
    back = load_checkpoint(path, nbr_rule="shared")
    assert back.graph_settings_ == model.graph_settings_
    np.testing.assert_allclose(back.predict(X), model.predict(X), rtol=1e-6)
    with pytest.raises(ValueError, match="mean pooling only"):
        save_checkpoint(CGCNNRegressor(pooling="linear", max_epochs=1).fit(X, y), tmp_path / "lin.pth.tar")
    narrow = CGCNNRegressor(featurizer=CrystalGraphTransformer(radius=6.0), max_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        narrow.fit(X, y)
    with pytest.raises(ValueError, match="radius=8.0, max_num_nbr=12"):
        save_checkpoint(narrow, tmp_path / "narrow.pth.tar")


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_checkpoints_are_refused_and_run_nothing(tmp_path, crystals):
    marker = tmp_path / "marker"
    zipped = tmp_path / "zip.pth.tar"
    torch.save({"state_dict": {}, "args": _Hostile(marker), "normalizer": {}}, zipped)
    legacy = tmp_path / "legacy.pth.tar"
    legacy.write_bytes(pickle.dumps({"args": _Hostile(marker)}, protocol=2))
    newer = tmp_path / "newer.pth.tar"  # protocol 4 stops at an opcode the safe reader lacks, before the call
    newer.write_bytes(pickle.dumps({"args": _Hostile(marker)}, protocol=4))
    X, y = crystals
    for path, message in ((zipped, "refused unread: it asks to load posix.system"),
                          (legacy, "refused unread: it asks to load posix.system"),
                          (newer, "not a checkpoint")):
        with pytest.raises(ValueError, match=f"{path.name}: {message}"):
            load_checkpoint(path)
        with pytest.raises(ValueError, match=message):
            CGCNNRegressor(pretrained=path, max_epochs=1).fit(X, y)
        assert main(["predict", str(path), str(tmp_path), "-o", str(tmp_path / "p.csv")]) == 2
    assert not marker.exists()


def test_damaged_checkpoints_get_one_line_naming_the_file(tmp_path):
    good = model_path("band-gap").read_bytes()
    cases = {"empty": b"", "truncated": good[: len(good) // 2], "random": np.random.default_rng(0).bytes(2000)}
    for name, content in cases.items():
        path = tmp_path / f"{name}.pth.tar"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}.pth.tar: (the file is empty|not a checkpoint)"):
            load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth.tar")
    with pytest.raises(ValueError, match="not a CGCNN checkpoint"):
        load_checkpoint(tmp_path / "other.pth.tar")
    with pytest.raises(ValueError, match="unknown pretrained model 'nope'"):
        load("nope")


def test_fine_tuning_starts_from_the_checkpoint_and_can_freeze_the_convolutions(crystals):
    X, y = crystals
    original = load("formation-energy-per-atom").module_.state_dict()
    frozen = CGCNNRegressor.from_pretrained("formation-energy-per-atom", max_epochs=3, lr=1e-3, random_state=0,
                                            callbacks=[("freeze", Freezer(["embedding.*", "convs.*"]))])
    frozen.fit(X, y)
    tuned = frozen.module_.state_dict()
    for key in ("embedding.weight", "convs.0.fc.weight", "convs.3.bn_sum.bias"):
        torch.testing.assert_close(tuned[key], original[key])
    assert not torch.equal(tuned["conv_to_fc.weight"], original["conv_to_fc.weight"])
    scratch = CGCNNRegressor(**{k: frozen.get_params()[k] for k in ("n_conv", "h_fea_len", "featurizer")},
                             max_epochs=3, random_state=0).fit(X, y)
    assert not torch.equal(scratch.module_.state_dict()["convs.0.fc.weight"], original["convs.0.fc.weight"])


def test_fine_tuning_clones_into_searches_and_takes_a_new_head(crystals):
    X, y = crystals
    search = GridSearchCV(CGCNNRegressor.from_pretrained("band-gap", max_epochs=1), {"lr": [1e-4, 1e-3]}, cv=2)
    search.fit(X, y)
    assert search.best_estimator_.pretrained == "band-gap"
    clf = CGCNNClassifier.from_pretrained("formation-energy-per-atom", max_epochs=1).fit(X, y < np.median(y))
    assert clf.module_.out.weight.shape == (2, 32)
    with pytest.raises(ValueError, match="reads atom features 'cgcnn_original'.*from_pretrained"):
        CGCNNRegressor(pretrained="band-gap", n_conv=4, h_fea_len=32, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="do not fit this architecture"):
        CGCNNRegressor.from_pretrained("band-gap", n_conv=3, max_epochs=1).fit(X, y)


def test_embeddings_feed_any_scikit_learn_model(crystals):
    X, y = crystals
    model = load("formation-energy-per-atom")
    pipe = make_pipeline(FrozenEstimator(model), Ridge()).fit(X, y)
    assert pipe.score(X, y) > 0.5


def test_command_line_lists_and_predicts_with_released_models(tmp_path, capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    for name, entry in MODELS.items():
        assert name in listing and entry.units in listing
    row = next(line for line in listing.splitlines() if line.startswith("mp-poisson-ratio "))
    assert row.split()[3] == "-"  # a dimensionless property says so instead of leaving its column blank
    cif = tmp_path / "mp-x.cif"
    cif.write_text(REFERENCE.cif[0])
    out = tmp_path / "out.csv"
    assert main(["predict", "formation-energy-per-atom", str(cif), "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "formation energy (eV/atom)", "unseen_elements"]
    assert table.iloc[0, 1] == pytest.approx(REFERENCE["formation-energy-per-atom"][0], rel=1e-4)
    assert main(["predict", str(model_path("band-gap")), str(cif), "-o", str(out), "--force"]) == 0
    assert pd.read_csv(out).prediction[0] == pytest.approx(REFERENCE["band-gap"][0], rel=1e-4)


def test_the_docs_page_of_the_released_models_is_written_from_their_cards(monkeypatch):
    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "tools"))
    import write_model_cards

    page = (root / "docs" / "released_cards.inc").read_text()
    assert page == write_model_cards.page(), "run python tools/write_model_cards.py after assembling a model"
    assert all(f"``{name}``" in page for name in RELEASED)
