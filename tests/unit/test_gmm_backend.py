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


# --- torch EM against scikit-learn -------------------------------------------------------------

def _mixture_data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.standard_normal((700, 6)) * s + m for m, s in ((0, 1), (3, 0.5), (-2, 2))])


def test_torch_log_likelihood_equals_sklearn_with_identical_parameters():
    import torch

    from audioexp.backends.gmm_torch import diagonal_gmm_weighted_log_prob

    x = _mixture_data(1)
    gmm = GaussianMixture(9, covariance_type="diag", random_state=0).fit(x)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    wlp = diagonal_gmm_weighted_log_prob(t(x), t(gmm.weights_), t(gmm.means_), t(gmm.covariances_))
    np.testing.assert_allclose(wlp.numpy(), gmm._estimate_weighted_log_prob(x), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(torch.logsumexp(wlp, 1).numpy(), gmm.score_samples(x), rtol=1e-12, atol=1e-10)


def test_torch_em_step_from_the_same_initialisation_equals_sklearns_update():
    import torch

    from audioexp.backends.gmm_torch import TorchGaussianMixture, em_step

    x = _mixture_data(2)
    sk = GaussianMixture(8, covariance_type="diag", max_iter=1, random_state=5).fit(x)  # k-means init + one step
    ours = TorchGaussianMixture(8, max_iter=1, random_state=5).fit(x)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=1e-10, atol=1e-12, err_msg=name)
    # the step alone, from sklearn's own parameters, in small chunks: sklearn's next update
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    w, m, v, mean_ll = em_step(t(x), t(sk.weights_), t(sk.means_), t(sk.covariances_), sk.reg_covar, chunk_size=100)
    log_prob_norm, log_resp = sk._e_step(x)
    sk._m_step(x, log_resp)
    np.testing.assert_allclose(w.numpy(), sk.weights_, rtol=1e-10)
    np.testing.assert_allclose(m.numpy(), sk.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(v.numpy(), sk.covariances_, rtol=1e-10)
    assert abs(mean_ll - log_prob_norm) < 1e-10


def test_torch_em_fit_matches_sklearn_iterations_and_backend_scores():
    from audioexp.backends.gmm_torch import TorchGaussianMixture

    x = _mixture_data(3)
    sk = GaussianMixture(6, covariance_type="diag", max_iter=100, tol=1e-4, random_state=1).fit(x)
    ours = TorchGaussianMixture(6, max_iter=100, tol=1e-4, random_state=1, chunk_size=257).fit(x)
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ == sk.converged_
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.score_samples(x), sk.score_samples(x), rtol=1e-9)
    rng = np.random.default_rng(4)
    feats = [rng.standard_normal((40, 3)) + (1.0 if i < 10 else -1.0) for i in range(20)]
    labels = [1] * 10 + [0] * 10
    a = GMMBackend(n_components=3, max_iter=20).fit(feats, labels).score(feats)
    b = GMMBackend(n_components=3, max_iter=20, implementation="torch").fit(feats, labels).score(feats)
    np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="implementation"):
        GMMBackend(implementation="cuml")
