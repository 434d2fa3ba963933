"""The skcgcnn model file's envelope: its format name and version, and reading it without unpickling anything.

What the records inside mean is :mod:`skcgcnn.persistence`'s; this module
builds no estimator, so any part of the package may read a model file's
content through it.
"""

from __future__ import annotations

from pathlib import Path

from ._safe_load import UnreadableFile, load_plain

__all__ = ["FORMAT", "FORMAT_VERSION", "read_content"]

FORMAT = "skcgcnn-model"
# Version 2 added ensembles, version 3 calibrated ensembles; each file is written with the oldest version that holds
# it, so older readers take what they can.
FORMAT_VERSION = 3


def read_content(path) -> dict:
    """The content of a skcgcnn model file (plain data and tensors), checked to be one this version reads.

    Raises
    ------
    ValueError
        One line naming the file: missing, empty, damaged, a pickle or anything else that is not a model
        file (refused unread), or a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    with open(path, "rb") as handle:
        head = handle.read(2)
    # every pickle of protocol 2 or later opens with PROTO (0x80) and its protocol number
    pickled = len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    try:
        content = load_plain(path)
    except UnreadableFile as exc:
        if exc.refused or pickled:
            asks = f"it asks to load {exc.refused}: " if exc.refused else ""
            raise ValueError(
                f"{path}: refused unread: {asks}it is a pickle (such as joblib.dump writes), not a skcgcnn "
                "model file, and loading a pickle can run any code it holds; load it only if you trust its "
                "source (joblib.load in Python, --trust-pickle on the command line)"
            ) from None
        raise ValueError(f"{path}: not a skcgcnn model file, or a truncated or damaged one") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(f"{path}: not a skcgcnn model file")
    version = content.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        written_by = content.get("versions", {}).get("skcgcnn", "a newer skcgcnn")
        raise ValueError(
            f"{path}: model format version {version} (written by skcgcnn {written_by}); this skcgcnn reads "
            f"versions up to {FORMAT_VERSION}: upgrade skcgcnn to load it"
        )
    return content
