"""Reading PyTorch files without running anything they hold: tensors and plain data only."""

from __future__ import annotations

import re
import warnings

import torch


class UnreadableFile(Exception):
    """A file ``torch.load`` could not read safely.

    Attributes
    ----------
    refused : str or None
        The global the file asked to load (it was refused unread), or None for a damaged or foreign file.
    """

    def __init__(self, refused: str | None):
        super().__init__(refused)
        self.refused = refused


def load_plain(path, allowed_globals=()):
    """``torch.load`` with ``weights_only=True`` on the CPU, plus ``allowed_globals``.

    Raises
    ------
    UnreadableFile
        With the global the file asked for, when it asked for one.
    """
    try:
        with torch.serialization.safe_globals(list(allowed_globals)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch names the refused global only in its message text.
        found = re.search(r"GLOBAL (\S+)", str(exc))
        raise UnreadableFile(found.group(1) if found else None) from None
