"""Words in messages: a number with its noun in the right number."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 entry"``, ``"2 entries"``: ``n`` and ``noun``, or ``plural`` (default ``noun + "s"``) unless ``n`` is 1.

    Examples
    --------
    >>> count(1, "pair"), count(3, "entry", "entries")
    ('1 pair', '3 entries')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
