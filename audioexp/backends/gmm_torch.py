"""Diagonal-covariance GMM trained by EM in torch (CPU or GPU): scikit-learn's algorithm, faster.

``sklearn.mixture.GaussianMixture(covariance_type="diag")`` is the reference: the same E-step
(weighted log-probabilities, log-sum-exp), the same M-step (``nk = sum resp + 10 eps``; means;
``E[x^2] - mean^2 + reg_covar``; weights ``nk / sum nk``) and the same stopping rule
(``|change of the mean log-likelihood per frame| < tol``, at most ``max_iter`` iterations).

Where the time goes, and what is done about it (``bench/bench_gmm.py``; 50,000 frames x 60,
512 components, 2 CPU cores): the four (frames x dim x components) matrix products of an EM
step took a quarter of the old step, the element-wise work on whole (frames x components)
float64 temporaries (expanding the quadratic form, ``logsumexp`` then ``exp`` again) the other
three quarters. Here

* the frames are augmented once per fit, ``a = [x, x^2, 1]`` (frames, 2 dim + 1), and the
  parameters once per iteration into one (2 dim + 1, components) matrix
  ``[mu / var; -1 / (2 var); log w - (dim log 2 pi + sum log var + sum mu^2 / var) / 2]``, so the
  E-step's weighted log-probabilities are one matrix product ``a @ W``;
* the responsibilities are made in place, chunk by chunk (cache-sized, ``chunk_size`` frames),
  with one ``exp``;
* the M-step's sufficient statistics ``[sum r x, sum r x^2, sum r]`` are one product ``r.T @ a``
  per chunk, accumulated over chunks in float64;
* with ``precision="float32"`` (the default of :class:`TorchGaussianMixture`) both products and
  the ``exp`` run in float32 on frames centred in float64 first (the log-likelihood and the
  variances' ``E[x^2] - mean^2`` lose less to rounding about the data's mean; translation
  changes nothing else); parameters, per-chunk sums and the stopping rule stay float64.
  ``precision="float64"`` is scikit-learn step for step (``tests/unit/test_gmm_backend.py``,
  to about 1e-10).

Initialisation: ``init_params="kmeans_torch"`` (default) is k-means++ seeding (scikit-learn's
greedy variant, on a random subsample of at most ``kmeans_seed_samples`` frames) and Lloyd
iterations (on at most ``kmeans_samples`` frames, the frames of a chunk assigned by one matrix
product) in torch on ``device``, then the GMM's parameters from every frame's nearest centre,
as scikit-learn initialises from its k-means labels. ``init_params="kmeans"`` runs
scikit-learn's ``KMeans`` (on the CPU) exactly as ``GaussianMixture`` does, for step-for-step
equality with it.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from torch import nn

log = logging.getLogger(__name__)

__all__ = ["GMMLikelihoodRatio", "TorchGaussianMixture", "convergence_message", "diagonal_gmm_weighted_log_prob",
           "em_step", "kmeans", "kmeans_plusplus"]

#: Frames per chunk of the E-step, at least: a (4096 x 512) float32 block of responsibilities
#: is 8 MB. :class:`TorchGaussianMixture` takes ``max(CHUNK_SIZE, CHUNK_ELEMENTS // components)``
#: frames: fewer components, longer chunks (fewer, larger operations; each parallel operation
#: costs a synchronisation of the threads).
CHUNK_SIZE = 4096
CHUNK_ELEMENTS = 2**21

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: Smallest exponent of a responsibility: ``exp`` of it is a normal number (float32's smallest,
#: 1.2e-38, is e^-87.3; float64's, 2.2e-308, e^-708.4).
_EXP_FLOOR = {torch.float32: -80.0, torch.float64: -700.0}


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


# --- EM -----------------------------------------------------------------------------------------

def augmented_frames(frames: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[x, x^2, 1]``, shape (frames, 2 dim + 1): the left operand of both EM products."""
    d = frames.shape[1]
    out = torch.empty(frames.shape[0], 2 * d + 1, dtype=dtype or frames.dtype, device=frames.device)
    out[:, :d] = frames
    out[:, d:2 * d] = frames * frames  # squared before any cast to float32
    out[:, 2 * d] = 1.0
    return out


def e_step_matrix(weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """The parameters as one (2 dim + 1, components) matrix ``W``: ``augmented_frames(x) @ W`` is
    ``log w_k + log N(x; mu_k, diag(var_k))`` (:func:`diagonal_gmm_weighted_log_prob`)."""
    precisions = 1.0 / variances
    bias = torch.log(weights) - 0.5 * (means.shape[1] * math.log(2 * math.pi) + torch.log(variances).sum(1)
                                        + (means**2 * precisions).sum(1))
    return torch.cat([(means * precisions).T, -0.5 * precisions.T, bias[None, :]], 0)


def _parameters(n_frames: int, nk: torch.Tensor, sum_x: torch.Tensor, sum_x2: torch.Tensor, reg_covar: float,
                init: bool):
    """scikit-learn's M-step from accumulated statistics (``init``: its initialisation's weights)."""
    nk = nk + 10 * torch.finfo(nk.dtype).eps
    means = sum_x / nk[:, None]
    variances = sum_x2 / nk[:, None] - means**2 + reg_covar
    weights = nk / n_frames if init else nk / nk.sum()
    return weights, means, variances


#: Largest ``sum_d (mu_kd^2 + var_kd) / var_kd`` (on centred frames) of a component whose
#: log-probabilities are computed in float32: the terms of ``a @ W`` for a frame near the
#: component are of that size and cancel to a few times ``dim``, so float32's rounding
#: (2^-24 relative) leaves up to about ``2^-24 * condition`` nats, 1e-3 here. Components above
#: it (tight and far from the centre, e.g. collapsed onto a few frames) are recomputed in
#: float64, column by column.
FLOAT32_MAX_CONDITION = 1e-3 * 2**24


#: With ``precision="float32"``, :meth:`TorchGaussianMixture.fit` keeps ``[x, x^2, 1]`` in
#: float64 too (the statistics' operand) when it takes at most this many bytes, else makes it
#: per chunk (a quarter of a 64-component step's time on 2 cores; little at 512 components).
FLOAT64_AUGMENTED_BYTES = 2**31


def _em_pass(augmented: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
             chunk_size: int, frames: torch.Tensor | None = None):
    """E-step and sufficient statistics over all frames, chunk by chunk.

    Parameters
    ----------
    augmented : Tensor, shape (frames, 2 dim + 1)
        :func:`augmented_frames`, float64 or float32: the dtype of the E-step.
    weights, means, variances : float64 Tensors
    frames : Tensor, shape (frames, dim) or (frames, 2 dim + 1), float64; needed when
        ``augmented`` is float32: the frames, or ``augmented_frames(frames)`` made once (faster,
        more memory). The statistics' product is float64 (``E[x^2] - mean^2`` of a tight component cancels
        all of float32's digits) and so are ill-conditioned components' log-probabilities
        (:data:`FLOAT32_MAX_CONDITION`).

    Returns
    -------
    statistics : Tensor (components, 2 dim + 1), float64
        ``[sum r x, sum r x^2, sum r]`` per component.
    total : Tensor (), float64
        Sum of the frames' log-likelihoods.
    """
    matrix = e_step_matrix(weights, means, variances)
    mixed = augmented.dtype != torch.float64
    if mixed:
        condition = ((means**2 + variances) / variances).sum(1)
        exact = torch.nonzero(condition > FLOAT32_MAX_CONDITION)[:, 0]
        exact_matrix = matrix[:, exact]
        matrix = matrix.to(augmented.dtype)
        if frames is None:
            raise ValueError("a float32 E-step needs the float64 frames for its statistics")
    floor = _EXP_FLOOR[augmented.dtype]
    stats = torch.zeros(matrix.shape[1], augmented.shape[1], dtype=torch.float64, device=augmented.device)
    total = torch.zeros((), dtype=torch.float64, device=augmented.device)
    for start in range(0, augmented.shape[0], chunk_size):
        a = augmented[start:start + chunk_size]
        resp = a @ matrix  # weighted log-probabilities, (chunk, components)
        if mixed:
            a = frames[start:start + chunk_size]
            if a.shape[1] != augmented.shape[1]:
                a = augmented_frames(a)
            if len(exact):
                resp[:, exact] = (a @ exact_matrix).to(resp.dtype)
        peak = resp.amax(1, keepdim=True)
        # clamped above exp's subnormal range: exp of a subnormal result is 5-10x slower on
        # x86 (measured), and a responsibility of e^-80 instead of 0 changes no sum
        resp.sub_(peak).clamp_(min=floor).exp_()
        norm = resp.sum(1, keepdim=True)
        resp.div_(norm)
        total += (norm.log_().add_(peak)).sum(dtype=torch.float64)
        stats += resp.T.to(torch.float64) @ a
    return stats, total


def _m_step(stats: torch.Tensor, n_frames: int, reg_covar: float, init: bool = False):
    d = (stats.shape[1] - 1) // 2
    return _parameters(n_frames, stats[:, 2 * d], stats[:, :d], stats[:, d:2 * d], reg_covar, init)


def em_step(frames: torch.Tensor | None, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
            reg_covar: float = 1e-6, chunk_size: int = CHUNK_SIZE, augmented: torch.Tensor | None = None):
    """One EM iteration; returns ``(weights, means, variances, mean log-likelihood before the step)``.

    Parameters
    ----------
    frames : Tensor, shape (frames, dim), float64
        May be ``None`` when ``augmented`` is float64, and ``augmented_frames(frames)`` (float64)
        when it is float32 (see :func:`_em_pass`).
    weights : Tensor, shape (components,); means, variances : Tensor, shape (components, dim)
        Float64 (the parameters and the statistics are float64 whatever the E-step's dtype).
    augmented : Tensor, shape (frames, 2 dim + 1), optional
        ``augmented_frames(frames, dtype)`` made once for many steps; its dtype is the E-step's
        (float32 or float64; default: ``augmented_frames(frames)``, float64).
    """
    if augmented is None:
        augmented = augmented_frames(frames)
    stats, total = _em_pass(augmented, weights, means, variances, chunk_size, frames)
    return (*_m_step(stats, augmented.shape[0], reg_covar), float(total) / augmented.shape[0])


# --- k-means ------------------------------------------------------------------------------------

def kmeans_plusplus(x: torch.Tensor, n_clusters: int, generator: torch.Generator,
                    n_local_trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, scikit-learn's variant): each new
    centre is the best, by the potential it leaves, of ``2 + log k`` candidates drawn with
    probability proportional to the squared distance to the nearest centre so far; the
    candidates of one step are scored together by one matrix product.

    Parameters
    ----------
    x : Tensor, shape (frames, dim)
    n_clusters : int
    generator : torch.Generator (CPU)
        The random draws, on the CPU so that a seed gives the same centres on any device.

    Returns
    -------
    Tensor, shape (n_clusters, dim)
    """
    n = x.shape[0]
    trials = n_local_trials or 2 + int(math.log(n_clusters))
    x_sq = (x * x).sum(1, keepdim=True)
    first = int(torch.randint(n, (1,), generator=generator))
    chosen = [first]
    closest = ((x - x[first]) ** 2).sum(1, keepdim=True)
    for _ in range(1, n_clusters):
        cumulative = torch.cumsum(closest[:, 0], 0, dtype=torch.float64)
        draws = torch.rand(trials, generator=generator, dtype=torch.float64).to(x.device) * cumulative[-1]
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=n - 1)
        centers = x[candidates]
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, for all candidates by one product
        dist = torch.addmm(x_sq, x, centers.T, alpha=-2.0).add_((centers * centers).sum(1)).clamp_(min=0)
        torch.minimum(dist, closest, out=dist)  # (frames, trials): the potential if each were chosen
        best = int(torch.argmin(dist.sum(0, dtype=torch.float64)))
        chosen.append(int(candidates[best]))
        closest = dist[:, best:best + 1].contiguous()
    return x[torch.tensor(chosen, device=x.device)].clone()


def _assign(x: torch.Tensor, centers: torch.Tensor, chunk_size: int, x_sq: torch.Tensor | None = None):
    """Nearest centre of every frame and its squared distance, chunk by chunk: the nearest
    centre maximises ``x.c - ||c||^2 / 2``, one product of ``[x, 1]`` and ``[c, -||c||^2 / 2]``."""
    if x_sq is None:
        x_sq = (x * x).sum(1)
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    score = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    weights = centers.T
    bias = -0.5 * (centers * centers).sum(1)
    for start in range(0, x.shape[0], chunk_size):
        stop = start + chunk_size
        products = x[start:stop] @ weights
        score[start:stop], labels[start:stop] = products.add_(bias).max(1)
    return labels, score.mul_(-2.0).add_(x_sq).clamp_(min=0)


def kmeans(x: torch.Tensor, n_clusters: int, generator: torch.Generator, max_iter: int = 100, tol: float = 1e-4,
           seed_samples: int | None = None, chunk_size: int = CHUNK_SIZE):
    """k-means: :func:`kmeans_plusplus` seeding, then Lloyd iterations until the centres move less
    than scikit-learn's ``tol`` (sum of squared shifts ``<= tol * mean variance of x``) or
    ``max_iter``. An emptied cluster takes the frame farthest from its centre.

    Parameters
    ----------
    x : Tensor, shape (frames, dim)
    seed_samples : int, optional
        Seed on a random subsample of this many frames (k-means++ is sequential in ``k``).

    Returns
    -------
    centers : Tensor, shape (n_clusters, dim)
    labels : Tensor of int64, shape (frames,)
    inertia : float
        Sum of squared distances of the frames to their centres.
    n_iter : int
    """
    n = x.shape[0]
    seed_x = x
    if seed_samples is not None and n > seed_samples:
        seed_x = x[torch.randperm(n, generator=generator)[:seed_samples].to(x.device)]
    centers = kmeans_plusplus(seed_x, n_clusters, generator)
    threshold = tol * float(x.var(0).mean())
    x_sq = (x * x).sum(1)
    chunk = max(chunk_size, 2**22 // n_clusters)  # fewer, larger products: k-means has no exp to keep in cache
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        labels, dists = _assign(x, centers, chunk, x_sq)
        counts = torch.bincount(labels, minlength=n_clusters)
        new = torch.zeros_like(centers).index_add_(0, labels, x).div_(counts.clamp(min=1)[:, None].to(x.dtype))
        empty = torch.nonzero(counts == 0)[:, 0]
        if len(empty):
            new[empty] = x[torch.topk(dists, len(empty)).indices]
        shift = float((new - centers).square_().sum())
        centers = new
        if shift <= threshold:
            break
    labels, dists = _assign(x, centers, chunk, x_sq)
    return centers, labels, float(dists.sum(dtype=torch.float64)), n_iter


def convergence_message(converged: bool, n_iter: int, tol: float, last_change: float | None = None) -> str:
    """How an EM fit ended: ``converged after N iterations at tol X (last change Y)`` or
    ``stopped at max_iter N with last change Y (tol X)`` (without ``Y`` when not known, as for
    scikit-learn's fits)."""
    if converged:
        return f"converged after {n_iter} iterations at tol {tol:g}" + (
            f" (last change {last_change:.3g})" if last_change is not None else "")
    if last_change is None:
        return f"stopped at max_iter {n_iter} (tol {tol:g})"
    return f"stopped at max_iter {n_iter} with last change {last_change:.3g} (tol {tol:g})"


class TorchGaussianMixture:
    """Diagonal GMM by EM in torch, with scikit-learn's M-step and stopping rule.

    Parameters
    ----------
    n_components, max_iter, tol, reg_covar : as in ``sklearn.mixture.GaussianMixture``
        ``tol``: on the change of the mean log-likelihood per frame between iterations.
    init_params : {"kmeans_torch", "kmeans"}
        k-means in torch on ``device`` (:func:`kmeans`), or scikit-learn's ``KMeans`` on the CPU
        (``GaussianMixture``'s own initialisation, for step-for-step equality).
    random_state : int
    device : str
        Where EM runs ("cpu", "cuda").
    precision : {"float32", "float64"}
        dtype of the E-step and of the statistics' matrix products (parameters and sums over
        chunks are float64 either way). float64: scikit-learn step for step.
    chunk_size : int, optional
        Frames per chunk of the E-step (default: :data:`CHUNK_SIZE`, more for fewer than 512
        components).
    kmeans_max_iter : int
        Lloyd iterations at most (``init_params="kmeans_torch"``).
    kmeans_samples, kmeans_seed_samples : int, optional
        Lloyd iterations on a random subsample of at most ``kmeans_samples`` frames (default
        256 per component) and k-means++ seeding on at most ``kmeans_seed_samples`` (default
        32 per component, at least 10,000); every frame is then assigned to its nearest centre.

    After :meth:`fit`: ``weights_``, ``means_``, ``covariances_`` (float64 NumPy, as scikit-learn),
    ``n_iter_``, ``converged_``, ``lower_bound_`` (mean log-likelihood per frame at the last E-step)
    and ``last_change_`` (its change over the last iteration).
    """

    def __init__(self, n_components: int, max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
                 init_params: str = "kmeans_torch", random_state: int = 0, device: str = "cpu",
                 precision: str = "float32", chunk_size: int | None = None, kmeans_max_iter: int = 100,
                 kmeans_samples: int | None = None, kmeans_seed_samples: int | None = None) -> None:
        if init_params not in ("kmeans_torch", "kmeans"):
            raise ValueError(f"init_params must be 'kmeans_torch' or 'kmeans', got {init_params!r}")
        if precision not in _DTYPES:
            raise ValueError(f"precision must be one of {sorted(_DTYPES)}, got {precision!r}")
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.random_state = random_state
        self.device = torch.device(device)
        self.precision = precision
        self.chunk_size = chunk_size or max(CHUNK_SIZE, CHUNK_ELEMENTS // n_components)
        self.kmeans_max_iter = kmeans_max_iter
        self.kmeans_samples = kmeans_samples if kmeans_samples is not None else 256 * n_components
        self.kmeans_seed_samples = (kmeans_seed_samples if kmeans_seed_samples is not None
                                    else max(10_000, 32 * n_components))

    def initial_parameters(self, frames: np.ndarray, augmented: torch.Tensor | None = None):
        """The GMM's parameters from k-means labels (one-hot responsibilities, then scikit-learn's
        M-step), float64 tensors on ``device``. ``frames`` (frames, dim) as :meth:`fit` sees them."""
        frames = np.asarray(frames, dtype=np.float64)
        x64 = torch.as_tensor(frames, device=self.device)
        if self.init_params == "kmeans":
            from sklearn.cluster import KMeans

            labels = KMeans(n_clusters=self.n_components, n_init=1,
                            random_state=np.random.RandomState(self.random_state)).fit(frames).labels_
            labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        else:
            labels = self._kmeans_labels(x64 if augmented is None else augmented[:, :frames.shape[1]])
        k = self.n_components
        nk = torch.bincount(labels, minlength=k).to(torch.float64)
        sum_x = torch.zeros(k, x64.shape[1], dtype=torch.float64, device=self.device).index_add_(0, labels, x64)
        sum_x2 = torch.zeros_like(sum_x).index_add_(0, labels, x64 * x64)
        return _parameters(len(frames), nk, sum_x, sum_x2, self.reg_covar, init=True)

    def _kmeans_labels(self, x: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.random_state)
        n = x.shape[0]
        train = x
        if n > self.kmeans_samples:
            train = x[torch.randperm(n, generator=generator)[:self.kmeans_samples].to(x.device)]
        centers, _, inertia, n_iter = kmeans(train, self.n_components, generator, max_iter=self.kmeans_max_iter,
                                             seed_samples=self.kmeans_seed_samples, chunk_size=self.chunk_size)
        labels, _ = _assign(x, centers, self.chunk_size)
        log.debug("k-means: %d Lloyd iterations on %d of %d frames", n_iter, train.shape[0], n)
        return labels

    def fit(self, frames) -> "TorchGaussianMixture":
        # float32 products must be float32 (24-bit mantissa), not TF32 (11 bits) on a GPU:
        # FLOAT32_MAX_CONDITION assumes float32's rounding
        matmul_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            return self._fit(frames)
        finally:
            torch.set_float32_matmul_precision(matmul_precision)

    def _fit(self, frames) -> "TorchGaussianMixture":
        frames = np.asarray(frames, dtype=np.float64)
        if frames.ndim != 2 or len(frames) < self.n_components:
            raise ValueError(f"need (frames, dim) with at least {self.n_components} frames, got {frames.shape}")
        # EM and k-means are translation-equivariant: centring costs nothing in exact arithmetic
        # and keeps float32's rounding relative to the data's spread, not its offset
        center = frames.mean(0)
        centred = frames - center
        x = torch.as_tensor(centred, device=self.device)
        augmented = augmented_frames(x, _DTYPES[self.precision])
        weights, means, variances = self.initial_parameters(centred, augmented)
        if augmented.dtype != torch.float64 and x.numel() * 2 * 8 <= FLOAT64_AUGMENTED_BYTES:
            x = augmented_frames(x)  # the float64 statistics' operand, made once, not per chunk and step
        lower_bound, self.converged_, self.n_iter_, change = -math.inf, False, 0, math.inf
        for n_iter in range(1, self.max_iter + 1):
            previous = lower_bound
            weights, means, variances, lower_bound = em_step(x, weights, means, variances, self.reg_covar,
                                                             self.chunk_size, augmented=augmented)
            self.n_iter_ = n_iter
            change = lower_bound - previous
            if abs(change) < self.tol:
                self.converged_ = True
                break
        self.lower_bound_, self.last_change_ = lower_bound, change
        means = means + torch.as_tensor(center, device=self.device)
        self.weights_, self.means_, self.covariances_ = (t.double().cpu().numpy() for t in (weights, means, variances))
        return self

    def convergence_message(self) -> str:
        """:func:`convergence_message` of this fit."""
        return convergence_message(self.converged_, self.n_iter_, self.tol, self.last_change_)

    def score_samples(self, frames) -> np.ndarray:
        """Per-frame log-likelihood in float64, shape (frames,)."""
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device)  # noqa: E731
        wlp = diagonal_gmm_weighted_log_prob(t(frames), t(self.weights_), t(self.means_), t(self.covariances_))
        return torch.logsumexp(wlp, dim=1).cpu().numpy()

    def score(self, frames) -> float:
        """Mean per-frame log-likelihood (scikit-learn's ``score``)."""
        return float(np.mean(self.score_samples(frames)))
