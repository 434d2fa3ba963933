"""Download public data sets once, verify them, and keep them in a local cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from os import PathLike
from pathlib import Path

from tqdm.auto import tqdm

from .loaders import load_matbench

__all__ = ["MATBENCH_TASKS", "get_data_home", "fetch_matbench"]

_MATBENCH_URL = "https://ml.materialsproject.org/projects/{name}.json.gz"

#: Structure tasks of matbench v0.1 with the SHA-256 of their files (from
#: matminer's dataset registry). Other tasks can be fetched by passing
#: ``url=`` and ``sha256=`` to :func:`fetch_matbench`.
MATBENCH_TASKS = {
    "matbench_jdft2d": "26057dc4524e193e32abffb296ce819b58b6e11d1278cae329a2f97817a4eddf",
    "matbench_phonons": "4db551f21ec5f577e6202725f10e34dfc509aa7df3a6bdaac497da7f6dbbb9b3",
    "matbench_dielectric": "83befa09bc2ec2f4b6143afc413157827a90e5e2e42c1eb507ccfa01bf26a1d6",
    "matbench_log_gvrh": "098af941f4c663270f1fe21abf20ffad6fb85ecbfcba5786ceac03983ac29da7",
    "matbench_log_kvrh": "44b113ddb7e23aa18731a62c74afa7e5aa654199e0db5f951c8248a00955c9cd",
    "matbench_perovskites": "4641e2417f8ec8b50096d2230864468dfa08278dc9d257c327f65d0305278483",
}


def get_data_home(data_home: str | PathLike | None = None) -> Path:
    """Return the cache folder for downloaded data sets, creating it.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder. By default the ``SKCGCNN_DATA`` environment variable, or
        ``~/skcgcnn_data``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile
    >>> get_data_home(tempfile.mkdtemp()).is_dir()
    True
    """
    home = Path(data_home or os.environ.get("SKCGCNN_DATA") or Path.home() / "skcgcnn_data").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, sha256: str, verbose: bool) -> None:
    # Write next to the target and rename, so an interrupted download never
    # leaves a truncated file where the cache expects a complete one.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as tmp:
        partial = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, desc=target.name, disable=not verbose) as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        tmp.write(block)
                        bar.update(len(block))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    found = _sha256(partial)
    if found != sha256:
        partial.unlink()
        raise ValueError(f"{url}: SHA-256 {found} does not match the expected {sha256}; nothing was cached")
    shutil.move(partial, target)


def fetch_matbench(
    name: str,
    data_home: str | PathLike | None = None,
    url: str | None = None,
    sha256: str | None = None,
    verbose: bool = True,
):
    """Download a matbench task (once) and load it.

    The file is cached under ``data_home/matbench``; a cached file is checked
    against its SHA-256 and never downloaded again.

    Parameters
    ----------
    name : str
        Task name, e.g. ``"matbench_perovskites"`` (see :data:`MATBENCH_TASKS`).
    data_home : str or path-like, default=None
        Cache folder; see :func:`get_data_home`.
    url : str, default=None
        Where to download from; defaults to the matbench address of ``name``.
    sha256 : str, default=None
        Expected checksum; required for tasks not in :data:`MATBENCH_TASKS`.
    verbose : bool, default=True
        Show a download progress bar.

    Returns
    -------
    structures : list of Structure
    y : ndarray of shape (n_samples,)
    ids : list of str

    Raises
    ------
    ValueError
        If the task is unknown and no checksum is given, or the downloaded or
        cached file does not match its checksum.

    Examples
    --------
    >>> X, y, ids = fetch_matbench("matbench_perovskites")  # doctest: +SKIP
    >>> len(X), ids[0]  # doctest: +SKIP
    (18928, 'mb-perovskites-00001')
    """
    expected = sha256 or MATBENCH_TASKS.get(name)
    if expected is None:
        raise ValueError(
            f"no checksum known for {name!r}; pass sha256= (and url=), or use one of {sorted(MATBENCH_TASKS)}"
        )
    folder = get_data_home(data_home) / "matbench"
    folder.mkdir(exist_ok=True)
    target = folder / f"{name}.json.gz"
    if target.is_file():
        found = _sha256(target)
        if found != expected:
            raise ValueError(
                f"cached file {target} has SHA-256 {found}, expected {expected}; delete it to download again"
            )
    else:
        _download(url or _MATBENCH_URL.format(name=name), target, expected, verbose)
    return load_matbench(target)
