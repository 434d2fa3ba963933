"""Train/validation/test splits: drawn at random, or read from a file that fixes them.

A split file is a CSV table with the columns ``id`` and ``set`` (``train``,
``val`` or ``test``), such as the ``split.csv`` of a run folder; it makes a
score reproducible by anyone who holds the same data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SET_NAMES", "read_split", "set_column", "train_val_test_split"]

#: Spellings accepted in a split file's ``set`` column, and the set each names.
SET_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
             "test": "test"}


def read_split(path, ids: list[str]) -> np.ndarray:
    """The set of every id, read from a split file.

    Parameters
    ----------
    path : str or path-like
        A CSV file with the columns ``id`` and ``set``.
    ids : list of str
        The ids of the data, unique; every one must be in the file and the
        file must list no other.

    Returns
    -------
    ndarray of str
        ``"train"``, ``"val"`` or ``"test"`` for each id, in the order of ``ids``.

    Raises
    ------
    ValueError
        If the file is missing or malformed, names an unknown set, lists an
        id twice, or its ids and ``ids`` differ.
    """
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such split file") from None
    if not {"id", "set"} <= set(table.columns):
        raise ValueError(f"{path}: a split file has the columns id and set, found {list(table.columns)}")
    sets = table["set"].str.strip().str.lower().map(SET_NAMES)
    for line, (raw, mapped) in enumerate(zip(table["set"], sets), start=2):
        if not isinstance(mapped, str):
            raise ValueError(f"{path}: line {line}: set {raw!r} is not train, val or test")
    repeated = table["id"][table["id"].duplicated()]
    if len(repeated):
        raise ValueError(f"{path}: id {repeated.iloc[0]!r} is listed twice")
    if len(set(ids)) != len(ids):
        raise ValueError("a split file needs the ids of the data to be unique")
    mapping = dict(zip(table["id"], sets))
    missing = [i for i in ids if i not in mapping]
    unknown = sorted(set(mapping) - set(ids))
    for what, found in (("ids of the data are not in the split file", missing),
                        ("ids of the split file are not in the data", unknown)):
        if found:
            raise ValueError(f"{path}: {len(found)} {what}, e.g. {found[:3]}")
    return np.array([mapping[i] for i in ids])


def train_val_test_split(n: int, val_size: float, test_size: float, random_state=None, stratify=None):
    """Positions of a random three-way split.

    Parameters
    ----------
    n : int
        Number of crystals.
    val_size, test_size : float
        Shares of all ``n`` for validation and testing (0 leaves a set empty).
    random_state : int or None
    stratify : array-like of shape (n,), default=None
        Labels whose proportions each set keeps (classification).

    Returns
    -------
    train, val, test : ndarray of int

    Examples
    --------
    >>> train, val, test = train_val_test_split(100, 0.1, 0.2, random_state=0)
    >>> len(train), len(val), len(test)
    (70, 10, 20)
    """
    from sklearn.model_selection import train_test_split

    indices = np.arange(n)
    if test_size > 0:
        rest, test = train_test_split(indices, test_size=test_size, random_state=random_state, stratify=stratify)
    else:
        rest, test = indices, indices[:0]
    if val_size > 0:
        share = val_size / (1 - test_size)
        train, val = train_test_split(rest, test_size=share, random_state=random_state,
                                      stratify=None if stratify is None else np.asarray(stratify)[rest])
    else:
        train, val = rest, rest[:0]
    return train, val, test


def set_column(n: int, train, val, test) -> np.ndarray:
    """The set name of each of ``n`` crystals, from the positions of the three sets.

    Examples
    --------
    >>> set_column(4, [0, 3], [1], [2]).tolist()
    ['train', 'val', 'test', 'train']
    """
    column = np.empty(n, dtype=object)
    for name, index in (("train", train), ("val", val), ("test", test)):
        column[np.asarray(index, dtype=int)] = name
    return column
