"""Diagonal-covariance GMM trained by EM in torch (CPU or GPU), step for step as scikit-learn.

``sklearn.mixture.GaussianMixture(covariance_type="diag")`` is the reference: the same
k-means initialisation (scikit-learn's ``KMeans`` with ``n_init=1`` and the same random state,
run on the CPU), the same E-step (weighted log-probabilities, log-sum-exp), the same M-step
(``nk = sum resp + 10 eps``; means; ``E[x^2] - mean^2 + reg_covar``; weights ``nk / sum nk``)
and the same stopping rule (``|change of the mean log-likelihood| < tol``). So with identical
parameters the log-likelihoods agree, and one EM step from the same initialisation gives the
same update (``tests/unit/test_gmm_backend.py``, to about 1e-10). The frames are processed in
chunks, accumulating the sufficient statistics, so 512 components over millions of frames fit
in memory. ``bench/bench_gmm.py`` times it against scikit-learn.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from torch import nn

__all__ = ["GMMLikelihoodRatio", "TorchGaussianMixture", "diagonal_gmm_weighted_log_prob", "em_step"]


def diagonal_gmm_weighted_log_prob(frames: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                                   variances: torch.Tensor) -> torch.Tensor:
    """``log w_k + log N(x_t; mu_k, diag(var_k))``, shape (frames, components).

    The quadratic form is expanded into matrix products, as scikit-learn does.
    """
    precisions = 1.0 / variances
    quad = (means**2 * precisions).sum(1)[None, :] - 2.0 * frames @ (means * precisions).T + (frames**2) @ precisions.T
    log_det = -0.5 * torch.log(variances).sum(1)
    return -0.5 * (frames.shape[1] * math.log(2 * math.pi) + quad) + log_det[None, :] + torch.log(weights)[None, :]


class GMMLikelihoodRatio(nn.Module):
    """The replay back-end's score as a module: one utterance's frames ``(frames, dim)``
    float64 -> ``(1,)``, the frame-averaged log-likelihood ratio of the genuine and spoof GMMs
    (what :meth:`audioexp.backends.gmm.GMMBackend.score` computes, here exportable to ONNX
    and TorchScript with a dynamic number of frames).

    Parameters
    ----------
    params : mapping
        ``{genuine,spoof}_{weights,means,variances}`` arrays
        (:meth:`audioexp.backends.gmm.GMMBackend.parameters`).
    """

    def __init__(self, params) -> None:
        super().__init__()
        for key in ("genuine", "spoof"):
            for name in ("weights", "means", "variances"):
                self.register_buffer(f"{key}_{name}", torch.as_tensor(np.asarray(params[f"{key}_{name}"]),
                                                                      dtype=torch.float64))

    def _mean_log_likelihood(self, frames: torch.Tensor, key: str) -> torch.Tensor:
        weighted = diagonal_gmm_weighted_log_prob(frames, getattr(self, f"{key}_weights"), getattr(self, f"{key}_means"),
                                                  getattr(self, f"{key}_variances"))
        return torch.logsumexp(weighted, dim=1).mean()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(torch.float64)
        return (self._mean_log_likelihood(frames, "genuine") - self._mean_log_likelihood(frames, "spoof")).reshape(1)


def _statistics(frames: torch.Tensor, resp: torch.Tensor):
    return resp.sum(0), resp.T @ frames, resp.T @ (frames * frames)


def _parameters(n_frames: int, nk: torch.Tensor, sum_x: torch.Tensor, sum_x2: torch.Tensor, reg_covar: float,
                init: bool):
    """scikit-learn's M-step from accumulated statistics (``init``: its initialisation's weights)."""
    nk = nk + 10 * torch.finfo(nk.dtype).eps
    means = sum_x / nk[:, None]
    variances = sum_x2 / nk[:, None] - means**2 + reg_covar
    weights = nk / n_frames if init else nk / nk.sum()
    return weights, means, variances


def em_step(frames: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
            reg_covar: float = 1e-6, chunk_size: int = 65536):
    """One EM iteration; returns ``(weights, means, variances, mean log-likelihood before the step)``."""
    k, d = means.shape
    nk = frames.new_zeros(k)
    sum_x = frames.new_zeros(k, d)
    sum_x2 = frames.new_zeros(k, d)
    total = frames.new_zeros(())
    for start in range(0, frames.shape[0], chunk_size):
        x = frames[start:start + chunk_size]
        wlp = diagonal_gmm_weighted_log_prob(x, weights, means, variances)
        norm = torch.logsumexp(wlp, dim=1)
        resp = torch.exp(wlp - norm[:, None])
        a, b, c = _statistics(x, resp)
        nk += a
        sum_x += b
        sum_x2 += c
        total += norm.sum()
    return (*_parameters(frames.shape[0], nk, sum_x, sum_x2, reg_covar, init=False), float(total) / frames.shape[0])


class TorchGaussianMixture:
    """Diagonal GMM by EM in torch, with scikit-learn's initialisation and stopping rule.

    Parameters
    ----------
    n_components, max_iter, tol, reg_covar : as in ``sklearn.mixture.GaussianMixture``
    init_params : {"kmeans"}
        scikit-learn's k-means initialisation (on the CPU).
    random_state : int
    device : str
        Where EM runs ("cpu", "cuda").
    dtype : torch.dtype
        float64 (default, as scikit-learn) or float32 (faster on GPUs, not bit-comparable).
    chunk_size : int
        Frames per chunk of the E-step.

    After :meth:`fit`: ``weights_``, ``means_``, ``covariances_`` (NumPy, as scikit-learn),
    ``n_iter_``, ``converged_``, ``lower_bound_``.
    """

    def __init__(self, n_components: int, max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
                 init_params: str = "kmeans", random_state: int = 0, device: str = "cpu",
                 dtype: torch.dtype = torch.float64, chunk_size: int = 65536) -> None:
        if init_params != "kmeans":
            raise ValueError(f"TorchGaussianMixture supports init_params='kmeans' only, got {init_params!r}")
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.random_state = random_state
        self.device = torch.device(device)
        self.dtype = dtype
        self.chunk_size = chunk_size

    def initial_parameters(self, frames: np.ndarray):
        """scikit-learn's k-means initialisation: one-hot responsibilities of KMeans labels, then its M-step."""
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=self.n_components, n_init=1,
                        random_state=np.random.RandomState(self.random_state)).fit(frames).labels_
        x = torch.as_tensor(frames, dtype=self.dtype, device=self.device)
        resp = torch.zeros(len(frames), self.n_components, dtype=self.dtype, device=self.device)
        resp[torch.arange(len(frames), device=self.device), torch.as_tensor(labels, device=self.device)] = 1.0
        return _parameters(len(frames), *_statistics(x, resp), self.reg_covar, init=True)

    def fit(self, frames) -> "TorchGaussianMixture":
        frames = np.asarray(frames, dtype=np.float64)
        if frames.ndim != 2 or len(frames) < self.n_components:
            raise ValueError(f"need (frames, dim) with at least {self.n_components} frames, got {frames.shape}")
        weights, means, variances = self.initial_parameters(frames)
        x = torch.as_tensor(frames, dtype=self.dtype, device=self.device)
        lower_bound, self.converged_, self.n_iter_ = -math.inf, False, 0
        for n_iter in range(1, self.max_iter + 1):
            previous = lower_bound
            weights, means, variances, lower_bound = em_step(x, weights, means, variances, self.reg_covar,
                                                             self.chunk_size)
            self.n_iter_ = n_iter
            if abs(lower_bound - previous) < self.tol:
                self.converged_ = True
                break
        self.lower_bound_ = lower_bound
        self.weights_, self.means_, self.covariances_ = (t.double().cpu().numpy() for t in (weights, means, variances))
        return self

    def score_samples(self, frames) -> np.ndarray:
        """Per-frame log-likelihood, shape (frames,)."""
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=self.dtype, device=self.device)  # noqa: E731
        wlp = diagonal_gmm_weighted_log_prob(t(frames), t(self.weights_), t(self.means_), t(self.covariances_))
        return torch.logsumexp(wlp, dim=1).double().cpu().numpy()
