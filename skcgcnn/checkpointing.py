"""The callbacks of a training run kept in a folder: whole checkpoints, resumable early stopping, the best model.

:class:`skcgcnn.runs.RunFolder` holds what they write; :func:`run_callbacks`
puts them together as ``skcgcnn fit`` uses them.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import warnings
from pathlib import Path

from skorch.callbacks import Callback, Checkpoint, EarlyStopping

from .files import MODEL_SUFFIX, atomic_path

__all__ = ["AtomicCheckpoint", "ResumableEarlyStopping", "ErrorColumn", "SaveBestModel", "run_callbacks",
           "check_run_options", "digest", "MANIFEST"]

#: The file naming the epoch and the digests of a run's last checkpoint, written after its other files.
MANIFEST = "checkpoint.json"


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
                                               "files": {name: digest(folder / name) for name in names}}))
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


def digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_run_options(has_val: bool, lr_schedule: str, patience: int | None) -> None:
    """Refuse, before any long work, options that watch a validation score when there is none."""
    if not has_val and (patience or lr_schedule == "plateau"):
        raise ValueError("--patience and --lr-schedule plateau watch the validation score: they need a "
                         "validation set (--val-size > 0, --val-data, or val rows in --split)")


def run_callbacks(run, transformer, X_val, y_val, classification: bool, epochs: int,
                  lr_schedule: str = "cosine", lr_patience: int = 10, patience: int | None = None,
                  signals: list[int] | None = None) -> list:
    """The callbacks of a training run kept in ``run``: resumable, checkpointed, the best epoch saved.

    Parameters
    ----------
    run : RunFolder
        The run's folder (:class:`skcgcnn.runs.RunFolder`).
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
    signals : list of int, default=None
        The record of :func:`skcgcnn.runs.stop_on_signals`: a signal recorded there ends training at the next
        batch (:class:`~skcgcnn.callbacks.SignalGuard`), should its interrupt have been lost.

    Returns
    -------
    list of (str, Callback)
        For the estimator's ``callbacks``; pass ``callbacks__lr_scheduler=None`` too, as the schedule is here.
    """
    from skorch.callbacks import LoadInitState, LRScheduler
    from torch.optim.lr_scheduler import CosineAnnealingLR, ReduceLROnPlateau

    from .callbacks import HeldOutScore, SignalGuard

    has_val = len(y_val) > 0
    check_run_options(has_val, lr_schedule, patience)
    last = AtomicCheckpoint(monitor=None, dirname=str(run.checkpoint_dir), f_params="params.pt",
                            f_optimizer="optimizer.pt", f_criterion=None, f_history="history.json",
                            event_name=None, manifest=MANIFEST)
    callbacks = [("resume", LoadInitState(last))]
    if signals is not None:
        callbacks.append(("signals", SignalGuard(signals)))
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
