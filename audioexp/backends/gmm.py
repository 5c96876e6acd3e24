"""Two-class GMM back-end of replay detection (genuine vs spoof), as in ASVspoof 2017.

One diagonal-covariance GMM per class is trained by EM on all frames of that class
(scikit-learn's ``GaussianMixture`` algorithm: k-means initialisation, ``reg_covar`` added to
the variances, library defaults unless set; run by our torch EM by default,
:mod:`audioexp.backends.gmm_torch`, or by scikit-learn); an utterance's score is the log-likelihood
ratio ``mean_t log p(x_t | genuine) - mean_t log p(x_t | spoof)`` (frame-averaged, as the
MSR Identity Toolbox and the ASVspoof baseline compute it). Higher means genuine.

:func:`cap_frames_per_utterance` bounds what any one utterance contributes to a GMM's
training frames (ours, not the paper's: a 10-minute file would otherwise supply most of a
class's frames); scoring uses every frame of a trial, in blocks of bounded memory.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy.special import logsumexp

log = logging.getLogger(__name__)

__all__ = ["GMMBackend", "cap_frames_per_utterance", "diagonal_gmm_log_likelihood", "CLASS_KEYS"]

#: Names of the two GMMs in saved parameters, by label (1 genuine, 0 spoof).
CLASS_KEYS = {1: "genuine", 0: "spoof"}

#: Frames per block of the (frames x components) log-likelihood matrices when scoring: a
#: block of 4,096 frames x 512 components is 17 MB per float64 matrix (a 10-minute trial,
#: 60,000 frames, scored at once: 1.8 GB peak; in blocks: about 0.12 GB). An utterance of at
#: most this many frames (41 s at a 10 ms hop) is scored in one block, as before.
SCORE_BLOCK_FRAMES = 4096


def cap_frames_per_utterance(
    features: list[np.ndarray], max_frames: int | None
) -> tuple[list[np.ndarray], int, int]:
    """At most ``max_frames`` frames of each utterance, evenly spaced over it.

    An utterance of ``n > max_frames`` frames keeps frames ``(i * n) // max_frames`` for
    ``i = 0 .. max_frames - 1``: deterministic (no seed), in order, spread over the whole
    utterance at a stride of ``n / max_frames``. Shorter utterances are returned as they are.

    Parameters
    ----------
    features : list of ndarray, each shape (frames, dim)
    max_frames : int or None
        ``None``: no cap.

    Returns
    -------
    capped : list of ndarray, each shape (min(frames, max_frames), dim)
    num_capped : int
        Utterances that had more than ``max_frames`` frames.
    num_dropped : int
        Frames left out, summed over utterances.

    Examples
    --------
    >>> capped, n, dropped = cap_frames_per_utterance([np.arange(10)[:, None], np.arange(3)[:, None]], 4)
    >>> capped[0].ravel().tolist(), capped[1].ravel().tolist(), n, dropped
    ([0, 2, 5, 7], [0, 1, 2], 1, 6)
    """
    if max_frames is None:
        return list(features), 0, 0
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1 (or None: no cap), got {max_frames}")
    capped, num_capped, num_dropped = [], 0, 0
    for frames in features:
        n = len(frames)
        if n > max_frames:
            capped.append(frames[(np.arange(max_frames) * n) // max_frames])
            num_capped += 1
            num_dropped += n - max_frames
        else:
            capped.append(frames)
    return capped, num_capped, num_dropped


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
    # float64 throughout, whatever dtype EM fitted in (scikit-learn keeps float32 frames' dtype
    # in its parameters; the log normaliser of a 90-dim Gaussian loses ~1e-6 in float32)
    frames = np.asarray(frames, dtype=np.float64)
    weights, means, variances = (np.asarray(a, dtype=np.float64) for a in (weights, means, variances))
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
    tol, reg_covar, n_init : as in ``sklearn.mixture.GaussianMixture``
        ``tol``: EM stops when the mean log-likelihood per frame changes by less.
    init_params : str
        "auto" (default): the implementation's k-means ("kmeans_torch" for torch: k-means++ and
        Lloyd in torch; "kmeans" for sklearn: its ``KMeans``). "kmeans" with the torch EM runs
        scikit-learn's ``KMeans`` as ``GaussianMixture`` does; other values go to scikit-learn.
    max_frames : int, optional
        Train each GMM on at most this many frames, drawn at random (ours; ``None``: all).
    seed : int
    implementation : {"auto", "torch", "sklearn"}
        EM by :class:`audioexp.backends.gmm_torch.TorchGaussianMixture` ("torch": scikit-learn's
        algorithm in torch, on ``device``; 3-6x faster than scikit-learn on an idle 2-core CPU,
        ``bench/bench_gmm.py``) or by ``sklearn.mixture.GaussianMixture`` ("sklearn", the
        reference). "auto" (default): torch, on a GPU when there is one.
    device : {"auto", "cpu", "cuda", ...}
        Where the torch EM runs; "auto": CUDA when available, else the CPU.
    precision : {"float32", "float64"}
        The torch EM's E-step and statistics products (parameters and sums are float64 either
        way); float64 with ``init_params="kmeans"`` is scikit-learn step for step.

    After :meth:`fit`, ``convergence`` holds per label ``{"n_iter", "converged", "lower_bound"}``
    (``lower_bound``: mean log-likelihood per frame at the last E-step), also logged.
    """

    def __init__(
        self,
        n_components: int = 512,
        max_iter: int = 30,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        n_init: int = 1,
        init_params: str = "auto",
        max_frames: int | None = None,
        seed: int = 0,
        implementation: str = "auto",
        device: str = "auto",
        precision: str = "float32",
    ) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if implementation not in ("auto", "sklearn", "torch"):
            raise ValueError(f"implementation must be 'auto', 'sklearn' or 'torch', got {implementation!r}")
        if implementation != "sklearn" and n_init != 1:
            raise ValueError("the torch EM runs one initialisation (n_init=1); implementation='sklearn' runs several")
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
        self.precision = precision
        self.convergence: dict[int, dict[str, float]] = {}
        self.models: dict[int, object] = {}

    def _fit_one(self, frames: np.ndarray, label: int):
        from sklearn.mixture import GaussianMixture

        from audioexp.backends.gmm_torch import TorchGaussianMixture, convergence_message

        if self.max_frames is not None and len(frames) > self.max_frames:
            idx = np.random.default_rng(self.seed + label).choice(len(frames), self.max_frames, replace=False)
            frames = frames[np.sort(idx)]
        if len(frames) < self.n_components:
            raise ValueError(f"{len(frames)} frames of class {label} cannot train {self.n_components} components")
        implementation = "torch" if self.implementation == "auto" else self.implementation
        if implementation == "torch":
            import torch

            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            gmm = TorchGaussianMixture(self.n_components, max_iter=self.max_iter, tol=self.tol,
                                       reg_covar=self.reg_covar,
                                       init_params="kmeans_torch" if self.init_params == "auto" else self.init_params,
                                       random_state=self.seed, device=device, precision=self.precision)
        else:
            device = "cpu"
            gmm = GaussianMixture(self.n_components, covariance_type="diag", max_iter=self.max_iter, tol=self.tol,
                                  reg_covar=self.reg_covar, n_init=self.n_init,
                                  init_params="kmeans" if self.init_params == "auto" else self.init_params,
                                  random_state=self.seed)
        start = time.perf_counter()
        gmm.fit(frames)
        how = convergence_message(gmm.converged_, gmm.n_iter_, self.tol, getattr(gmm, "last_change_", None))
        self.convergence[label] = {"n_iter": int(gmm.n_iter_), "converged": bool(gmm.converged_),
                                   "lower_bound": float(gmm.lower_bound_)}
        log.info("GMM of class %d (%s EM on %s): %d components on %d x %d frames, %s; mean log-likelihood %.4f, %.1f s",
                 label, implementation, device, self.n_components, *frames.shape, how, gmm.lower_bound_,
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
        """Mean frame log-likelihood of one utterance under the GMM of ``label``, over every
        frame, computed in blocks of ``SCORE_BLOCK_FRAMES`` so that a long trial's memory is
        bounded by the block (one block, as before, for an utterance no longer than that)."""
        gmm = self.models[label]
        params = (gmm.weights_, gmm.means_, gmm.covariances_)
        if len(frames) <= SCORE_BLOCK_FRAMES:
            return float(np.mean(diagonal_gmm_log_likelihood(frames, *params)))
        total = sum(float(np.sum(diagonal_gmm_log_likelihood(frames[i : i + SCORE_BLOCK_FRAMES], *params)))
                    for i in range(0, len(frames), SCORE_BLOCK_FRAMES))
        return total / len(frames)

    def parameters(self) -> dict[str, np.ndarray]:
        """The two fitted GMMs as float64 arrays, ``{genuine,spoof}_{weights,means,variances}``
        (what :meth:`from_parameters` rebuilds a scorer from, and what is saved with a run)."""
        if not self.models:
            raise RuntimeError("fit the GMMs before asking for their parameters")
        out = {}
        for label, key in CLASS_KEYS.items():
            gmm = self.models[label]
            for name, value in (("weights", gmm.weights_), ("means", gmm.means_), ("variances", gmm.covariances_)):
                out[f"{key}_{name}"] = np.asarray(value, dtype=np.float64)
        return out

    @classmethod
    def from_parameters(cls, params) -> "GMMBackend":
        """A back-end that scores with saved GMMs (:meth:`parameters`); it cannot be refitted."""
        from types import SimpleNamespace

        first = np.asarray(params["genuine_means"])
        backend = cls(n_components=first.shape[0])
        for label, key in CLASS_KEYS.items():
            weights, means, variances = (np.asarray(params[f"{key}_{n}"], dtype=np.float64)
                                         for n in ("weights", "means", "variances"))
            if means.ndim != 2 or variances.shape != means.shape or weights.shape != (means.shape[0],):
                raise ValueError(f"the {key} GMM's parameters have inconsistent shapes: weights {weights.shape}, "
                                 f"means {means.shape}, variances {variances.shape}")
            if means.shape[1] != first.shape[1]:
                raise ValueError(f"the genuine and spoof GMMs differ in dimension ({first.shape[1]} vs {means.shape[1]})")
            backend.models[label] = SimpleNamespace(weights_=weights, means_=means, covariances_=variances)
        return backend

    def score(self, features: list[np.ndarray]) -> np.ndarray:
        """Log-likelihood ratios (genuine vs spoof), shape (utterances,)."""
        if not self.models:
            raise RuntimeError("fit the GMMs before scoring")
        return np.array([self.log_likelihood(f, 1) - self.log_likelihood(f, 0) for f in features])
