"""Training runs that never lose work: the run folder, its checkpoints, and interruption by signals.

``skcgcnn fit`` writes everything it makes into one folder (:class:`RunFolder`):
the record of the run (``run.json``: arguments, package versions, split,
status, metrics), a log, the split, a checkpoint after every epoch, the best
model so far, and at the end the model, the test predictions and the
figures. A run stopped by Ctrl-C or SIGTERM keeps its last checkpoint and
resumes from it (``skcgcnn fit --resume FOLDER``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from skorch.callbacks import Callback, Checkpoint, EarlyStopping

from .files import MODEL_SUFFIX, atomic_path, process_alive

__all__ = ["RunFolder", "AtomicCheckpoint", "ResumableEarlyStopping", "ErrorColumn", "SaveBestModel", "Tee",
           "check_run_options", "run_callbacks", "stop_on_signals", "exit_status"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Everything a run writes into its folder (and its checkpoint folder); --force removes these and nothing else.
_RUN_FILES = {"run.json", "log.txt", "split.csv", "duplicates.csv", "test_predictions.csv", "parity.png", "roc.png",
              "learning_curve.png", "model" + MODEL_SUFFIX, "model.joblib", "best" + MODEL_SUFFIX}
#: The file naming the epoch and the digests of a run's last checkpoint, written after its other files.
MANIFEST = "checkpoint.json"
_CHECKPOINT_FILES = {"params.pt", "optimizer.pt", "history.json", "best_params.pt", MANIFEST}
_TEMPORARY = re.compile(r"^\..+\.\d+(-[0-9a-f]+)?\.tmp$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """The folder of one training run and the names of what it holds.

    Parameters
    ----------
    path : str or path-like

    Attributes
    ----------
    record : dict
        The content of ``run.json``.
    """

    RECORD = "run.json"

    def __init__(self, path):
        self.path = Path(path)
        self.record: dict = {}

    @classmethod
    def create(cls, path, force: bool = False) -> RunFolder:
        """Claim a new run folder, checking before any work that it can be written.

        The folder (new, or existing and empty) is claimed by creating its
        ``run.json`` in one step that fails if the file exists, so of two runs
        started with the same folder only one gets it. An existing run folder
        is replaced only with ``force``; a folder holding anything else never.

        Parameters
        ----------
        path : str or path-like
        force : bool, default=False

        Returns
        -------
        RunFolder

        Raises
        ------
        ValueError
            If the path names a model file or a file, holds a run (without
            ``force``) or other files, or cannot be written.
        """
        path = Path(path)
        if path.suffix in (MODEL_SUFFIX, ".joblib", ".pkl", ".pickle"):
            raise ValueError(f"-o {path}: the output of 'skcgcnn fit' is a run folder, not a model file; the model is "
                             f"written into it as model{MODEL_SUFFIX}")
        if path.is_file():
            raise ValueError(f"{path} is a file; the output of 'skcgcnn fit' is a run folder")
        if path.is_dir() and any(path.iterdir()):
            if not (path / cls.RECORD).is_file():
                raise ValueError(f"{path} exists and holds files of no run; give a new or empty folder")
            if not force:
                raise ValueError(f"{path} holds a run; pass --force to replace it, or --resume to continue it")
            cls(path)._remove_run()
        existed = path.is_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
            with open(path / cls.RECORD, "x") as handle:
                handle.write("{}\n")
        except FileExistsError:
            raise ValueError(f"{path} was claimed by another run meanwhile") from None
        except OSError as exc:
            raise ValueError(f"cannot write into the run folder {path}: {exc.strerror}") from None
        folder = cls(path)
        folder.existed = existed
        folder.check_writable()
        return folder

    def check_not_running(self, doing: str = "replacing") -> None:
        """Refuse when the run's process is alive (on this machine), or may be (on another)."""
        try:
            record = json.loads((self.path / self.RECORD).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            record = {}
        process = record.get("process") or {}
        if record.get("status") == "running" and process:
            here = process.get("host") == socket.gethostname()
            if not here or process_alive(int(process.get("pid", 0))):
                where = (f"process {process.get('pid')} on this machine" if here
                         else f"a process on {process.get('host')}")
                raise ValueError(f"{self.path}: its run is being trained by {where}; stop it before {doing} the "
                                 "run" + ("" if here else ", or remove the folder yourself if it no longer runs"))

    def _remove_run(self) -> None:
        """Remove what a finished or dead run wrote; refuse a live run and files no run writes."""
        self.check_not_running()
        checkpoint = self.checkpoint_dir
        own = [entry for entry in self.path.iterdir()
               if entry.name in _RUN_FILES or _TEMPORARY.match(entry.name) or entry == checkpoint]
        inside = list(checkpoint.iterdir()) if checkpoint.is_dir() else []
        foreign = [entry for entry in self.path.iterdir() if entry not in own]
        foreign += [entry for entry in inside
                    if entry.name not in _CHECKPOINT_FILES and not _TEMPORARY.match(entry.name)]
        if foreign or (checkpoint.exists() and not checkpoint.is_dir()):
            names = ", ".join(str(entry.relative_to(self.path)) for entry in (foreign or [checkpoint])[:5])
            raise ValueError(f"{self.path} holds files that no run writes ({names}); --force replaces a run "
                             "folder only: move them, or give another folder")
        for entry in inside:
            entry.unlink()
        for entry in own:
            if entry.is_dir():
                entry.rmdir()
            else:
                entry.unlink()

    def discard(self) -> None:
        """Remove what this run wrote: the folder it created, or the contents of the empty one it was given."""
        if getattr(self, "existed", False):
            for entry in self.path.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    @classmethod
    def open(cls, path) -> RunFolder:
        """An existing run folder, to resume it."""
        folder = cls(path)
        record = folder.path / cls.RECORD
        if not record.is_file():
            raise ValueError(f"{folder.path} is not a run folder of 'skcgcnn fit' (it has no {cls.RECORD})")
        try:
            folder.record = json.loads(record.read_text())
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"{record} is damaged: not JSON") from None
        folder.check_writable()
        return folder

    def check_writable(self) -> None:
        try:
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as exc:
            raise ValueError(f"cannot write into {self.path}: {exc.strerror}") from None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    def update(self, **fields) -> None:
        """Merge ``fields`` into the record and rewrite ``run.json`` whole."""
        now = _now()
        self.record.setdefault("started", now)
        self.record.update(fields, updated=now)
        if fields.get("status") == "running":
            # Who trains it: --force refuses to replace a run whose process is alive.
            self.record["process"] = {"host": socket.gethostname(), "pid": os.getpid()}
        with atomic_path(self.path / self.RECORD) as tmp:
            tmp.write_text(json.dumps(self.record, indent=2, default=str) + "\n")

    def check_checkpoint(self) -> None:
        """Refuse a checkpoint whose files are missing, damaged or of different epochs (no checkpoint is fine).

        Raises
        ------
        ValueError
            In one line, naming the file, rather than resuming from random weights or from a mix of two epochs.
        """
        folder = self.checkpoint_dir
        present = [name for name in ("params.pt", "optimizer.pt", "history.json") if (folder / name).exists()]
        if not present and not (folder / MANIFEST).exists():
            return
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            files = manifest["files"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"{folder}: the checkpoint has no readable {MANIFEST}, so its files cannot be checked; "
                             "start the run again, or resume a run of an older skcgcnn with that version") from None
        for name, digest in files.items():
            if not (folder / name).is_file():
                raise ValueError(f"{folder / name} is missing; the checkpoint cannot be resumed")
            if _digest(folder / name) != digest:
                raise ValueError(f"{folder / name} is not the file of the checkpoint of epoch {manifest.get('epoch')} "
                                 "(the run was stopped while saving it, or it was changed); the checkpoint cannot be "
                                 "resumed")

    def epochs_done(self) -> int:
        """Epochs in the last checkpoint (0 if there is none)."""
        history = self.checkpoint_dir / "history.json"
        if not history.is_file():
            return 0
        try:
            return len(json.loads(history.read_text()))
        except ValueError:
            raise ValueError(f"{history} is damaged: not JSON") from None


class AtomicCheckpoint(Checkpoint):
    """skorch's :class:`~skorch.callbacks.Checkpoint` whose files are replaced whole, and checked as one.

    A process killed while saving leaves the previous files intact, and a file
    that cannot be written gives a warning instead of skorch's silence. With
    ``manifest``, a file of that name in ``dirname`` is written last, naming
    the epoch and a digest of each file: a checkpoint whose files are not all
    of one epoch (a kill between two of them) is told from a whole one by
    :meth:`RunFolder.check_checkpoint`.

    Parameters
    ----------
    manifest : str, default=None
        The manifest's file name (``None``: none is written).
    **kwargs
        skorch's :class:`~skorch.callbacks.Checkpoint` parameters.
    """

    def __init__(self, manifest: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.manifest = manifest

    def save_model(self, net):
        # Ctrl-C and SIGTERM wait until the checkpoint is whole: they arrive as soon as it is.
        held = {signal.SIGINT, signal.SIGTERM}
        blocked = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            super().save_model(net)
            if self.manifest is not None:
                folder = Path(self.dirname)
                names = [f for f in (self.f_params, self.f_optimizer, self.f_criterion, self.f_history) if f]
                with atomic_path(folder / self.manifest) as tmp:
                    tmp.write_text(json.dumps({"epoch": len(net.history),
                                               "files": {name: _digest(folder / name) for name in names}}))
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, held)

    def _save_params(self, f, net, f_name, log_name):
        try:
            with atomic_path(f) as tmp:
                net.save_params(**{f_name: str(tmp)})
        except OSError as exc:
            warnings.warn(f"could not save the {log_name} to {f}: {exc}", RuntimeWarning, stacklevel=2)


class ResumableEarlyStopping(EarlyStopping):
    """skorch's :class:`~skorch.callbacks.EarlyStopping`, counting epochs without improvement across a resume.

    When training continues from a checkpoint, the count is rebuilt from the
    history, so a resumed run stops where an uninterrupted one would.
    """

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        for score in net.history[:, self.monitor] if net.history else []:
            if self._is_score_improved(score):
                self.misses_, self.dynamic_threshold_ = 0, self._calc_new_threshold(score)
            else:
                self.misses_ += 1


class ErrorColumn(Callback):
    """Record a greater-is-better score as the error it negates, for the epoch table (``val_mae`` not ``-0.3``).

    Parameters
    ----------
    name : str
        History key of the error, e.g. ``"val_mae"``.
    score : str, default="held_out_score"
        History key of the score it negates.
    """

    def __init__(self, name: str, score: str = "held_out_score"):
        self.name = name
        self.score = score

    def on_epoch_end(self, net, **kwargs):
        net.history.record(self.name, -net.history[-1, self.score])
        net.history.record(self.name + "_best", bool(net.history[-1, self.score + "_best"]))


class SaveBestModel(Callback):
    """Write the model as a skcgcnn model file whenever the monitored score improves.

    Parameters
    ----------
    path : path-like
        The file, rewritten whole each time.
    transformer : CrystalGraphTransformer
        Saved with the network as a pipeline, so the file predicts from
        structures.
    monitor : str, default="held_out_score_best"
        A boolean history key.
    """

    def __init__(self, path, transformer, monitor: str = "held_out_score_best"):
        self.path = path
        self.transformer = transformer
        self.monitor = monitor

    def on_epoch_end(self, net, **kwargs):
        from sklearn.pipeline import Pipeline

        from .persistence import save_model

        if net.history[-1, self.monitor]:
            save_model(Pipeline([("graph", self.transformer), ("cgcnn", net)]), self.path, force=True)


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_run_options(has_val: bool, lr_schedule: str, patience: int | None) -> None:
    """Refuse, before any long work, options that watch a validation score when there is none."""
    if not has_val and (patience or lr_schedule == "plateau"):
        raise ValueError("--patience and --lr-schedule plateau watch the validation score: they need a "
                         "validation set (--val-size > 0, --val-data, or val rows in --split)")


def run_callbacks(run: RunFolder, transformer, X_val, y_val, classification: bool, epochs: int,
                  lr_schedule: str = "cosine", lr_patience: int = 10, patience: int | None = None) -> list:
    """The callbacks of a training run kept in ``run``: resumable, checkpointed, the best epoch saved.

    Parameters
    ----------
    run : RunFolder
    transformer : CrystalGraphTransformer
        Saved with the best network so far (``best.skcgcnn``), so that file predicts from structures.
    X_val, y_val
        The validation crystals (graphs) and targets; with none, no epoch is selected.
    classification : bool
        Validation error shown as log-loss rather than MAE.
    epochs : int
        Length of the cosine schedule.
    lr_schedule : {"cosine", "plateau", "constant"}, default="cosine"
    lr_patience : int, default=10
        Epochs without improvement before the plateau schedule halves the rate.
    patience : int or None, default=None
        Epochs without improvement before training stops (``None``: never).

    Returns
    -------
    list of (str, Callback)
        For the estimator's ``callbacks``; pass ``callbacks__lr_scheduler=None`` too, as the schedule is here.
    """
    from skorch.callbacks import LoadInitState, LRScheduler
    from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau

    from .callbacks import HeldOutScore

    has_val = len(y_val) > 0
    check_run_options(has_val, lr_schedule, patience)
    last = AtomicCheckpoint(monitor=None, dirname=str(run.checkpoint_dir), f_params="params.pt",
                            f_optimizer="optimizer.pt", f_criterion=None, f_history="history.json",
                            event_name=None, manifest=MANIFEST)
    callbacks = [("resume", LoadInitState(last))]
    if has_val:
        callbacks.append(("held_out", HeldOutScore(X_val, y_val, restore_best=False)))
        callbacks.append(("error_column", ErrorColumn("val_log_loss" if classification else "val_mae")))
    if lr_schedule == "cosine":
        callbacks.append(("schedule", LRScheduler(policy=CosineAnnealingLR, T_max=epochs)))
    elif lr_schedule == "plateau":
        callbacks.append(("schedule", LRScheduler(policy=ReduceLROnPlateau, monitor="held_out_score", mode="max",
                                                  factor=0.5, patience=lr_patience)))
    if patience:
        callbacks.append(("early_stopping", ResumableEarlyStopping(monitor="held_out_score", lower_is_better=False,
                                                                   patience=patience)))
    if has_val:
        callbacks.append(("best", AtomicCheckpoint(monitor="held_out_score_best", dirname=str(run.checkpoint_dir),
                                                   f_params="best_params.pt", f_optimizer=None, f_criterion=None,
                                                   f_history=None, event_name="event_best", load_best=True)))
        callbacks.append(("best_model", SaveBestModel(run / ("best" + MODEL_SUFFIX), transformer)))
    callbacks.append(("checkpoint", last))
    return callbacks


@contextmanager
def stop_on_signals():
    """Turn SIGINT and SIGTERM into ``KeyboardInterrupt`` and record which arrived.

    Yields
    ------
    list of int
        The signal numbers received, in order (empty if none). Outside the
        main thread no handler can be installed and the list stays empty.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Tee:
    """A text stream that writes to ``stream`` (and to a log file), without colour codes where they do not belong.

    Colour codes reach ``stream`` only when it is a terminal, and never the log.
    """

    def __init__(self, stream, log=None):
        self.stream = stream
        self.log = log
        self.colour = getattr(stream, "isatty", lambda: False)()

    def write(self, text: str) -> int:
        plain = _ANSI.sub("", text)
        self.stream.write(text if self.colour else plain)
        if self.log is not None:
            self.log.write(plain)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        if self.log is not None:
            self.log.flush()

    def isatty(self) -> bool:
        return self.colour


def exit_status(signum: int) -> int:
    """The shell's status for a process ended by ``signum`` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum
