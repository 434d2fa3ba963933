"""The skcgcnn model file: round trips to identical predictions, holds no data, runs nothing it reads."""

import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline

from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer, pretrained
from skcgcnn.callbacks import HeldOutScore
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.persistence import FORMAT_VERSION, load_model, save_model


@pytest.fixture(scope="module")
def data():
    return make_ionic_crystals(60, random_state=1)


def _fresh_process_predictions(path, inputs, tmp_path, method):
    joblib.dump(inputs, tmp_path / "inputs.joblib")
    out = tmp_path / "out.npy"
    code = ("import joblib, numpy; from skcgcnn.persistence import load_model; "
            f"model = load_model({str(path)!r}); inputs = joblib.load({str(tmp_path / 'inputs.joblib')!r}); "
            f"numpy.save({str(out)!r}, model.{method}(inputs))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return np.load(out, allow_pickle=False)


def _fitted(kind, X, y):
    """A fitted model, the inputs it predicts on, and its prediction method."""
    if kind == "pipeline":
        net = CGCNNRegressor(max_epochs=2, n_h=2, random_state=0)
        pipe = Pipeline([("g", CrystalGraphTransformer()), ("net", net)])
        return pipe.fit(X[:40], y[:40]), X[40:], "predict"
    if kind == "two_targets":
        graphs = CrystalGraphTransformer(atom_features="group_period", nbr_rule="first").transform(X)
        reg = CGCNNRegressor(max_epochs=2, random_state=0).fit(graphs[:40], np.c_[y, 2 * y][:40])
        return reg, graphs[40:], "predict"
    if kind == "classifier":
        labels = np.where(y < np.median(y), "deep", "shallow")
        clf = CGCNNClassifier(max_epochs=2, pooling="linear", random_state=0).fit(X[:40], labels[:40])
        return clf, X[40:], "predict_proba"
    return pretrained.load("shear-moduli"), X[40:], "predict"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pipeline", "two_targets", "classifier", "imported"])
def test_round_trip_in_a_fresh_process_gives_identical_predictions(tmp_path, data, kind):
    model, inputs, method = _fitted(kind, *data)
    path = save_model(model, tmp_path / "m.skcgcnn")
    expected = getattr(model, method)(inputs)
    np.testing.assert_array_equal(_fresh_process_predictions(path, inputs, tmp_path, method), expected)
    back = load_model(path)
    assert type(back) is type(model)
    np.testing.assert_array_equal(getattr(back, method)(inputs), expected)
    if kind == "classifier":
        assert back.classes_.tolist() == ["deep", "shallow"] and back.module_.pooling == "linear"
    if kind == "imported":
        assert back.checkpoint_["epoch"] == model.checkpoint_["epoch"]
        assert back.graph_settings_ == model.graph_settings_
    if kind == "pipeline":
        assert back.named_steps["net"].n_h == 2 and back.named_steps["g"].get_params() == model[0].get_params()


def test_the_file_holds_weights_and_settings_not_data(tmp_path, data):
    X, y = data
    held_out = HeldOutScore(X[40:], y[40:])
    reg = CGCNNRegressor(max_epochs=2, random_state=0, callbacks=[("held_out", held_out)]).fit(X[:40], y[:40])
    path = save_model(reg, tmp_path / "m.skcgcnn")
    weights = sum(t.numel() * t.element_size() for t in reg.module_.state_dict().values())
    assert path.stat().st_size < weights + 64_000
    joblib.dump(reg, tmp_path / "m.joblib")
    assert path.stat().st_size < (tmp_path / "m.joblib").stat().st_size / 2
    content = torch.load(path, weights_only=True)
    assert content["format_version"] == 1 and "torch" in content["versions"]  # what readers before ensembles take
    assert "optimizer" not in str(list(content["estimator"]))


def test_hostile_and_damaged_files_get_one_line_naming_the_file(tmp_path, data):
    class Hostile:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'marker'}",)

    X, y = data
    good = save_model(CGCNNRegressor(max_epochs=1).fit(X[:20], y[:20]), tmp_path / "good.skcgcnn").read_bytes()
    joblib.dump(Hostile(), tmp_path / "hostile.joblib")
    torch.save({"model": Hostile()}, tmp_path / "hostile.skcgcnn")
    (tmp_path / "empty.skcgcnn").write_bytes(b"")
    (tmp_path / "cut.skcgcnn").write_bytes(good[: len(good) // 2])
    (tmp_path / "noise.skcgcnn").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "noise80.skcgcnn").write_bytes(b"\x80\x99" + np.random.default_rng(1).bytes(3000))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.skcgcnn")
    newer = torch.load(tmp_path / "good.skcgcnn", weights_only=True)
    newer["format_version"] = FORMAT_VERSION + 1
    torch.save(newer, tmp_path / "newer.skcgcnn")
    expected = {
        "hostile.joblib": "refused unread: it is a pickle",
        "hostile.skcgcnn": "refused unread: it asks to load posix.system",
        "empty.skcgcnn": "the file is empty",
        "cut.skcgcnn": "not a skcgcnn model file, or a truncated or damaged one",
        "noise.skcgcnn": "not a skcgcnn model file, or a truncated or damaged one",
        "noise80.skcgcnn": "not a skcgcnn model file, or a truncated or damaged one",
        "other.skcgcnn": "not a skcgcnn model file",
        "newer.skcgcnn": f"model format version {FORMAT_VERSION + 1} .* upgrade skcgcnn",
        "missing.skcgcnn": "no such model file",
    }
    for name, message in expected.items():
        with pytest.raises(ValueError, match=f"{name}: {message}") as info:
            load_model(tmp_path / name)
        assert "\n" not in str(info.value)
    assert not (tmp_path / "marker").exists()


def test_what_cannot_be_saved_is_refused(tmp_path, data):
    X, y = data
    with pytest.raises(ValueError, match="not fitted"):
        save_model(CGCNNRegressor(), tmp_path / "a.skcgcnn")
    reg = CGCNNRegressor(max_epochs=1).fit(X[:20], y[:20])
    save_model(reg, tmp_path / "a.skcgcnn")
    with pytest.raises(ValueError, match="exists; pass force=True"):
        save_model(reg, tmp_path / "a.skcgcnn")
    with pytest.raises(TypeError, match="only a Pipeline of a CrystalGraphTransformer"):
        save_model(Pipeline([("net", reg)]), tmp_path / "b.skcgcnn")


def test_ensembles_round_trip_with_their_spread_and_predict_from_the_command_line(tmp_path, data):
    from skcgcnn.cli import main
    from skcgcnn.ensemble import CGCNNEnsembleClassifier, CGCNNEnsembleRegressor

    X, y = data
    small = dict(max_epochs=2, atom_fea_len=16, h_fea_len=16)
    ens = CGCNNEnsembleRegressor(CGCNNRegressor(**small), n_estimators=3, random_state=0).fit(X[:40], y[:40])
    path = save_model(ens, tmp_path / "ens.skcgcnn")
    assert torch.load(path, weights_only=True)["format_version"] == 2  # an ensemble needs no newer reader
    back = load_model(path)
    assert type(back) is CGCNNEnsembleRegressor and len(back.estimators_) == 3
    assert back.get_params()["estimator__atom_fea_len"] == 16 and back.random_state == 0
    for got, expected in zip(back.predict(X[40:], return_std=True), ens.predict(X[40:], return_std=True)):
        np.testing.assert_array_equal(got, expected)

    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, s in enumerate(X[40:45]):
        s.to(filename=str(folder / f"c{i}.cif"))
    assert main(["predict", str(path), str(folder), "-o", str(tmp_path / "p.csv")]) == 0
    rows = np.genfromtxt(tmp_path / "p.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    mean, std = ens.predict(X[40:45], return_std=True)
    np.testing.assert_allclose(rows["prediction"], mean, rtol=1e-5)
    np.testing.assert_allclose(rows["std"], std, rtol=1e-4, atol=1e-6)

    labels = np.where(y > np.median(y), "metal", "insulator")
    classes = CGCNNEnsembleClassifier(CGCNNClassifier(**small), n_estimators=2, random_state=0)
    pipe = Pipeline([("graph", CrystalGraphTransformer()), ("ens", classes)]).fit(X[:40], labels[:40])
    back = load_model(save_model(pipe, tmp_path / "pipe.skcgcnn"))
    assert list(back.named_steps["ens"].classes_) == ["insulator", "metal"]
    np.testing.assert_array_equal(back.predict_proba(X[40:]), pipe.predict_proba(X[40:]))


def _tampered(tmp_path, path, change, name):
    content = torch.load(path, weights_only=True)
    change(content["estimator"])
    torch.save(content, tmp_path / name)
    return tmp_path / name


def test_a_model_file_is_validated_like_parameters_before_anything_is_allocated(tmp_path, data):
    X, y = data
    reg = CGCNNRegressor(max_epochs=1, atom_fea_len=16, h_fea_len=16, random_state=0,
                         iterator_valid__num_workers=0).fit(X[:20], y[:20])
    path = save_model(reg, tmp_path / "m.skcgcnn")

    def params(**values):
        return lambda record: record["params"].update(values)

    def weights(record):
        record["state_dict"]["convs.0.fc.weight"][0, 0] = float("nan")

    def scale(value):
        return lambda record: record["target"].update(scale=[value])

    def graphs(**values):
        return lambda record: record["graph_settings"].update(values)

    for change, message in [(params(atom_fea_len=30_000), "do not fit the stored architecture"),
                            (params(n_conv=-2), "'n_conv' parameter of the model file .*bad.skcgcnn must be an int"),
                            (weights, "NaN or infinite values \\(convs.0.fc.weight\\)"),
                            (scale(0.0), "target scaling .* is not finite and positive"),
                            (scale(-1.0), "target scaling .* is not finite and positive"),
                            (graphs(max_num_nbr=10**9), "max_num_nbr must be an integer from 1 to 256"),
                            (graphs(radius=1e6), "radius must lie in \\(0, 20\\] Å"),
                            (graphs(step=1e-6), "more than 1000 Gaussian centres")]:
        with pytest.raises(ValueError, match=message):
            load_model(_tampered(tmp_path, path, change, "bad.skcgcnn"))

    machine = params(compile=True, iterator_valid__num_workers=12)
    loaded = load_model(_tampered(tmp_path, path, machine, "machine.skcgcnn"))
    assert loaded.get_params().get("iterator_valid__num_workers", 0) == 0 and not loaded.get_params().get("compile")
    np.testing.assert_array_equal(loaded.predict(X[:3]), reg.predict(X[:3]))


def test_a_file_named_like_a_released_model_is_not_taken_for_it(tmp_path, monkeypatch):
    from skcgcnn.pretrained import load_any

    monkeypatch.chdir(tmp_path)
    (tmp_path / "band-gap").write_bytes(b"mine")
    with pytest.raises(ValueError, match="both a released model's name and a file here; give ./band-gap"):
        load_any("band-gap")
