"""The project's estimators keep scikit-learn's conventions (clone, get/set_params, fit returns
self, fitted state in trailing-underscore attributes, no side effects), so pipelines,
cross-validation and pickling treat them as they treat scikit-learn's own.

- `BoostedLogistic` takes a numeric (sparse) matrix: it runs scikit-learn's whole suite
  (`parametrize_with_checks`); the checks that cannot apply are listed in
  `expected_failed_checks`, each with its reason, and a check that skips fails here (CI allows
  no skipped test).
- `SessionFeatures` and `OriginalFeatures` take a *session frame* (start_time, end_time, paths),
  not a numeric array. They say so in their tags (`input_tags.two_d_array = False`, as
  scikit-learn's own text and dict vectorizers do), and scikit-learn then skips every check that
  needs data: it cannot make up a session frame. Here they run the checks that need no data, and
  the data checks again on real session frames (synthetic sessions from `gender.synth`).
"""

import os
import pickle
import subprocess
import sys
import warnings
from unittest import SkipTest

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
    parametrize_with_checks,
)
from sklearn.utils.validation import check_is_fitted

from gender import synth
from gender.features import OriginalFeatures, SessionFeatures, session_frame
from gender.model import BoostedLogistic

# Few, small trees and one thread: the suite fits hundreds of times on tiny data.
CLASSIFIERS = [BoostedLogistic(n_estimators=10, n_jobs=1), BoostedLogistic(n_estimators=0)]
TRANSFORMERS = [SessionFeatures(), SessionFeatures(min_df=1), OriginalFeatures()]


def expected_failed_checks(estimator) -> dict[str, str]:
    if not isinstance(estimator, BoostedLogistic):
        return {}
    expected = {
        "check_decision_proba_consistency": (
            "fits on make_blobs data with negative values whatever input_tags.positive_only says; "
            "BoostedLogistic refuses negative X (its input is counts, log1p-scaled)"
        )
    }
    if not os.environ.get("SCIPY_ARRAY_API"):
        expected["check_array_api_input"] = (
            "runs only with SCIPY_ARRAY_API=1 set before SciPy is imported, a switch for the whole process: "
            "test_array_api_checks_pass_in_a_process_of_their_own runs it so"
        )
    return expected


with warnings.catch_warnings():  # "can't test SessionFeatures...": the transformers, as said above
    warnings.simplefilter("ignore", SkipTestWarning)
    all_checks = parametrize_with_checks(
        CLASSIFIERS + TRANSFORMERS, expected_failed_checks=expected_failed_checks, xfail_strict=True
    )


@all_checks
@pytest.mark.filterwarnings("ignore:Can't check dok sparse matrix:UserWarning")  # scikit-learn's own input
def test_scikit_learn_checks(estimator, check):
    try:
        check(estimator)
    except SkipTest as skipped:  # a check that cannot run here is listed above with its reason
        raise AssertionError(f"skipped, and not listed in expected_failed_checks: {skipped}") from skipped


def test_array_api_checks_pass_in_a_process_of_their_own():
    run = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", "check_array_api_input"],
        env={**os.environ, "SCIPY_ARRAY_API": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"{len(CLASSIFIERS)} passed" in run.stdout


def test_the_tags_say_what_the_estimators_take():
    tags = get_tags(BoostedLogistic())
    assert tags.input_tags.sparse and tags.input_tags.positive_only and tags.input_tags.two_d_array
    assert not tags.classifier_tags.multi_class
    for transformer in TRANSFORMERS:
        assert not get_tags(transformer).input_tags.two_d_array


# -- the feature transformers: the checks that need no data, as scikit-learn has them -------------

DATA_FREE_CHECKS = [
    check_estimator_repr,
    check_no_attributes_set_in_init,
    check_get_params_invariance,
    check_set_params,
    check_parameters_default_constructible,
    check_do_not_raise_errors_in_init_or_set_params,
    check_mixin_order,
    check_valid_tag_types,
    check_estimator_tags_renamed,
]


@pytest.mark.parametrize("check", DATA_FREE_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("transformer", TRANSFORMERS, ids=repr)
def test_data_free_scikit_learn_checks(transformer, check):
    check(type(transformer).__name__, transformer)


# -- the feature transformers: the data checks, on session frames ---------------------------------


def synthetic_frame(sessions: int, seed: int) -> pd.DataFrame:
    chunks = list(synth.generate(sessions, seed=seed))
    return session_frame(
        pd.concat([pd.DataFrame(rows) for rows, _ in chunks], ignore_index=True),
        pd.concat([pd.DataFrame(views) for _, views in chunks], ignore_index=True),
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frame = synthetic_frame(120, seed=3)
    assert frame["paths"].map(len).max() > 1  # steps between views exist
    return frame


@pytest.fixture(scope="module")
def other_frame() -> pd.DataFrame:
    return synthetic_frame(80, seed=5)


@pytest.fixture(params=TRANSFORMERS, ids=repr)
def transformer(request):
    return clone(request.param)


def same(a: sp.spmatrix, b: sp.spmatrix) -> bool:
    return a.shape == b.shape and (a != b).nnz == 0


def test_fit_returns_self_and_leaves_parameters_and_input_alone(transformer, frame):
    """check_estimators_fit_returns_self, check_dont_overwrite_parameters,
    check_estimators_overwrite_params, and the session frame itself is not changed."""
    params = joblib.hash(transformer.get_params())
    attributes = set(vars(transformer))
    original = frame.copy(deep=True)

    assert transformer.fit(frame) is transformer

    assert joblib.hash(transformer.get_params()) == params
    added = set(vars(transformer)) - attributes
    assert added and all(name.endswith("_") and not name.startswith("_") for name in added), added
    pd.testing.assert_frame_equal(frame, original)


def test_transform_changes_nothing_in_the_estimator(transformer, frame):
    """check_dict_unchanged."""
    transformer.fit(frame)
    state = joblib.hash(vars(transformer))
    transformer.transform(frame)
    assert joblib.hash(vars(transformer)) == state


def test_unfitted_transform_raises_not_fitted(transformer, frame):
    """check_estimators_unfitted and check_fit_check_is_fitted."""
    with pytest.raises(NotFittedError):
        transformer.transform(frame)
    with pytest.raises(NotFittedError):
        check_is_fitted(transformer)
    check_is_fitted(transformer.fit(frame))


def test_output_rows_columns_and_names(transformer, frame):
    """check_transformer_general and check_transformer_get_feature_names_out: one row a session,
    one name a column, fit_transform as fit then transform."""
    matrix = transformer.fit_transform(frame)
    assert sp.issparse(matrix) and matrix.format == "csr" and matrix.dtype == np.float32
    assert matrix.shape[0] == len(frame) and matrix.shape[1] > 10
    names = transformer.get_feature_names_out()
    assert len(names) == matrix.shape[1] == len(set(names))
    assert same(clone(transformer).fit(frame).transform(frame), matrix)


def test_fit_is_idempotent(transformer, frame, other_frame):
    """check_fit_idempotent: a refit forgets the earlier fit."""
    expected = clone(transformer).fit(frame).transform(frame)
    transformer.fit(other_frame)
    assert not same(transformer.transform(frame), expected)  # the other fit did learn something else
    assert same(transformer.fit(frame).transform(frame), expected)


def test_rows_do_not_depend_on_each_other(transformer, frame):
    """check_methods_sample_order_invariance and check_methods_subset_invariance: a session's row
    is the same in any order, in any batch and alone (the Predict page's frame of one)."""
    matrix = transformer.fit(frame).transform(frame)
    order = np.random.default_rng(0).permutation(len(frame))
    assert same(transformer.transform(frame.iloc[order]), matrix[order])
    assert same(transformer.transform(frame.iloc[10:30]), matrix[10:30])
    for row in (0, 7, len(frame) - 1):
        assert same(transformer.transform(frame.iloc[[row]]), matrix[[row]])


def test_fit_on_one_session(transformer, frame):
    """check_fit2d_1sample: one session is enough to fit."""
    matrix = transformer.fit(frame.iloc[:1]).transform(frame)
    assert matrix.shape[0] == len(frame)


def test_pickle_round_trip(transformer, frame):
    """check_estimators_pickle."""
    transformer.fit(frame)
    restored = pickle.loads(pickle.dumps(transformer))
    assert same(restored.transform(frame), transformer.transform(frame))
    assert list(restored.get_feature_names_out()) == list(transformer.get_feature_names_out())


def test_in_a_pipeline_as_trained(transformer, frame):
    """check_pipeline_consistency: the pipeline answers as its steps run by hand."""
    y = (np.random.default_rng(1).random(len(frame)) < 0.3).astype(int)
    pipeline = Pipeline([("features", transformer), ("model", BoostedLogistic(n_estimators=5, n_jobs=1))]).fit(frame, y)
    by_hand = BoostedLogistic(n_estimators=5, n_jobs=1).fit(clone(transformer).fit_transform(frame), y)
    np.testing.assert_array_equal(
        pipeline.predict_proba(frame), by_hand.predict_proba(pipeline["features"].transform(frame))
    )


# -- BoostedLogistic beyond the suite --------------------------------------------------------------


def test_boosted_logistic_serves_a_model_saved_before_it_recorded_n_features_in():
    rng = np.random.default_rng(0)
    X = sp.random(200, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
    X.data = rng.integers(1, 4, size=X.nnz).astype(np.float32)
    y = (rng.random(200) < 0.4).astype(int)
    model = BoostedLogistic(n_estimators=5, n_jobs=1).fit(X, y)
    expected = model.decision_function(X)
    assert model.n_features_in_ == 30
    del model.n_features_in_  # as unpickled from a file written before it was set
    np.testing.assert_array_equal(model.decision_function(X), expected)
    with pytest.raises(ValueError, match="Negative values"):
        clone(model).fit(-X, y)
    with pytest.raises(ValueError, match="Only binary classification"):
        clone(model).fit(X, np.arange(200) % 3)
