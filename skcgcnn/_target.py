"""What a model predicts, as a name and a unit, and the column label made of them."""

from __future__ import annotations

__all__ = ["describe_target", "column_label"]


def describe_target(model) -> tuple[str | None, str | None]:
    """The target's name and unit a fitted model carries: its parameters, a released model's card, or its members'.

    Parameters
    ----------
    model : estimator, ensemble or Pipeline

    Returns
    -------
    (name, unit) : tuple of str or None
    """
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        model = model[-1]
    card = getattr(model, "card_", None)
    if card and card.get("target"):
        return card["target"], card.get("units")
    params = model.get_params(deep=False) if hasattr(model, "get_params") else {}
    if params.get("target_name"):
        return params["target_name"], params.get("target_unit")
    for inner in (params.get("estimator"), *getattr(model, "estimators_", [])[:1]):
        if inner is not None and inner is not model:
            name, unit = describe_target(inner)
            if name:
                return name, unit
    return None, None


def column_label(name: str | None, unit: str | None, fallback: str = "prediction") -> str:
    """``"band_gap (eV)"`` from a name and a unit; ``fallback`` without a name."""
    if not name:
        return fallback
    return f"{name} ({unit})" if unit else name
