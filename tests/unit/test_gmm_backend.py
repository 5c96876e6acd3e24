"""GMM back-end and fusion against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture

from audioexp.backends import GMMBackend, LogisticRegressionFusion, diagonal_gmm_log_likelihood
from audioexp.metrics.verification import equal_error_rate


def test_log_likelihood_equals_sklearn_with_the_same_parameters():
    rng = np.random.default_rng(0)
    gmm = GaussianMixture(7, covariance_type="diag", random_state=0).fit(rng.standard_normal((400, 5)) * 3)
    x = rng.standard_normal((50, 5)) * 4
    ours = diagonal_gmm_log_likelihood(x, gmm.weights_, gmm.means_, gmm.covariances_)
    np.testing.assert_allclose(ours, gmm.score_samples(x), rtol=1e-10, atol=1e-9)


def test_llr_is_difference_of_mean_frame_log_likelihoods_and_separates_classes():
    rng = np.random.default_rng(1)
    genuine = [rng.standard_normal((30, 3)) + 1.0 for _ in range(20)]
    spoof = [rng.standard_normal((30, 3)) - 1.0 for _ in range(20)]
    backend = GMMBackend(n_components=4, max_iter=50).fit(genuine + spoof, [1] * 20 + [0] * 20)
    test = [rng.standard_normal((30, 3)) + 1.0, rng.standard_normal((30, 3)) - 1.0]
    scores = backend.score(test)
    expected = [backend.models[1].score(f) - backend.models[0].score(f) for f in test]  # sklearn: mean log-lik
    np.testing.assert_allclose(scores, expected, rtol=1e-10)
    assert scores[0] > 0 > scores[1]
    all_scores = backend.score(genuine + spoof)
    assert equal_error_rate(all_scores, np.array([1] * 20 + [0] * 20))[0] == 0.0


def test_backend_errors():
    with pytest.raises(ValueError, match="class 0"):
        GMMBackend(n_components=1).fit([np.zeros((5, 2))], [1])
    with pytest.raises(ValueError, match="cannot train"):
        GMMBackend(n_components=10).fit([np.zeros((5, 2)), np.ones((5, 2))], [1, 0])
    with pytest.raises(RuntimeError):
        GMMBackend().score([np.zeros((2, 2))])


def test_fusion_equals_sklearn_logistic_regression_and_helps():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    s1 = labels + rng.standard_normal(400)
    s2 = labels + rng.standard_normal(400)
    scores = np.stack([s1, 2 * s2 - 1], axis=1)
    fusion = LogisticRegressionFusion().fit(scores[:200], labels[:200])
    ref = LogisticRegression(C=1e4, class_weight="balanced", max_iter=1000).fit(scores[:200], labels[:200])
    np.testing.assert_allclose(fusion(scores[200:]), ref.decision_function(scores[200:]), rtol=1e-8)
    fused = equal_error_rate(fusion(scores[200:]), labels[200:])[0]
    singles = [equal_error_rate(scores[200:, k], labels[200:])[0] for k in range(2)]
    assert fused < min(singles)
