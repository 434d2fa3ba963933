"""Fit runs that never lose work: the run folder, interruption, resume, fixed splits, outputs checked first."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from skorch.callbacks import Callback, EarlyStopping

from conftest import write_original_layout
from skcgcnn import CGCNNRegressor
from skcgcnn.callbacks import TimeBudget
from skcgcnn.cli import fit as fit_command
from skcgcnn.cli import main
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.files import atomic_path, remove_stale_temporaries
from skcgcnn.persistence import load_model

SMALL = ["--batch-size", "16", "--atom-fea-len", "16", "--h-fea-len", "16"]


@pytest.fixture(scope="module")
def crystals():
    return make_ionic_crystals(60, random_state=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory, crystals):
    return write_original_layout(tmp_path_factory.mktemp("runs") / "data", *crystals)


def test_a_fit_run_folder_holds_what_reproduces_and_audits_it(tmp_path, data, crystals):
    run = tmp_path / "run"
    assert main(["fit", str(data), "-o", str(run), "--epochs", "3", *SMALL]) == 0
    names = {p.name for p in run.iterdir()}
    assert {"model.skcgcnn", "run.json", "log.txt", "split.csv", "test_predictions.csv", "parity.png",
            "learning_curve.png", "checkpoint"} <= names
    assert "best.skcgcnn" not in names  # the final model is the best epoch's; no second copy stays
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "complete" and record["epochs_done"] == 3
    assert record["arguments"]["epochs"] == 3 and record["arguments"]["data"] == str(data.resolve())
    assert {"skcgcnn", "torch", "scikit-learn", "skorch", "pymatgen"} <= set(record["versions"])
    split = pd.read_csv(run / "split.csv")
    assert split.set.value_counts().to_dict() == {"train": 48, "val": 6, "test": 6}
    tested = pd.read_csv(run / "test_predictions.csv")
    assert list(tested.columns) == ["id", "target", "prediction", "error"]
    np.testing.assert_allclose(tested.error, tested.prediction - tested.target, atol=1e-9)
    assert record["atom_features_used"] == "cgcnn" and 1 <= record["best_epoch"] <= 3 and record["training_s"] > 0
    assert sorted(tested.id) == sorted(split.id[split.set == "test"])
    structures, y = crystals
    rows = [int(i.split("-")[1]) for i in tested.id]
    np.testing.assert_allclose(tested.target, y[rows])
    model = load_model(run / "model.skcgcnn")
    np.testing.assert_allclose(tested.prediction, model.predict([structures[i] for i in rows]), rtol=1e-5)
    log = (run / "log.txt").read_text()
    assert "60 crystals: 48 for training" in log and "\x1b[" not in log


class _SignalAt(Callback):
    """Sends this process a signal at the end of an epoch, as a user or a batch scheduler would."""

    def __init__(self, epoch, signum):
        self.epoch = epoch
        self.signum = signum

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            os.kill(os.getpid(), self.signum)


class _Finalizer:
    def __del__(self):
        signal.raise_signal(signal.SIGTERM)
        sum(range(3))  # the handler runs here, inside the finalizer, where Python drops what it raises


class _SignalInFinalizerAt(Callback):
    """Lets a SIGTERM arrive while a finalizer runs, at the end of an epoch: its KeyboardInterrupt is lost."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            _Finalizer()


def test_a_signal_whose_interrupt_python_dropped_still_ends_the_run(tmp_path, data, monkeypatch, capsys):
    callbacks = fit_command.run_callbacks
    monkeypatch.setattr(fit_command, "run_callbacks",
                        lambda *a, **k: [*callbacks(*a, **k), ("finalizer", _SignalInFinalizerAt(2))])
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))
    run = tmp_path / "run"
    assert main(["fit", str(data), "-o", str(run), "--epochs", "6", *SMALL]) == 143
    assert dropped == [KeyboardInterrupt]  # Python did drop the first interrupt
    assert "the checkpoint of epoch 2 of 6" in capsys.readouterr().err
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_done"] == 2


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, data, crystals, monkeypatch, capsys,
                                                                signum, status):
    args = [str(data), "--epochs", "8", "--patience", "3", *SMALL]
    assert main(["fit", *args, "-o", str(tmp_path / "whole")]) == 0
    whole = load_model(tmp_path / "whole" / "model.skcgcnn")

    callbacks = fit_command.run_callbacks
    monkeypatch.setattr(fit_command, "run_callbacks",
                        lambda *a, **k: [*callbacks(*a, **k), ("signal", _SignalAt(3, signum))])
    cut = tmp_path / "cut"
    capsys.readouterr()
    assert main(["fit", *args, "-o", str(cut)]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("skcgcnn: interrupted; the checkpoint of epoch 3 of 8")
    assert f"skcgcnn fit --resume {cut}" in err[-1]
    assert json.loads((cut / "run.json").read_text())["status"] == "interrupted"
    assert not (cut / "model.skcgcnn").exists() and (cut / "best.skcgcnn").is_file()
    assert not list(cut.glob("**/.*.tmp"))
    monkeypatch.setattr(fit_command, "run_callbacks", callbacks)

    assert main(["fit", "--resume", str(cut)]) == 0
    assert "resuming from the checkpoint of epoch 3 of 8" in capsys.readouterr().out
    resumed = load_model(cut / "model.skcgcnn")
    structures, _ = crystals
    np.testing.assert_allclose(resumed.predict(structures), whole.predict(structures), rtol=1e-6, atol=1e-6)
    records = [json.loads((tmp_path / name / "run.json").read_text()) for name in ("whole", "cut")]
    assert records[0]["epochs_done"] == records[1]["epochs_done"]  # early stopping counted across the resume
    assert records[1]["status"] == "complete" and records[1]["resumed_at_epoch"] == 3
    assert main(["fit", "--resume", str(cut)]) == 2
    assert "the run is complete" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_from_outside_exits_143_and_the_run_resumes(tmp_path, data):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "skcgcnn", "fit", str(data), "-o", str(run), "--epochs", "400", *SMALL]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = run / "checkpoint" / "history.json"
    deadline = time.monotonic() + 120
    while not history.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, (out[-1500:], err)
    assert "Continue with: skcgcnn fit --resume" in err and "Traceback" not in err
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_done"] >= 1
    assert not (run / "model.skcgcnn").exists() and not list(run.glob("**/.*.tmp"))


def _children(pid: int) -> list[int]:
    return [int(child) for task in os.listdir(f"/proc/{pid}/task")
            for child in open(f"/proc/{pid}/task/{task}/children").read().split()]


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads child processes from /proc")
def test_sigterm_while_featurizing_in_parallel_ends_the_command_and_its_workers(tmp_path, crystals):
    # POSCAR text: pymatgen reads it, slowly enough for the signal to arrive while the workers parse
    texts = [s.to(fmt="poscar") for s in crystals[0]] * 80
    pd.DataFrame({"id": [f"c{i}" for i in range(len(texts))], "cif": texts,
                  "y": np.resize(crystals[1], len(texts))}).to_csv(tmp_path / "many.csv", index=False)
    command = [sys.executable, "-m", "skcgcnn", "fit", str(tmp_path / "many.csv"), "--target", "y",
               "-o", str(tmp_path / "run"), "--n-jobs", "2", "--epochs", "1", *SMALL]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + 120
        workers = []
        while process.poll() is None and time.monotonic() < deadline and (
                "crystal graphs" not in (tmp_path / "err.txt").read_text() or len(workers) < 2):
            workers = _children(process.pid)
            time.sleep(0.05)
        assert len(workers) >= 2 and process.poll() is None
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    text = (tmp_path / "err.txt").read_text()
    assert process.returncode == 143, text
    assert "interrupted" in text and "Traceback" not in text
    assert "epoch" not in (tmp_path / "out.txt").read_text()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers))


@pytest.mark.slow
def test_the_same_seed_gives_the_same_model_in_processes_running_at_once(tmp_path, data):
    def start(name, seed):
        return subprocess.Popen([sys.executable, "-m", "skcgcnn", "fit", str(data), "-o", str(tmp_path / name),
                                 "--epochs", "3", "--seed", str(seed), "--n-jobs", "2", *SMALL],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    processes = {name: start(name, seed) for name, seed in [("a", 5), ("b", 5), ("c", 6)]}
    for process in processes.values():
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    tables = {name: pd.read_csv(tmp_path / name / "test_predictions.csv") for name in processes}
    pd.testing.assert_frame_equal(tables["a"], tables["b"])
    assert not np.allclose(tables["a"]["prediction"], tables["c"]["prediction"])
    assert json.loads((tmp_path / "a" / "run.json").read_text())["torch_threads"] >= 1


def test_a_fixed_split_from_a_file_or_from_separate_folders(tmp_path, data, crystals, capsys):
    ids = [f"mp-{i}" for i in range(60)]
    sets = ["train"] * 40 + ["val"] * 8 + ["test"] * 12
    split = tmp_path / "split.csv"
    pd.DataFrame({"id": ids, "set": sets}).to_csv(split, index=False)
    assert main(["fit", str(data), "--split", str(split), "-o", str(tmp_path / "a"), "--epochs", "1", *SMALL]) == 0
    assert "60 crystals: 40 for training, 8 for validation, 12 for testing" in capsys.readouterr().out
    written = pd.read_csv(tmp_path / "a" / "split.csv")
    assert list(written.set) == sets

    structures, y = crystals
    test_folder = write_original_layout(tmp_path / "test", structures[:5], y[:5], prefix="t-")
    assert main(["fit", str(data), "--test-data", str(test_folder), "-o", str(tmp_path / "b"), "--epochs", "1",
                 *SMALL]) == 0
    tested = pd.read_csv(tmp_path / "b" / "test_predictions.csv")
    assert sorted(tested.id) == [f"t-{i}" for i in range(5)]

    pd.DataFrame({"id": ids, "set": ["train"] * 59 + ["hold-out"]}).to_csv(split, index=False)
    assert main(["fit", str(data), "--split", str(split), "-o", str(tmp_path / "c")]) == 2
    assert "line 61: set 'hold-out' is not train, val or test" in capsys.readouterr().err
    pd.DataFrame({"id": ids[:50], "set": ["train"] * 50}).to_csv(split, index=False)
    assert main(["fit", str(data), "--split", str(split), "-o", str(tmp_path / "c")]) == 2
    assert "10 ids of the data are not in the split file" in capsys.readouterr().err


def test_outputs_are_checked_before_any_work(tmp_path, data, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["fit", str(tmp_path / "no-such-data"), "-o", str(tmp_path / "file")]) == 2
    assert "is a file; the output of 'skcgcnn fit' is a run folder" in capsys.readouterr().err
    assert main(["fit", str(data), "-o", str(tmp_path / "m.skcgcnn")]) == 2
    assert "a run folder, not a model file" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["fit", str(data), "-o", str(tmp_path / "mine"), "--force"]) == 2
    assert "holds files of no run" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    (tmp_path / "empty").mkdir()
    assert main(["fit", str(data), "-o", str(tmp_path / "empty"), "--epochs", "1", *SMALL]) == 0  # claimed as is
    assert main(["predict", "band-gap", str(data), "-o", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert main(["fit", str(data), "--epochs", "0", "-o", str(tmp_path / "r")]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert main(["fit", str(data), "--val-size", "0", "--patience", "3", "-o", str(tmp_path / "r")]) == 2
    assert "need a validation set" in capsys.readouterr().err


def test_the_no_overwrite_promise_holds_at_the_final_rename(tmp_path):
    target = tmp_path / "predictions.csv"
    with pytest.raises(FileExistsError):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_text("mine")
            target.write_text("another run's")  # appears while this one works
    assert target.read_text() == "another run's" and not list(tmp_path.glob(".*.tmp"))
    with atomic_path(target) as tmp:
        tmp.write_text("forced")
    assert target.read_text() == "forced"


def test_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".model.skcgcnn.{dead.pid}.tmp"
    live = tmp_path / f".model.skcgcnn.{os.getpid()}.tmp"
    for path in (stale, live):
        path.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


class _Interrupt(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            raise KeyboardInterrupt


def test_an_interrupted_fit_in_python_is_recorded_not_silent(ionic):
    X, y = ionic
    with pytest.warns(UserWarning, match="interrupted after 2 complete epoch"):
        reg = CGCNNRegressor(max_epochs=5, callbacks=[_Interrupt()], random_state=0).fit(X[:30], y[:30])
    assert reg.interrupted_ and len(reg.history) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for callback in (TimeBudget(0.0), EarlyStopping(monitor="train_loss", patience=1, threshold=10.0)):
            reg = CGCNNRegressor(max_epochs=5, callbacks=[callback], random_state=0).fit(X[:30], y[:30])
            assert not reg.interrupted_ and len(reg.history) < 5


def test_duplicates_across_the_split_are_reported_and_can_be_dropped(tmp_path, crystals, capsys):
    structures, y = crystals
    unique = {s.composition.reduced_formula: i for i, s in enumerate(structures)}  # one per formula
    structures, y = [structures[i] for i in unique.values()], y[list(unique.values())]
    folder = tmp_path / "data"
    folder.mkdir()
    copies = {f"copy-{k}": structures[k] * (2, 1, 1) for k in range(10)}  # the same crystals in a larger cell
    for i, s in enumerate(structures):
        s.to(filename=str(folder / f"mp-{i}.cif"))
    for name, s in copies.items():
        s.to(filename=str(folder / f"{name}.cif"))
    lines = [f"mp-{i},{v}" for i, v in enumerate(y)] + [f"copy-{k},{y[k]}" for k in range(10)]
    (folder / "id_prop.csv").write_text("\n".join(lines) + "\n")
    args = [str(folder), "--epochs", "1", *SMALL]
    assert main(["fit", *args, "-o", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "duplicates: 10 crystals appear more than once (20 entries" in captured.out
    listed = pd.read_csv(tmp_path / "a" / "duplicates.csv")
    same = listed.groupby("group").agg({"formula": "nunique", "target": "nunique"})
    assert (same == 1).all().all()
    assert len(listed) == 20 and listed.groupby("group").id.apply(lambda ids: sorted(i.split("-")[1] for i in ids)
                                                                  ).map(lambda pair: pair[0] == pair[1]).all()
    across = json.loads((tmp_path / "a" / "run.json").read_text())["duplicates"]["pairs_across_split"]
    assert across == (listed.groupby("group").set.nunique() > 1).sum()
    assert ("inflates their scores" in captured.err) == (across > 0)

    assert main(["fit", *args, "-o", str(tmp_path / "b"), "--duplicates", "drop"]) == 0
    split = pd.read_csv(tmp_path / "b" / "split.csv")
    assert (split.set == "dropped").sum() == 10
    kept = split[split.set != "dropped"]
    assert kept.id.str.split("-").str[1].duplicated().sum() == 0  # one copy of each crystal left


def test_force_replaces_only_what_a_run_wrote_and_never_a_live_run(tmp_path, data, capsys):
    run = tmp_path / "run"
    args = ["fit", str(data), "--epochs", "2", *SMALL, "-o", str(run)]
    assert main(args) == 0
    notes = run / "notes" / "results.txt"
    notes.parent.mkdir()
    notes.write_text("mine")
    capsys.readouterr()
    assert main([*args, "--force"]) == 2
    assert "holds files that no run writes (notes)" in capsys.readouterr().err
    assert notes.read_text() == "mine" and (run / "model.skcgcnn").is_file()
    notes.unlink()
    notes.parent.rmdir()

    record = json.loads((run / "run.json").read_text())
    assert record["process"]["pid"] == os.getpid()
    record["status"] = "running"  # as if this process were still training it
    (run / "run.json").write_text(json.dumps(record))
    assert main([*args, "--force"]) == 2
    assert f"is being trained by process {os.getpid()} on this machine" in capsys.readouterr().err
    assert main(["fit", "--resume", str(run)]) == 2
    assert "stop it before resuming the run" in capsys.readouterr().err
    record["process"]["pid"] = _dead_pid()
    (run / "run.json").write_text(json.dumps(record))
    assert main([*args, "--force"]) == 0


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _interrupted_at_epoch_2(data, run, monkeypatch) -> None:
    """A run folder of a fit stopped by Ctrl-C after its second epoch."""
    callbacks = fit_command.run_callbacks
    monkeypatch.setattr(fit_command, "run_callbacks",
                        lambda *a, **k: [*callbacks(*a, **k), ("signal", _SignalAt(2, signal.SIGINT))])
    assert main(["fit", str(data), "--epochs", "5", *SMALL, "-o", str(run)]) == 130
    monkeypatch.setattr(fit_command, "run_callbacks", callbacks)


def test_a_torn_or_damaged_checkpoint_is_refused_not_resumed(tmp_path, data, monkeypatch, capsys):
    run = tmp_path / "run"
    _interrupted_at_epoch_2(data, run, monkeypatch)
    params = run / "checkpoint" / "params.pt"
    whole = params.read_bytes()
    params.write_bytes(whole[:-1] + bytes([whole[-1] ^ 1]))  # as if saved at another epoch
    capsys.readouterr()
    assert main(["fit", "--resume", str(run)]) == 2
    assert "params.pt is not the file of the checkpoint of epoch 2" in capsys.readouterr().err
    params.unlink()
    assert main(["fit", "--resume", str(run)]) == 2
    assert "params.pt is missing; the checkpoint cannot be resumed" in capsys.readouterr().err
    params.write_bytes(whole)
    assert main(["fit", "--resume", str(run)]) == 0


def test_a_resume_refuses_other_options_and_changed_structures(tmp_path, crystals, monkeypatch, capsys):
    structures, y = crystals
    data = write_original_layout(tmp_path / "data", structures[:30], y[:30])
    run = tmp_path / "run"
    _interrupted_at_epoch_2(data, run, monkeypatch)
    capsys.readouterr()
    assert main(["fit", "--resume", str(run), "--epochs", "50", "--lr", "0.1"]) == 2
    assert "--epochs, --lr would be ignored" in capsys.readouterr().err
    bigger = structures[3].copy()
    bigger.scale_lattice(3 * bigger.volume)
    bigger.to(filename=str(data / "mp-3.cif"))
    assert main(["fit", "--resume", str(run)]) == 2
    assert "the structures changed since the run" in capsys.readouterr().err


def test_only_this_machines_temporaries_of_dead_processes_are_removed(tmp_path):
    from skcgcnn.files import temporary_path

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = temporary_path(tmp_path / "a.csv")
    stale = mine.with_name(mine.name.replace(f".{os.getpid()}-", f".{dead.pid}-"))
    elsewhere = tmp_path / f".a.csv.{dead.pid}-00000000.tmp"
    folder = tmp_path / f".g.graphs.{dead.pid}-{stale.name.rsplit('-', 1)[1].removesuffix('.tmp')}.tmp"
    folder.mkdir()
    for path in (mine, stale, elsewhere):
        path.write_text("half")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, folder])
    assert mine.exists() and elsewhere.exists()
