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

#: scikit-learn step for step: its KMeans initialisation, float64 products
EXACT = {"init_params": "kmeans", "precision": "float64"}


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
    ours = TorchGaussianMixture(8, max_iter=1, random_state=5, **EXACT).fit(x)
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
    ours = TorchGaussianMixture(6, max_iter=100, tol=1e-4, random_state=1, chunk_size=257, **EXACT).fit(x)
    assert ours.n_iter_ == sk.n_iter_ and ours.converged_ == sk.converged_
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.score_samples(x), sk.score_samples(x), rtol=1e-9)
    rng = np.random.default_rng(4)
    feats = [rng.standard_normal((40, 3)) + (1.0 if i < 10 else -1.0) for i in range(20)]
    labels = [1] * 10 + [0] * 10
    a = GMMBackend(n_components=3, max_iter=20, implementation="sklearn").fit(feats, labels).score(feats)
    b = GMMBackend(n_components=3, max_iter=20, implementation="torch", **EXACT).fit(feats, labels).score(feats)
    np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="implementation"):
        GMMBackend(implementation="cuml")


# --- the fast torch EM: float32 E-step, torch k-means, convergence -------------------------------

def _clusters(n_clusters: int = 12, dim: int = 8, per: int = 150, spread: float = 10.0, seed: int = 0):
    """Well-separated Gaussian clusters with per-dimension scales, offset from the origin."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-spread, spread, (n_clusters, dim)) + 20.0
    scales = rng.uniform(0.2, 1.0, (n_clusters, dim))
    labels = np.repeat(np.arange(n_clusters), per)
    return centers[labels] + scales[labels] * rng.standard_normal((len(labels), dim)), centers


def test_float32_em_from_the_same_init_reaches_sklearns_log_likelihood():
    """20 EM iterations from scikit-learn's initialisation: float64 is sklearn to 1e-9; float32
    (E-step and exp in float32, statistics float64) ends within 1e-4 nats per frame."""
    from audioexp.backends.gmm_torch import TorchGaussianMixture

    x = _mixture_data(5)
    sk = GaussianMixture(12, covariance_type="diag", max_iter=20, tol=0.0, random_state=3).fit(x)
    for precision, tolerance in (("float64", 1e-9), ("float32", 1e-4)):
        ours = TorchGaussianMixture(12, max_iter=20, tol=0.0, random_state=3, init_params="kmeans",
                                    precision=precision, chunk_size=500).fit(x)
        assert ours.n_iter_ == 20 and not ours.converged_
        assert abs(ours.score(x) - sk.score(x)) < tolerance, precision
        assert abs(ours.lower_bound_ - sk.lower_bound_) < tolerance, precision
        np.testing.assert_allclose(ours.score_samples(x), sk.score_samples(x), atol=100 * tolerance)


def test_float32_e_step_recomputes_ill_conditioned_components_in_float64():
    """A component collapsed onto a point far from the data's centre (variance ~ reg_covar):
    its float32 log-probabilities would cancel to nothing; the step equals float64's."""
    import torch

    from audioexp.backends.gmm_torch import augmented_frames, em_step

    rng = np.random.default_rng(6)
    x = torch.as_tensor(np.concatenate([rng.standard_normal((500, 4)), np.full((5, 4), 30.0)
                                        + 1e-3 * rng.standard_normal((5, 4))]))
    weights = torch.tensor([0.5, 0.49, 0.01], dtype=torch.float64)
    means = torch.tensor([[0.5] * 4, [-0.5] * 4, [30.0] * 4], dtype=torch.float64)
    variances = torch.tensor([[1.0] * 4, [1.0] * 4, [1e-6] * 4], dtype=torch.float64)
    exact = em_step(x, weights, means, variances, augmented=augmented_frames(x))
    mixed = em_step(x, weights, means, variances, augmented=augmented_frames(x, torch.float32))
    assert abs(mixed[3] - exact[3]) < 1e-5
    for a, b in zip(mixed[:3], exact[:3]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-9)
    assert torch.isfinite(mixed[2]).all() and (mixed[2] > 0).all()


def test_torch_kmeans_matches_sklearn_inertia_and_recovers_clusters():
    import torch
    from sklearn.cluster import KMeans

    from audioexp.backends.gmm_torch import kmeans

    x, true_centers = _clusters()
    for dtype in (torch.float64, torch.float32):
        centers, labels, inertia, _ = kmeans(torch.as_tensor(x, dtype=dtype), 12, torch.Generator().manual_seed(0))
        reference = KMeans(12, n_init=1, random_state=0).fit(x).inertia_
        assert abs(inertia - reference) / reference < 0.03
        # every true cluster found: its frames labelled alike, the centre its frames' mean
        truth = np.repeat(np.arange(12), 150)
        assert len(set(zip(truth.tolist(), labels.tolist()))) == 12 == len(set(labels.tolist()))
        sample_means = np.stack([x[truth == c].mean(0) for c in range(12)])
        nearest = np.linalg.norm(centers.double().numpy()[:, None] - sample_means[None], axis=2).min(0)
        assert nearest.max() < 1e-4
        assert np.linalg.norm(sample_means - true_centers, axis=1).max() < 0.5
    # more components than clusters, larger data: still within a few % of sklearn
    x, _ = _clusters(n_clusters=30, dim=10, per=100, spread=3.0, seed=1)
    _, _, inertia, _ = kmeans(torch.as_tensor(x, dtype=torch.float32), 40, torch.Generator().manual_seed(1))
    reference = KMeans(40, n_init=1, random_state=1).fit(x).inertia_
    assert inertia < 1.05 * reference


def test_default_torch_fit_reaches_sklearns_optimum_on_separated_clusters():
    """Each with its own initialisation (torch k-means vs sklearn KMeans) and float32: the
    same optimum, log-likelihood per frame within 1e-4, and the same LLR scores."""
    from audioexp.backends.gmm_torch import TorchGaussianMixture

    x, _ = _clusters()
    sk = GaussianMixture(12, covariance_type="diag", max_iter=100, tol=1e-6, random_state=0).fit(x)
    ours = TorchGaussianMixture(12, max_iter=100, tol=1e-6, random_state=0).fit(x)
    assert sk.converged_ and ours.converged_
    assert abs(ours.score(x) - sk.score(x)) < 1e-4
    feats, labels = [x, x[::-1] + 0.5], [1, 0]  # genuine: the clusters; spoof: shifted
    a = GMMBackend(n_components=12, max_iter=100, tol=1e-6, implementation="sklearn").fit(feats, labels)
    b = GMMBackend(n_components=12, max_iter=100, tol=1e-6).fit(feats, labels)  # auto: torch, float32
    assert isinstance(b.models[1], TorchGaussianMixture) and isinstance(a.models[1], GaussianMixture)
    for label in (0, 1):
        assert abs(b.convergence[label]["lower_bound"] - a.convergence[label]["lower_bound"]) < 1e-4
    trials = [x[i::7] + 0.25 * (i % 2) for i in range(7)]
    np.testing.assert_allclose(b.score(trials), a.score(trials), atol=1e-3)


def test_convergence_is_reported(caplog):
    import logging

    from audioexp.backends.gmm_torch import TorchGaussianMixture

    x = _mixture_data(8)
    capped = TorchGaussianMixture(5, max_iter=2, tol=1e-12, random_state=0).fit(x)
    assert (capped.n_iter_, capped.converged_) == (2, False)
    assert capped.convergence_message().startswith("stopped at max_iter 2 with last change ")
    done = TorchGaussianMixture(5, max_iter=200, tol=1e-3, random_state=0).fit(x)
    assert done.converged_ and 2 < done.n_iter_ < 200 and abs(done.last_change_) < 1e-3
    assert done.convergence_message().startswith(f"converged after {done.n_iter_} iterations at tol 0.001")
    feats = [x[:1000], x[1000:]]
    with caplog.at_level(logging.INFO, logger="audioexp.backends.gmm"):
        backend = GMMBackend(n_components=3, max_iter=2, tol=1e-12).fit(feats, [1, 0])
        GMMBackend(n_components=3, max_iter=2, tol=1e-12, implementation="sklearn").fit(feats, [1, 0])
    assert backend.convergence[1]["n_iter"] == 2 and backend.convergence[1]["converged"] is False
    lines = [r.getMessage() for r in caplog.records if "GMM of class" in r.getMessage()]
    assert len(lines) == 4 and all("stopped at max_iter 2" in line for line in lines), lines
    assert "torch EM on cpu" in lines[0] and "sklearn EM" in lines[2]
