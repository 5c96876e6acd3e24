"""Center loss with centers moved by Wen et al.'s update rule, kept identical across DDP ranks.

Joint supervision (Yadav & Rai 2018, eq. 2-3; Wen et al. 2016):
``L = L_s + lambda * L_c`` with ``L_c = 1/2 sum_i ||x_i - c_{y_i}||^2`` on the
bottleneck features ``x_i`` (``lambda = 5`` in the paper). The centers are not
trained by the optimiser: after each batch they move towards the batch's class
means by ``c_j <- c_j - alpha * delta_c_j`` (``audioexp.losses.functional.center_update``).

Reduction, and what lambda means
--------------------------------
Eq. 3 sums both terms over the batch. PyTorch's ``cross_entropy`` averages by
default. Reduce both terms the same way, so that lambda means what the paper
means: with ``reduction="mean"`` for both (the default here, to pair with
``cross_entropy``'s default), ``mean/mean = (sum/sum) / n``, so the balance
between the terms is the paper's and only the overall scale differs by the
constant ``1/n``. Under Adam (the paper's optimiser) a constant loss scale does
not change the trajectory: ``m`` scales by ``1/n`` and ``sqrt(v)`` by ``1/n``, so
``m / (sqrt(v) + eps)`` is unchanged up to ``eps``. The exceptions: a last batch
of another size (the factor then varies from step to step; drop it or ignore
the effect), and ``torch.optim.Adam(weight_decay=...)``, whose L2 gradient is not
scaled (AdamW's decoupled decay is). Mixing the two (mean softmax, summed center
term) would multiply the effective lambda by the batch size. The center update
itself uses no gradient and is the same under either reduction.

Centers
-------
``centers`` is a registered buffer, not a Parameter: the optimiser never sees
it, it travels with ``.to(device)`` and is saved in and restored from the
``state_dict`` (so from Lightning checkpoints). It starts at zeros (the paper
does not say how it starts; with the update rule each seen class moves towards
its features' mean within a few batches).

Distributed data parallel
-------------------------
Every rank must apply the same update or the centers drift apart. With
``torch.distributed`` initialised, ``update_centers`` all-reduces (sums) the
per-class statistics ``sum_i 1[y_i = j] (c_j - x_i)`` and ``sum_i 1[y_i = j]``
in one collective, then every rank applies the rule to the global sums. Since
the statistics are additive and the centers identical on every rank, this is
exactly the single-process update on the concatenated global batch (up to the
order of float additions), whatever the per-rank batch sizes. Every rank must
call ``update_centers`` at the same step (it is a collective). (Lightning's DDP
also broadcasts buffers from rank 0 at each forward when the loss is a
submodule of the LightningModule; the update above keeps the ranks identical
without relying on that.)
"""

from __future__ import annotations

import torch
from torch import distributed as dist
from torch import nn

from audioexp.losses.functional import (
    REDUCTIONS,
    apply_center_update,
    center_loss,
    center_statistics,
)


def all_reduce_center_statistics(
    sums: torch.Tensor, counts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the per-class statistics over all ranks; unchanged without a process group.

    Parameters
    ----------
    sums : Tensor, shape (num_classes, ndims)
    counts : Tensor, shape (num_classes,)

    Returns
    -------
    sums, counts : the global sums, same shapes
    """
    if not (dist.is_available() and dist.is_initialized()):
        return sums, counts
    packed = torch.cat([sums, counts[:, None]], dim=1)  # one collective instead of two
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return packed[:, :-1], packed[:, -1]


class CenterLoss(nn.Module):
    """Center loss on (batch, ndims) features, with centers updated by Wen et al.'s rule.

    Parameters
    ----------
    num_classes : int
    ndims : int
        Feature (bottleneck) width.
    alpha : float
        Center learning rate of the update rule, in [0, 1] (0.5 by default).
    reduction : {"mean", "sum"}
        Batch reduction of the loss; match it to the softmax term's (module docstring).

    Examples
    --------
    >>> loss_fn = CenterLoss(num_classes=3, ndims=4)
    >>> features, labels = torch.randn(8, 4, requires_grad=True), torch.randint(0, 3, (8,))
    >>> loss = loss_fn(features, labels)
    >>> loss_fn.update_centers(features, labels)
    >>> loss.shape, loss_fn.centers.shape
    (torch.Size([]), torch.Size([3, 4]))
    """

    centers: torch.Tensor

    def __init__(
        self, num_classes: int, ndims: int, alpha: float = 0.5, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.num_classes, self.ndims = num_classes, ndims
        self.alpha, self.reduction = alpha, reduction
        self.register_buffer("centers", torch.zeros(num_classes, ndims))

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, ndims={self.ndims}, alpha={self.alpha}, "
            f"reduction={self.reduction!r}"
        )

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Center loss; the gradient flows to ``features`` only.

        Parameters
        ----------
        features : Tensor, shape (batch, ndims)
        labels : Tensor of int, shape (batch,)

        Returns
        -------
        Tensor, shape ()
        """
        return center_loss(features, labels, self.centers.detach(), self.reduction)

    @torch.no_grad()
    def update_centers(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Move the centers one step of the update rule, on the global batch under DDP.

        Call it once per training batch with that batch's features (before or
        after ``backward``: the loss holds no reference to the centers).

        Parameters
        ----------
        features : Tensor, shape (batch, ndims)
        labels : Tensor of int, shape (batch,)
        """
        sums, counts = center_statistics(features, labels, self.centers)
        sums, counts = all_reduce_center_statistics(sums, counts)
        self.centers.copy_(apply_center_update(self.centers, sums, counts, self.alpha))
