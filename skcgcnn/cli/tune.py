"""``skcgcnn tune``: a hyperparameter search with Optuna, pruned, resumable and shareable between workers."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from ..files import MODEL_SUFFIX
from ._common import (OUTPUT_HELP, add_data_options, add_model_options, as_labels, is_classification,
                      load_training_data, network, save, writable)


def add_parser(sub) -> None:
    """The ``tune`` command and its options."""
    tune = sub.add_parser("tune", help="search hyperparameters with Optuna (pruned, resumable, shareable)")
    add_data_options(tune)
    add_model_options(tune)
    tune.add_argument("--n-trials", type=int, default=20, help="trials run by this process")
    tune.add_argument("--timeout", type=float, default=None, help="seconds after which no trial starts")
    tune.add_argument("--storage", default=None,
                      help="e.g. sqlite:///tune.db, postgresql://..., or journal:/shared/tune.log")
    tune.add_argument("--study-name", default=None, help="study to create or resume in --storage")
    tune.add_argument("--sampler-seed", type=int, default=None,
                      help="seed of the sampler (default: --seed without --storage; a fresh one with it, so that "
                           "workers and resumed runs do not repeat each other's trials)")
    tune.add_argument("--search-graphs", action="store_true",
                      help="also search radius and max_num_nbr (re-featurizes per setting)")
    tune.add_argument("-o", "--output", default="best" + MODEL_SUFFIX, help=OUTPUT_HELP.format("best" + MODEL_SUFFIX))
    tune.add_argument("--force", action="store_true", help="overwrite an existing output file")
    tune.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search, report the best trial and its test scores, and save the refitted best model."""
    from sklearn.pipeline import Pipeline

    from ..estimators import check_device
    from ..graphs import CrystalGraphTransformer
    from ..metrics import held_out_scores
    from ..splits import train_val_test_split
    from ..tuning import NoTrialCompleted, default_search_space, tune

    check_device(args.device)
    output = writable(args.output, args.force)
    X, y, _, atom_features = load_training_data(args)
    classification = is_classification(args, np.asarray(y))
    y = as_labels(y) if classification else y
    graphs = CrystalGraphTransformer(atom_features=atom_features, n_jobs=args.n_jobs, verbose=1).transform(X)
    rest, _, test = train_val_test_split(len(graphs), 0.0, args.test_size, args.seed,
                                         stratify=np.asarray(y) if classification else None)
    net = network(args, classification).set_params(verbose=0)
    pipe = Pipeline([("graph", CrystalGraphTransformer(atom_features=atom_features, n_jobs=args.n_jobs)),
                     ("cgcnn", net)])
    # Graph parameters are searched only when the structures can be re-featurized.
    space = default_search_space(pipe) if args.search_graphs else default_search_space(net)
    estimator = pipe if args.search_graphs else net
    data = [X[i] for i in rest] if args.search_graphs else graphs[rest]
    print(f"{len(graphs)} crystals: {len(rest)} for the search, {len(test)} for testing")
    try:
        best, study = tune(estimator, data, np.asarray(y)[rest], search_space=space, n_trials=args.n_trials,
                           timeout=args.timeout, storage=args.storage, study_name=args.study_name,
                           random_state=args.seed, sampler_seed=args.sampler_seed, show_progress_bar=True)
    except NoTrialCompleted as exc:
        raise ValueError(f"{exc}; nothing was written") from None
    states = Counter(t.state.name.lower() for t in study.trials)
    print(f"best of {states['complete']} completed trials ({states['pruned']} pruned, {states['fail']} failed): "
          f"score {study.best_value:.5g} with {json.dumps(study.best_params)}")
    test_inputs = [X[i] for i in test] if args.search_graphs else graphs[test]
    report = held_out_scores(best, test_inputs, np.asarray(y)[test])
    print(json.dumps({"test": report}, indent=2))
    if not args.search_graphs:
        best = Pipeline([("graph", CrystalGraphTransformer(atom_features=atom_features)), ("cgcnn", best)])
    save(best, output, force=args.force)
    print(f"best model written to {output}")
    return 0
