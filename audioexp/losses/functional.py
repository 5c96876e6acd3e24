"""Loss functions on plain tensors (no state, no modules).

Center loss: Wen, Zhang, Li & Qiao (2016), "A Discriminative Feature Learning
Approach for Deep Face Recognition" (ECCV), eq. 2 and Algorithm 1; used on the
bottleneck of a speaker network by Yadav & Rai (2018), eq. 1-3.
"""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum")


def _check_center_inputs(features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> None:
    if features.dim() != 2 or centers.dim() != 2:
        raise ValueError(
            "features must be (batch, ndims) and centers (num_classes, ndims), got shapes "
            f"{tuple(features.shape)} and {tuple(centers.shape)}"
        )
    if features.shape[1] != centers.shape[1]:
        raise ValueError(
            f"features have {features.shape[1]} dims but centers have {centers.shape[1]}"
        )
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"labels must be ({features.shape[0]},) to match features, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")


def center_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    centers: torch.Tensor,
    reduction: str = "mean",
    dim_reduction: str = "mean",
) -> torch.Tensor:
    """Center loss ``1/2 ||x_i - c_{y_i}||^2``, the squared distance summed or averaged over
    the feature dimensions, then summed or averaged over the batch.

    ``dim_reduction="sum"`` is the squared Euclidean distance of eq. 1 of Yadav & Rai (2018)
    (eq. 2 of Wen et al.); ``"mean"`` divides it by ``ndims`` (a per-dimension mean squared
    error, as ``F.mse_loss`` computes it). ``reduction="sum"`` sums over the batch as eq. 1
    is printed; ``"mean"`` divides by the batch size, as ``cross_entropy`` does by default.
    Which of these makes the paper's lambda = 5 coherent is argued in
    ``audioexp.losses.center``; ``CenterLoss`` uses ``"mean"`` for both. Reduce the softmax
    term over the batch the same way as this one. Gradient flows to ``centers`` too if they
    require it; ``CenterLoss`` passes them detached and moves them with ``center_update``
    instead.

    Parameters
    ----------
    features : Tensor, shape (batch, ndims)
    labels : Tensor of int, shape (batch,)
        Class index of each row, in ``[0, num_classes)``.
    centers : Tensor, shape (num_classes, ndims)
    reduction : {"mean", "sum"}
        Over the batch.
    dim_reduction : {"mean", "sum"}
        Over the feature dimensions.

    Returns
    -------
    Tensor, shape ()

    Examples
    --------
    >>> x = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    >>> c = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    >>> center_loss(x, torch.tensor([0, 1]), c, reduction="sum", dim_reduction="sum")  # (5 + 2) / 2
    tensor(3.5000)
    >>> center_loss(x, torch.tensor([0, 1]), c)  # (5 / 2 + 2 / 2) / 2 / 2
    tensor(0.8750)
    >>> center_loss(torch.randn(8, 4), torch.randint(0, 3, (8,)), torch.randn(3, 4)).shape
    torch.Size([])
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if dim_reduction not in REDUCTIONS:
        raise ValueError(f"dim_reduction must be one of {REDUCTIONS}, got {dim_reduction!r}")
    _check_center_inputs(features, labels, centers)
    squared = (features - centers[labels]).pow(2)
    per_item = 0.5 * (squared.mean(dim=1) if dim_reduction == "mean" else squared.sum(dim=1))
    return per_item.mean() if reduction == "mean" else per_item.sum()


def center_statistics(
    features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums of ``c_j - x_i`` and counts of ``y_i = j`` over a batch.

    These are additive over disjoint parts of a batch (e.g. the ranks of a DDP
    job, given identical centers), so the update from summed statistics equals
    the update on the concatenated batch.

    Parameters
    ----------
    features : Tensor, shape (batch, ndims)
    labels : Tensor of int, shape (batch,)
    centers : Tensor, shape (num_classes, ndims)

    Returns
    -------
    sums : Tensor, shape (num_classes, ndims)
        ``sum_i 1[y_i = j] (c_j - x_i)``, in ``centers.dtype``.
    counts : Tensor, shape (num_classes,)
        ``sum_i 1[y_i = j]``, in ``centers.dtype``.

    Examples
    --------
    >>> sums, counts = center_statistics(torch.randn(8, 4), torch.randint(0, 3, (8,)), torch.zeros(3, 4))
    >>> sums.shape, counts.shape
    (torch.Size([3, 4]), torch.Size([3]))
    """
    _check_center_inputs(features, labels, centers)
    features = features.detach().to(centers.dtype)
    centers = centers.detach()
    sums = torch.zeros_like(centers).index_add_(0, labels, centers[labels] - features)
    counts = torch.zeros(centers.shape[0], dtype=centers.dtype, device=centers.device)
    counts.index_add_(0, labels, torch.ones_like(labels, dtype=centers.dtype))
    return sums, counts


def apply_center_update(
    centers: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, alpha: float
) -> torch.Tensor:
    """New centers ``c_j - alpha * sums_j / (1 + counts_j)`` (Wen et al. 2016, eq. 4 and Algorithm 1).

    Classes with ``counts_j = 0`` have ``sums_j = 0`` and stay where they are.

    Parameters
    ----------
    centers : Tensor, shape (num_classes, ndims)
    sums, counts : Tensor, shapes (num_classes, ndims) and (num_classes,)
        From ``center_statistics``, possibly summed over several batches or ranks.
    alpha : float
        Center learning rate in [0, 1].

    Returns
    -------
    Tensor, shape (num_classes, ndims)
    """
    return centers - alpha * sums / (1.0 + counts)[:, None]


def center_update(
    features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, alpha: float
) -> torch.Tensor:
    """The centers after one step of Wen et al.'s Algorithm 1 on a batch.

    ``delta_c_j = sum_i 1[y_i = j] (c_j - x_i) / (1 + sum_i 1[y_i = j])`` and
    ``c_j <- c_j - alpha * delta_c_j``; classes absent from the batch are unchanged.
    The "1 +" keeps a class seen once from jumping onto its single feature (with
    ``alpha = 1`` it moves half way). Nothing is differentiated: ``features`` are
    detached.

    Parameters
    ----------
    features : Tensor, shape (batch, ndims)
    labels : Tensor of int, shape (batch,)
    centers : Tensor, shape (num_classes, ndims)
    alpha : float

    Returns
    -------
    Tensor, shape (num_classes, ndims)
        New centers; the input ``centers`` are not modified.

    Examples
    --------
    >>> center_update(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), torch.zeros(2, 2), alpha=1.0)
    tensor([[1., 0.],
            [0., 0.]])
    """
    sums, counts = center_statistics(features, labels, centers)
    return apply_center_update(centers.detach(), sums, counts, alpha)
