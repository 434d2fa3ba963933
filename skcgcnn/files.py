"""Files: written so that an interrupted run never leaves a half-written one behind, and their names."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "MODEL_SUFFIX"]

#: The file name suffix of skcgcnn model files (:mod:`skcgcnn.persistence`).
MODEL_SUFFIX = ".skcgcnn"


@contextmanager
def atomic_path(path):
    """A temporary path next to ``path``, renamed onto it only if the block succeeds.

    Parameters
    ----------
    path : str or path-like
        The file to write; its folder must exist.

    Yields
    ------
    Path
        Where to write instead; removed if the block fails.

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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
