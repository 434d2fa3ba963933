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
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .checkpointing import (MANIFEST, AtomicCheckpoint, ErrorColumn, ResumableEarlyStopping, SaveBestModel,
                            check_run_options, digest, run_callbacks)
from .files import MODEL_SUFFIX, atomic_path, process_alive

__all__ = ["RunFolder", "AtomicCheckpoint", "ResumableEarlyStopping", "ErrorColumn", "SaveBestModel", "Tee",
           "check_run_options", "run_callbacks", "stop_on_signals", "exit_status"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Everything a run writes into its folder (and its checkpoint folder); --force removes these and nothing else.
_RUN_FILES = {"run.json", "log.txt", "split.csv", "duplicates.csv", "test_predictions.csv", "parity.png", "roc.png",
              "learning_curve.png", "model" + MODEL_SUFFIX, "model.joblib", "best" + MODEL_SUFFIX}
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
        for name, expected in files.items():
            if not (folder / name).is_file():
                raise ValueError(f"{folder / name} is missing; the checkpoint cannot be resumed")
            if digest(folder / name) != expected:
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
