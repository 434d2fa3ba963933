"""``skcgcnn demo``: a fit on generated ionic crystals, to see the library work in a minute."""

from __future__ import annotations

import argparse
import time


def add_parser(sub) -> None:
    """The ``demo`` command and its options."""
    demo = sub.add_parser("demo", help="fit on a generated set of ionic crystals and report the test MAE")
    demo.add_argument("--n-samples", type=int, default=400, help="number of generated crystals (default 400)")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit a pipeline on generated crystals and print its test MAE next to the mean's."""
    from sklearn.dummy import DummyRegressor
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from ..datasets import make_ionic_crystals
    from ..estimators import CGCNNRegressor
    from ..graphs import CrystalGraphTransformer

    X, y = make_ionic_crystals(args.n_samples, random_state=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=args.seed)
    print(f"{len(X)} generated ionic crystals (target: Ewald energy, eV/atom); "
          f"{len(X_train)} for training, {len(X_test)} for testing")
    pipe = Pipeline([
        ("graph", CrystalGraphTransformer(verbose=1)),
        ("cgcnn", CGCNNRegressor(max_epochs=args.epochs, batch_size=32, random_state=args.seed, verbose=1)),
    ])
    start = time.perf_counter()
    pipe.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    mae = mean_absolute_error(y_test, pipe.predict(X_test))
    baseline = mean_absolute_error(y_test, DummyRegressor().fit(X_train, y_train).predict(X_test))
    print(f"test MAE {mae:.3f} eV/atom (predicting the mean: {baseline:.3f}); fit took {elapsed:.1f} s")
    return 0
