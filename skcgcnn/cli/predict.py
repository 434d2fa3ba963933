"""``skcgcnn predict`` and ``skcgcnn models``: predictions from a model file or a released model by name."""

from __future__ import annotations

import argparse
import sys
import warnings

from .._text import count
from ._common import writable


def add_parsers(sub) -> None:
    """The ``predict`` and ``models`` commands and their options."""
    predict = sub.add_parser("predict", help="predict with a saved model")
    predict.add_argument("model", help="a model file written by 'skcgcnn fit' or skcgcnn.persistence.save_model, "
                                       "the name of a released model (see 'skcgcnn models'), or an original-format "
                                       ".pth.tar checkpoint; a pickle (joblib) only with --trust-pickle")
    predict.add_argument("--trust-pickle", action="store_true",
                         help="read MODEL even if it is a pickle (joblib.dump): loading a pickle runs any code it "
                              "holds, so pass this only for files you made or whose source you trust")
    predict.add_argument("inputs", nargs="+",
                         help="structure files, folders of them, CSV files, or ASE databases (*.db)")
    predict.add_argument("--structure-column", default="cif", help="CSV column with CIF text")
    predict.add_argument("--id-column", default="id",
                         help="CSV column with ids; in an ASE database the key with ids ('id': the row ids)")
    predict.add_argument("-o", "--output", default="predictions.csv", help="the CSV file written")
    predict.add_argument("--force", action="store_true", help="overwrite an existing output file")
    predict.add_argument("--strict", action="store_true",
                         help="refuse structures with elements the model never saw in training (listed in "
                              "OUTPUT.errors.csv, exit status 2), instead of predicting and flagging them in the "
                              "column unseen_elements")
    predict.add_argument("--chunk-size", type=int, default=4096,
                         help="structures read, featurized, predicted and written at a time")
    predict.add_argument("--resume", action="store_true",
                         help="continue an interrupted run from OUTPUT.partial, skipping the ids written")
    predict.add_argument("--confidence", type=float, default=0.9,
                         help="level of the intervals (columns lower_90, upper_90 at the default) or prediction sets "
                              "(column set_90) that models with calibrated uncertainty, such as this project's "
                              "released ones, write")
    predict.add_argument("--on-error", choices=["stop", "skip"], default="stop",
                         help="a structure that cannot be read stops the run, or is listed in OUTPUT.errors.csv")
    predict.set_defaults(func=run)

    models = sub.add_parser("models", help="list the released models that 'predict' takes by name")
    models.set_defaults(func=list_models)


def run(args: argparse.Namespace) -> int:
    """Predict every input into one CSV file, chunk by chunk."""
    from ..pretrained import load_any
    from ..streaming import predict_to_csv

    output = writable(args.output, args.force)
    model = load_any(args.model, trust_pickle=args.trust_pickle)
    print(f"predicting with {args.model}, {args.chunk_size} structures at a time")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*absent from the training data", UserWarning)  # reported below
        counts = predict_to_csv(model, args.inputs, output, args.structure_column, args.id_column,
                                chunk_size=args.chunk_size, resume=args.resume, force=args.force,
                                on_error=args.on_error, strict=args.strict, confidence_level=args.confidence)
    print(f"{count(counts['written'] + counts['resumed'], 'prediction')} written to {output}"
          + (f" ({counts['resumed']} from the interrupted run)" if counts["resumed"] else ""))
    if counts["unseen"]:
        print(f"warning: {count(counts['unseen'], 'structure holds', 'structures hold')} elements absent from the "
              "model's training data; their predictions are extrapolations (column unseen_elements)", file=sys.stderr)
    if counts["refused"]:
        print(f"skcgcnn: {count(counts['refused'], 'structure')} refused, listed with the reason in "
              f"{output.with_name(output.name + '.errors.csv')}", file=sys.stderr)
        return 2 if args.strict else 0
    return 0


def list_models(args: argparse.Namespace) -> int:
    """Tables of the released models: this project's first, then the 2018 ones."""
    from ..registry import MODELS, RELEASED

    if RELEASED:
        _table([("name", "property", "units", "training crystals", "test (own split)", "90 % intervals/sets cover")]
               + [(m.name, m.property, m.units or "-", f"{m.n_train:,}", f"{m.metric} {m.test_score:.4g}",
                   f"{m.card['test']['coverage_90']:.1%}") for m in RELEASED.values()])
        print("Trained by this project: ensembles with calibrated error bars; split files, recipes and test "
              "figures in their model cards (docs: Released models).\n")
    _table([("name", "property", "units", "training crystals", "validation")]
           + [(m.name, m.property, m.units, f"{m.n_train:,}", f"{m.metric} {m.validation_score:g}")
              for m in MODELS.values()])
    print("Released with the original CGCNN (Xie & Grossman, PRL 120, 145301, 2018; MIT licence), trained on "
          "Materials Project data. Use a name wherever a model file goes: skcgcnn predict NAME structures/")
    print("Note: scored on Materials Project crystals, a model trained on them may have seen them: the 2018 models' "
          "training crystals are unknown, so such scores overstate their accuracy; this project's models name "
          "theirs (split files).")
    return 0


def _table(rows: list[tuple]) -> None:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
