"""Speaker-verification metrics: EER, minimum DCF and DET curves.

Pure functions on score/label arrays come first; :class:`EqualErrorRate` and
:class:`MinDCF` are thin torchmetrics wrappers that gather the scores of an epoch
(across DDP ranks) and call them, as pyannote.audio does.

Conventions, shared by every function here
-------------------------------------------
A trial has a ``score`` (higher means more likely the same speaker) and a ``label``
(1 = target, same speaker; 0 = non-target). A threshold ``t`` accepts a trial when
``score >= t``, so for ``N_tar`` targets and ``N_non`` non-targets

* ``P_miss(t) = #{targets with score < t} / N_tar``      (false rejection rate)
* ``P_fa(t)   = #{non-targets with score >= t} / N_non`` (false acceptance rate)

Both are step functions of ``t`` that change only at the observed scores, so the
operating points are ``t = u_1 < u_2 < ... < u_k`` (the distinct scores; ``u_1``
accepts every trial) plus ``t = +inf`` (rejects every trial). Tied scores are one
threshold: all trials sharing a score are accepted or rejected together. These are
exactly the points of ``sklearn.metrics.roc_curve(labels, scores,
drop_intermediate=False)`` with ``P_fa = fpr`` and ``P_miss = 1 - tpr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]

__all__ = [
    "EqualErrorRate",
    "MinDCF",
    "det_curve",
    "equal_error_rate",
    "minimum_dcf",
]


def _as_trials(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores and boolean target flags, both flattened to shape (N,)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().double().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels must have the same shape, got {scores.shape} and {labels.shape}")
    scores, labels = scores.ravel(), labels.ravel()
    if np.isnan(scores).any():
        raise ValueError(f"scores contain NaN ({int(np.isnan(scores).sum())} of {scores.size} trials)")
    if not np.isfinite(scores).all():
        # a +inf score could not be rejected by any threshold, so the curve would not reach P_fa = 0
        raise ValueError("scores contain infinite values; verification scores must be finite")
    if labels.dtype != np.bool_:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"labels must be 0 (non-target) or 1 (target), got values {np.unique(labels)[:5]}")
        labels = labels == 1
    n_tar = int(labels.sum())
    if n_tar == 0:
        raise ValueError(f"labels contain no targets (label 1) among {labels.size} trials")
    if n_tar == labels.size:
        raise ValueError(f"labels contain no non-targets (label 0) among {labels.size} trials")
    return scores, labels


def _operating_points(scores: np.ndarray, is_target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p_fa, p_miss, thresholds)`` at the distinct scores (ascending) and at ``+inf``."""
    thresholds, group = np.unique(scores, return_inverse=True)
    tar_per_score = np.bincount(group, weights=is_target, minlength=thresholds.size)
    non_per_score = np.bincount(group, weights=~is_target, minlength=thresholds.size)
    # integer counts below each threshold (exclusive cumulative sums), divided once at the end
    tar_below = np.concatenate(([0.0], np.cumsum(tar_per_score)))
    non_below = np.concatenate(([0.0], np.cumsum(non_per_score)))
    n_tar, n_non = tar_below[-1], non_below[-1]
    p_miss = tar_below / n_tar
    p_fa = (n_non - non_below) / n_non
    return p_fa, p_miss, np.append(thresholds, np.inf)


def _check_cost_model(p_target: float, c_miss: float, c_fa: float) -> None:
    """Raise unless ``0 < p_target < 1`` and both costs are positive (:func:`minimum_dcf`, :class:`MinDCF`)."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")


def _finite_threshold(thresholds: np.ndarray, index: int) -> float:
    """The threshold at ``index``; the reject-all ``+inf`` becomes the next float above the top score.

    Both accept no trial (scores are finite), and a finite number logs and plots.
    """
    if np.isinf(thresholds[index]):
        return float(np.nextafter(thresholds[index - 1], np.inf))
    return float(thresholds[index])


def det_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detection error trade-off: false-alarm and miss rates at every operating point.

    Parameters
    ----------
    scores : Tensor or ndarray, shape (N,)
        Trial scores, higher = more likely target. Finite.
    labels : Tensor or ndarray, shape (N,)
        1 (or True) for target trials, 0 (or False) for non-target trials.

    Returns
    -------
    p_fa : ndarray, shape (K + 1,)
        ``P_fa(t)``, non-increasing from 1 to 0.
    p_miss : ndarray, shape (K + 1,)
        ``P_miss(t)``, non-decreasing from 0 to 1.
    thresholds : ndarray, shape (K + 1,)
        The K distinct scores in ascending order, then ``+inf``.

    Raises
    ------
    ValueError
        If shapes differ, scores are NaN or infinite, labels are not 0/1, or a class is absent.

    Examples
    --------
    >>> p_fa, p_miss, thresholds = det_curve(np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 0, 1, 1]))
    >>> p_fa.tolist(), p_miss.tolist(), thresholds.tolist()
    ([1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 1.0], [0.1, 0.4, 0.8, inf])
    """
    return _operating_points(*_as_trials(scores, labels))


def equal_error_rate(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate (EER): the rate at which ``P_miss`` and ``P_fa`` are equal.

    On the operating points (see the module docstring), ``d(t) = P_miss(t) - P_fa(t)``
    rises strictly from -1 to 1. Let ``t_j`` be the first point with ``d(t_j) >= 0``.
    If ``d(t_j) == 0`` the EER is ``P_miss(t_j)``. Otherwise the two neighbouring
    points ``(P_fa, P_miss)`` at ``t_{j-1}`` and ``t_j`` are joined by a straight line
    and the EER is where that line meets ``P_miss == P_fa``: with
    ``a = -d(t_{j-1}) / (d(t_j) - d(t_{j-1}))``,
    ``EER = P_miss(t_{j-1}) + a * (P_miss(t_j) - P_miss(t_{j-1}))``. This is the
    interpolated ROC crossing ``fpr == 1 - tpr`` of the usual sklearn/brentq recipe.

    The threshold is interpolated in score with the same weight,
    ``t_{j-1} + a * (t_j - t_{j-1})``, which lies in ``(t_{j-1}, t_j]``; accepting
    ``score >= threshold`` therefore operates at ``t_j``, the first point with
    ``P_fa <= EER <= P_miss``. When ``t_j`` is the reject-all ``+inf`` point the
    threshold is the next float above the highest score.

    Parameters
    ----------
    scores, labels : Tensor or ndarray, shape (N,)
        As in :func:`det_curve`, which also lists the errors raised.

    Returns
    -------
    eer : float
        In [0, 1].
    threshold : float

    Examples
    --------
    Perfectly separated scores; a crossing on an operating point; one between two
    points (a target tied with a non-target at 0.5: halfway from (0.5, 0) to (0, 0.5)):

    >>> equal_error_rate(torch.tensor([0.25, 0.5, 0.75, 1.0]), torch.tensor([0, 0, 1, 1]))
    (0.0, 0.75)
    >>> eer, threshold = equal_error_rate(np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9]), np.array([0, 1, 0, 0, 1, 1]))
    >>> round(eer, 4), threshold
    (0.3333, 0.6)
    >>> equal_error_rate(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1]))
    (0.25, 0.7)
    """
    p_fa, p_miss, thresholds = det_curve(scores, labels)
    d = p_miss - p_fa
    j = int(np.argmax(d >= 0))  # d[-1] == 1, so a crossing always exists; d[0] == -1, so j >= 1
    if d[j] == 0:
        return float(p_miss[j]), _finite_threshold(thresholds, j)
    a = -d[j - 1] / (d[j] - d[j - 1])
    eer = p_miss[j - 1] + a * (p_miss[j] - p_miss[j - 1])
    lower, upper = thresholds[j - 1], _finite_threshold(thresholds, j)
    threshold = lower + a * (upper - lower)
    if threshold <= lower:  # rounding between two nearly equal scores
        threshold = upper
    return float(eer), float(threshold)


def minimum_dcf(
    scores: ArrayLike, labels: ArrayLike, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Normalised minimum detection cost function (NIST SRE).

    ``DCF(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)``,
    divided by ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the
    better of the two trivial systems (accept all, reject all), and minimised over
    the operating points (see the module docstring). Both trivial systems are among
    those points, so the result lies in [0, 1].

    Parameters
    ----------
    scores, labels : Tensor or ndarray, shape (N,)
        As in :func:`det_curve`.
    p_target : float
        Prior probability of a target trial, in (0, 1). 0.01 is the NIST SRE 2008/VoxSRC setting.
    c_miss, c_fa : float
        Costs of a miss and of a false alarm, positive.

    Returns
    -------
    min_dcf : float
        In [0, 1].
    threshold : float
        The lowest threshold that attains it (the next float above the highest score
        when rejecting every trial is optimal).

    Raises
    ------
    ValueError
        As :func:`det_curve`, and if the prior or costs are out of range.

    Examples
    --------
    >>> minimum_dcf(torch.tensor([0.25, 0.5, 0.75, 1.0]), torch.tensor([0, 0, 1, 1]))
    (0.0, 0.75)
    >>> min_dcf, threshold = minimum_dcf(np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9]), np.array([0, 1, 0, 0, 1, 1]),
    ...                                  p_target=0.5)
    >>> round(min_dcf, 4), threshold
    (0.3333, 0.7)
    """
    _check_cost_model(p_target, c_miss, c_fa)
    p_fa, p_miss, thresholds = det_curve(scores, labels)
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    j = int(np.argmin(dcf))
    return float(dcf[j] / min(c_miss * p_target, c_fa * (1.0 - p_target))), _finite_threshold(thresholds, j)


class _VerificationScores(Metric):
    """Gathers trial scores and labels; subclasses reduce them with a pure function."""

    higher_is_better = False
    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Append a batch of trials: ``scores`` and ``labels`` of the same shape (any, flattened)."""
        if scores.shape != labels.shape:
            raise ValueError(
                f"scores and labels must have the same shape, got {tuple(scores.shape)} and {tuple(labels.shape)}"
            )
        self.scores.append(scores.detach().flatten())
        self.labels.append(labels.detach().flatten())

    def _trials(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.scores), dim_zero_cat(self.labels)


class EqualErrorRate(_VerificationScores):
    """Equal error rate of all trials seen since the last reset (see :func:`equal_error_rate`).

    Examples
    --------
    >>> metric = EqualErrorRate()
    >>> metric.update(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]))
    >>> metric.update(torch.tensor([0.2, 0.8]), torch.tensor([0, 1]))
    >>> metric.compute()
    tensor(0.)
    """

    def compute(self) -> torch.Tensor:
        eer, _ = equal_error_rate(*self._trials())
        return torch.tensor(eer, dtype=torch.float32)


class MinDCF(_VerificationScores):
    """Normalised minimum DCF of all trials seen since the last reset (see :func:`minimum_dcf`).

    Parameters
    ----------
    p_target, c_miss, c_fa : float
        As in :func:`minimum_dcf`.
    **kwargs
        Passed to :class:`torchmetrics.Metric`.

    Examples
    --------
    >>> metric = MinDCF(p_target=0.05)
    >>> metric.update(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1]))
    >>> metric.compute()
    tensor(0.)
    """

    def __init__(self, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_cost_model(p_target, c_miss, c_fa)
        self.p_target, self.c_miss, self.c_fa = p_target, c_miss, c_fa

    def compute(self) -> torch.Tensor:
        min_dcf, _ = minimum_dcf(*self._trials(), p_target=self.p_target, c_miss=self.c_miss, c_fa=self.c_fa)
        return torch.tensor(min_dcf, dtype=torch.float32)
