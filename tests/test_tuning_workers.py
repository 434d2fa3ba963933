"""Tuning across workers: distinct configurations, dead workers' trials failed, fixed settings, Ctrl-C."""

import os
import subprocess
import sys
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from skorch.callbacks import Callback

from conftest import TINY_OPTIONS, write_original_layout
from skcgcnn import CGCNNRegressor
from skcgcnn.datasets import make_ionic_crystals
from skcgcnn.tuning import make_storage, tune

SMALL = TINY_OPTIONS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_original_layout(tmp_path_factory.mktemp("tune") / "data", *make_ionic_crystals(30, random_state=2),
                                 prefix="c")


def _worker(data, journal, output, n_trials, epochs):
    command = [sys.executable, "-m", "skcgcnn", "tune", str(data), "--n-trials", str(n_trials), "--epochs",
               str(epochs), *SMALL, "--storage", f"journal:{journal}", "--study-name", "s", "-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _study(journal):
    return optuna.load_study(study_name="s", storage=make_storage(f"journal:{journal}"))


def test_two_workers_explore_distinct_configurations(tmp_path, data):
    journal = tmp_path / "study.log"
    workers = [_worker(data, journal, tmp_path / f"best{i}.skcgcnn", 3, 2) for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    trials = _study(journal).trials
    assert len(trials) == 6
    configurations = {tuple(sorted(t.params.items())) for t in trials}
    assert len(configurations) == 6  # the same --seed no longer gives both workers the same trials


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_when_the_study_resumes(tmp_path, data):
    journal = tmp_path / "study.log"
    worker = _worker(data, journal, tmp_path / "a.skcgcnn", 1, 40)
    deadline = time.monotonic() + 120
    # killed once its trial names it: Optuna marks a trial running a moment before the objective records its worker
    while time.monotonic() < deadline and worker.poll() is None:
        if journal.exists() and any(t.state == TrialState.RUNNING and "worker" in t.user_attrs
                                    for t in _study(journal).trials):
            break
        time.sleep(0.1)
    worker.kill()
    worker.wait()
    assert [t.state for t in _study(journal).trials] == [TrialState.RUNNING]

    resumed = _worker(data, journal, tmp_path / "b.skcgcnn", 1, 40)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    states = [t.state for t in _study(journal).trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]

    other = _worker(data, journal, tmp_path / "c.skcgcnn", 1, 3)
    _, err = other.communicate(timeout=300)
    assert other.returncode == 2
    assert "other fixed settings (max_epochs)" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_journal_lock_left_by_a_killed_worker_does_not_stop_the_next(tmp_path, data):
    journal = tmp_path / "study.log"
    first = _worker(data, journal, tmp_path / "a.skcgcnn", 1, 1)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    os.symlink(journal, f"{journal}.lock")  # what a worker killed while writing to the journal leaves behind
    later = _worker(data, journal, tmp_path / "b.skcgcnn", 1, 1)
    _, err = later.communicate(timeout=300)
    assert later.returncode == 0, err
    assert [t.state for t in _study(journal).trials] == [TrialState.COMPLETE, TrialState.COMPLETE]


class _CtrlC(Callback):
    def on_epoch_end(self, net, **kwargs):
        raise KeyboardInterrupt


def test_ctrl_c_keeps_completed_trials_and_leaves_none_running(tmp_path):
    X, y = make_ionic_crystals(30, random_state=0)
    storage = f"journal:{tmp_path / 'study.log'}"
    space = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
    net = CGCNNRegressor(max_epochs=2, batch_size=16, atom_fea_len=8, h_fea_len=8)
    tune(net, X, y, search_space=space, n_trials=1, refit=False, storage=storage, study_name="s")
    with pytest.raises(KeyboardInterrupt):
        tune(net.set_params(callbacks=[_CtrlC()]), X, y, search_space=space, n_trials=3, refit=False,
             storage=storage, study_name="s")
    states = [t.state for t in optuna.load_study(study_name="s", storage=make_storage(storage)).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
