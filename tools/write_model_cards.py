"""Write the docs page of this project's released models from their cards (``skcgcnn/data/released/cards.json``).

    python tools/write_model_cards.py
"""

from __future__ import annotations

import json
from pathlib import Path

from skcgcnn._target import column_label

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "skcgcnn" / "data" / "released" / "cards.json"
PAGE = ROOT / "docs" / "released_cards.inc"


def _scores(card: dict) -> list[str]:
    """The test and uncertainty lines: MAE and intervals, or ROC-AUC and prediction sets."""
    test, unit = card["test"], card["units"]
    fifths = ", ".join(f"{c:.0%}" for c in test["coverage_90_by_fifth_of_std"])
    seen = ("on the same crystals; it trained on 60 % of a list that holds all of them, so likely on about 60 % of "
            "them, which favours it")
    if card["task"] == "classification":
        old = (f"ROC-AUC {test['roc_auc_2018_model']:.4g} (the 2018 model ``{card['model_2018']}`` {seen})"
               if card.get("model_2018") else "none (no 2018 model)")
        return [f"- **Test ROC-AUC**: {test['roc_auc']:.4g} (its members alone: {test['member_roc_auc_mean']:.4g}), "
                f"accuracy {test['accuracy']:.1%}; 2018 model: {old}.",
                f"- **Uncertainty**: rank correlation (Spearman) of a wrong label and the std of its probability "
                f"{test['spearman_error_std']:.2f}; 90 % prediction sets (a threshold per band of the std, the most "
                f"probable label always kept) hold the true label for "
                f"{test['coverage_90']:.1%} of the test crystals (by fifth of std, smallest first: {fifths}), "
                f"{test['set_size_90_mean']:.2f} labels on average."]
    old = (f"{_in(test['mae_2018_model'], unit)} (the 2018 model ``{card['model_2018']}`` {seen})"
           if card.get("model_2018") else "none (no 2018 model)")
    # Cards written before the local correction hold the members' mean only.
    mean = ("" if "mae_members_mean" not in test
            else "; no local correction: a share of 0 did best on the validation crystals"
            if test["correction_weight"] == 0
            else f"; their mean before the local correction of share {test['correction_weight']:g}: "
                 f"{test['mae_members_mean']:.4g}")
    return [f"- **Test MAE**: {_in(test['mae'], unit)} (its members alone: {test['member_mae_mean']:.4g}{mean}); "
            f"2018 model: {old}.",
            f"- **Uncertainty**: rank correlation (Spearman) of the absolute error and the std "
            f"{test['spearman_error_std']:.2f}; 90 % intervals cover {test['coverage_90']:.1%} of the test crystals "
            f"(by fifth of std, smallest first: {fifths}), mean width {_in(test['width_90_mean'], unit, 3)}."]


def _in(value: float, unit: str, digits: int = 4) -> str:
    return f"{value:.{digits}g} {unit}".rstrip()


def _card(card: dict) -> list[str]:
    unit, recipe = card["units"], card["recipe"]
    seeds = recipe.get("seeds", range(card["members"]))  # cards before seeds were recorded: 0 to members - 1
    classification = card["task"] == "classification"
    return [
        f"``{card['name']}``", "-" * (len(card["name"]) + 4), "",
        f"- **Predicts**: {card['property']}, " + ("a label with its probability" if classification
                                                   else f"in {unit}" if unit else "dimensionless")
        + (f" ({card['units_note']})" if card.get("units_note") else "")
        + f"; column ``{column_label(card['target'], unit)}`` of ``skcgcnn predict``.",
        f"- **Data**: {card['data']} (``{card['data_folder']}``); {card['data_licence']}.",
        f"- **Split**: ``skcgcnn/data/released/{card['split']}`` (columns ``id``, ``part``): {card['n_train']:,} "
        f"training, {card['n_val']:,} validation (epoch selection" + ("" if classification else ", error model")
        + f"), {card['n_calibration']:,} calibration (" + ("prediction sets" if classification else "intervals")
        + f"), {card['n_test']:,} test crystals; copies of a crystal already in the data set are marked "
        "``duplicate`` and used nowhere.",
        f"- **Recipe**: {card['members']} members, {recipe['estimator']}, {', '.join(map(str, recipe['epochs']))} "
        f"epochs each, best validation epoch kept (epochs {', '.join(map(str, recipe['best_epochs']))}). Rebuild: "
        f"``python benchmarks/release.py --task {_task(card)} --seeds {' '.join(map(str, seeds))} "
        f"--epochs {max(recipe['epochs'])}`` (trains the members, then calibrates, scores and writes the model; "
        "``--minutes M`` splits it into runs that each continue where the last stopped). These members were "
        "trained by " + "; ".join(f"``{c.replace('python release.py', 'python benchmarks/release.py')}``"
                                  for c in recipe["commands"]) + ".",
        *_scores(card),
        f"- **Cite**: {card['reference']}, and the data's source above.", "",
    ]


def _task(card: dict) -> str:
    return card["recipe"]["commands"][0].split("--task ")[1].split()[0]


def page() -> str:
    """The docs page of the released models, as the cards describe them."""
    lines = [".. Written by tools/write_model_cards.py from skcgcnn/data/released/cards.json; do not edit.", ""]
    for card in json.loads(CARDS.read_text()).values():
        lines += _card(card)
    return "\n".join(lines)


def main() -> None:
    PAGE.write_text(page())


if __name__ == "__main__":
    main()
