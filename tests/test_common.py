"""The scikit-learn estimator contract, for every public estimator.

``parametrize_with_checks`` yields nothing for estimators whose input is not a
2-D array, so the checks that apply to list-valued X are called one by one,
and the ones that need fitting run on generated crystals.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as checks

from skcgcnn import CGCNNClassifier, CGCNNRegressor, CrystalGraphTransformer

ESTIMATORS = [CrystalGraphTransformer(), CGCNNRegressor(max_epochs=2), CGCNNClassifier(max_epochs=2)]
IDS = [type(e).__name__ for e in ESTIMATORS]
NETS = [e for e in ESTIMATORS if not isinstance(e, CrystalGraphTransformer)]

SKORCH_REASONS = {
    "check_no_attributes_set_in_init": "skorch's __init__ sets history_, initialized_ and virtual_params_",
    "check_set_params": "skorch's set_params acts on callbacks and other components at once, so the "
                        "check's arbitrary values (floats for every parameter) fail there, not at fit",
}

CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_repr,
    checks.check_get_params_invariance,
    checks.check_parameters_default_constructible,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_estimator_tags_renamed,
    checks.check_no_attributes_set_in_init,
    checks.check_set_params,
]


def cases():
    for estimator, name in zip(ESTIMATORS, IDS):
        for check in CHECKS:
            marks = []
            if check.__name__ in SKORCH_REASONS and not isinstance(estimator, CrystalGraphTransformer):
                marks = [pytest.mark.xfail(reason=SKORCH_REASONS[check.__name__], strict=True),
                         pytest.mark.filterwarnings("ignore::UserWarning")]
            yield pytest.param(estimator, check, id=f"{name}-{check.__name__}", marks=marks)


@pytest.mark.parametrize("estimator, check", list(cases()))
def test_sklearn_check(estimator, check):
    check(type(estimator).__name__, clone(estimator))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_tags_declare_list_input(estimator):
    tags = estimator.__sklearn_tags__()
    assert tags.input_tags.two_d_array is False
    assert tags.requires_fit is (not isinstance(estimator, CrystalGraphTransformer))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=IDS)
def test_init_stores_parameters_unchanged(estimator):
    params = estimator.get_params(deep=False)
    rebuilt = type(estimator)(**params)
    for key, value in params.items():
        assert rebuilt.get_params(deep=False)[key] is value


@pytest.mark.parametrize("estimator", NETS, ids=IDS[1:])
def test_no_fitted_attributes_before_fit_and_not_fitted_error(estimator, ionic):
    fresh = clone(estimator)
    skorch_bookkeeping = {"history_", "initialized_", "virtual_params_"}
    fitted_names = [k for k in vars(fresh) if k.endswith("_") and not k.startswith("_")]
    assert set(fitted_names) == skorch_bookkeeping
    with pytest.raises(NotFittedError):
        fresh.predict(ionic[0][:2])


@pytest.mark.parametrize("estimator", NETS, ids=IDS[1:])
def test_fit_returns_self_and_pickles_after_fit(estimator, ionic):
    X, y = ionic[0][:30], ionic[1][:30]
    target = y if is_regressor(estimator) else y < np.median(y)
    fresh = clone(estimator).set_params(random_state=0, batch_size=16)
    assert fresh.fit(X, target) is fresh
    restored = pickle.loads(pickle.dumps(fresh))
    np.testing.assert_array_equal(restored.predict(X[:5]), fresh.predict(X[:5]))


def test_transformer_fit_returns_self_and_works_unfitted(ionic):
    transformer = CrystalGraphTransformer()
    assert transformer.fit(ionic[0][:3]) is transformer
    assert len(CrystalGraphTransformer().transform(ionic[0][:3])) == 3
