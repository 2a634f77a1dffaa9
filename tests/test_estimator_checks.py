"""scikit-learn's conformance suite (check_estimator) on both estimators.

Every check of scikit-learn's ``parametrize_with_checks`` runs as its own
test. No check is expected to fail: each one that cannot apply would be
named in ``EXPECTED_FAILED`` with the reason, and there are none today
(scikit-learn itself skips ``check_array_api_input`` unless SCIPY_ARRAY_API
is set). ``check_estimators_dtypes`` on ParametricTSNE feeds integer data
(values 0-2) whose float32 batch P has rows with more tied nearest
neighbours than the perplexity: it fails until the float32 perplexity
search is fixed (issue 17, defect 1), and is deliberately not marked here.
The settings only make the fits short: a perplexity the checks'
10-30 point data sets allow, few iterations, one epoch.
"""
import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from tsne_ops import TSNE, ParametricTSNE

ESTIMATORS = [
    TSNE(perplexity=2.0, early_exaggeration_iter=50, max_iter=100, random_state=0),
    ParametricTSNE(perplexity=2.0, epochs=1, random_state=0),
]

# check name -> reason, per estimator class (none: both pass every check).
EXPECTED_FAILED = {"TSNE": {}, "ParametricTSNE": {}}


def _expected_failed(estimator):
    return EXPECTED_FAILED[type(estimator).__name__]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # Keras' numpy-2 DeprecationWarning in predict is not ours to judge.
        warnings.simplefilter("ignore", DeprecationWarning)
        check(estimator)

