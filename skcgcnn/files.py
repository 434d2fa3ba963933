"""Files: written so that an interrupted run never leaves a half-written one behind, and their names."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "publish", "remove_stale_temporaries", "process_alive", "temporary_path", "MODEL_SUFFIX"]

#: The file name suffix of skcgcnn model files (:mod:`skcgcnn.persistence`).
MODEL_SUFFIX = ".skcgcnn"

# This machine in temporary names, so that a folder shared between machines is cleaned by each of its own only.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_path(path) -> Path:
    """Where this process writes ``path`` before putting it in place: ``.NAME.PID-HOST.tmp`` beside it.

    Examples
    --------
    >>> temporary_path("/data/model.skcgcnn").name.startswith(f".model.skcgcnn.{os.getpid()}-")
    True
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{_HOST}.tmp")


@contextmanager
def atomic_path(path, overwrite: bool = True):
    """A temporary path next to ``path``, renamed onto it only if the block succeeds.

    Parameters
    ----------
    path : str or path-like
        The file to write; its folder must exist.
    overwrite : bool, default=True
        With False, the file is put in place only if no file of that name
        exists at that moment (checked and done in one step by the operating
        system), so a concurrent process cannot be silently overwritten.

    Yields
    ------
    Path
        Where to write instead; removed if the block fails.

    Raises
    ------
    FileExistsError
        With ``overwrite=False``, if ``path`` exists when the file is complete.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "table.csv"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("id,prediction\\n")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('id,prediction\\n', ['table.csv'])
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def publish(source, path, overwrite: bool = True) -> None:
    """Put the finished file ``source`` under the name ``path`` in one step.

    Parameters
    ----------
    source, path : str or path-like
        On the same file system.
    overwrite : bool, default=True
        With False, only if no file of that name exists at that moment; on
        failure ``source`` stays where it was.

    Raises
    ------
    FileExistsError
        With ``overwrite=False``, if ``path`` exists.
    """
    source, path = Path(source), Path(path)
    if overwrite:
        os.replace(source, path)
        return
    try:
        os.link(source, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(f"{path} exists") from None
        os.replace(source, path)
    else:
        source.unlink()


def remove_stale_temporaries(folder) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` left in ``folder`` by processes that no longer run.

    A process killed without warning (``kill -9``, a crash) cannot clean up
    after itself; the next one writing into the same folder does. Only this
    machine's temporaries are considered: a process id of another machine
    (a folder on a shared disk) says nothing here.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    for tmp in Path(folder).glob(".*.*.tmp"):
        pid, _, host = tmp.name.rsplit(".", 2)[-2].partition("-")
        if host not in ("", _HOST):
            continue
        if pid.isdigit() and not process_alive(int(pid)):
            if tmp.is_dir():  # a folder of crystal graphs being saved
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
