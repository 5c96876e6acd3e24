"""Two-class GMM back-end of replay detection (genuine vs spoof), as in ASVspoof 2017.

One diagonal-covariance GMM per class is trained by EM on all frames of that class
(scikit-learn's ``GaussianMixture``: k-means initialisation, ``reg_covar`` added to the
variances, library defaults unless set); an utterance's score is the log-likelihood
ratio ``mean_t log p(x_t | genuine) - mean_t log p(x_t | spoof)`` (frame-averaged, as the
MSR Identity Toolbox and the ASVspoof baseline compute it). Higher means genuine.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.special import logsumexp

log = logging.getLogger(__name__)

__all__ = ["GMMBackend", "diagonal_gmm_log_likelihood"]


def diagonal_gmm_log_likelihood(
    frames: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> np.ndarray:
    """Per-frame log-likelihood under a diagonal-covariance GMM.

    Parameters
    ----------
    frames : ndarray, shape (n, dim)
    weights : ndarray, shape (components,)
    means, variances : ndarray, shape (components, dim)

    Returns
    -------
    ndarray, shape (n,)

    Examples
    --------
    >>> float(diagonal_gmm_log_likelihood(np.zeros((1, 1)), np.ones(1), np.zeros((1, 1)), np.ones((1, 1)))[0])
    -0.9189385332046727
    """
    frames = np.asarray(frames, dtype=np.float64)
    precision = 1.0 / variances
    # ||x - mu||^2_P expanded so that the (n, components) term is one matrix product
    quad = (
        (frames**2) @ precision.T
        - 2.0 * frames @ (means * precision).T
        + np.sum(means**2 * precision, axis=1)[None, :]
    )
    log_norm = -0.5 * (frames.shape[1] * np.log(2 * np.pi) + np.sum(np.log(variances), axis=1))
    return logsumexp(np.log(weights)[None, :] + log_norm[None, :] - 0.5 * quad, axis=1)


class GMMBackend:
    """Genuine and spoof GMMs; scores are frame-averaged log-likelihood ratios.

    Parameters
    ----------
    n_components : int
        Components per GMM (the paper: 512).
    max_iter : int
        EM iterations (ours: 30; sklearn's default is 100 with early stopping at ``tol``).
    tol, reg_covar, n_init, init_params : as in ``sklearn.mixture.GaussianMixture``
    max_frames : int, optional
        Train each GMM on at most this many frames, drawn at random (ours; ``None``: all).
    seed : int
    implementation : {"sklearn", "torch"}
        EM by ``sklearn.mixture.GaussianMixture`` (default) or by
        :class:`audioexp.backends.gmm_torch.TorchGaussianMixture`, the same algorithm step for
        step (same k-means initialisation, updates and stopping rule) in torch, on ``device``.
    device : str
        Where the torch EM runs ("cpu", "cuda").
    """

    def __init__(
        self,
        n_components: int = 512,
        max_iter: int = 30,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        n_init: int = 1,
        init_params: str = "kmeans",
        max_frames: int | None = None,
        seed: int = 0,
        implementation: str = "sklearn",
        device: str = "cpu",
    ) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if implementation not in ("sklearn", "torch"):
            raise ValueError(f"implementation must be 'sklearn' or 'torch', got {implementation!r}")
        if implementation == "torch" and n_init != 1:
            raise ValueError("the torch EM runs one initialisation (n_init=1)")
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.init_params = init_params
        self.max_frames = max_frames
        self.seed = seed
        self.implementation = implementation
        self.device = device
        self.models: dict[int, object] = {}

    def _fit_one(self, frames: np.ndarray, label: int):
        from sklearn.mixture import GaussianMixture

        if self.max_frames is not None and len(frames) > self.max_frames:
            idx = np.random.default_rng(self.seed + label).choice(len(frames), self.max_frames, replace=False)
            frames = frames[np.sort(idx)]
        if len(frames) < self.n_components:
            raise ValueError(f"{len(frames)} frames of class {label} cannot train {self.n_components} components")
        if self.implementation == "torch":
            from audioexp.backends.gmm_torch import TorchGaussianMixture

            gmm = TorchGaussianMixture(self.n_components, max_iter=self.max_iter, tol=self.tol,
                                       reg_covar=self.reg_covar, init_params=self.init_params,
                                       random_state=self.seed, device=self.device)
        else:
            gmm = GaussianMixture(self.n_components, covariance_type="diag", max_iter=self.max_iter, tol=self.tol,
                                  reg_covar=self.reg_covar, n_init=self.n_init, init_params=self.init_params,
                                  random_state=self.seed)
        start = time.perf_counter()
        gmm.fit(frames)
        log.info("GMM of class %d (%s EM): %d components on %d x %d frames, %d EM iterations, converged=%s, %.1f s",
                 label, self.implementation, self.n_components, *frames.shape, gmm.n_iter_, gmm.converged_,
                 time.perf_counter() - start)
        return gmm

    def fit(self, features: list[np.ndarray], labels) -> "GMMBackend":
        """Train the two GMMs.

        Parameters
        ----------
        features : list of ndarray, each shape (frames, dim)
        labels : array of int, shape (utterances,)
            1 genuine, 0 spoof; both must occur.
        """
        labels = np.asarray(labels)
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature arrays for {len(labels)} labels")
        for label in (1, 0):
            chosen = [f for f, y in zip(features, labels) if y == label]
            if not chosen:
                raise ValueError(f"no training utterance of class {label} (1 genuine, 0 spoof)")
            self.models[label] = self._fit_one(np.concatenate(chosen), label)
        return self

    def log_likelihood(self, frames: np.ndarray, label: int) -> float:
        gmm = self.models[label]
        return float(np.mean(diagonal_gmm_log_likelihood(frames, gmm.weights_, gmm.means_, gmm.covariances_)))

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        """Log-likelihood ratios (genuine vs spoof), shape (utterances,)."""
        if not self.models:
            raise RuntimeError("fit the GMMs before scoring")
        return np.array([self.log_likelihood(f, 1) - self.log_likelihood(f, 0) for f in features])
