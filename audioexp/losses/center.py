"""Center loss with centers moved by Wen et al.'s update rule, kept identical across DDP ranks.

Joint supervision (Yadav & Rai 2018, eq. 2-3; Wen et al. 2016):
``L = L_s + lambda * L_c`` with ``L_c = 1/2 sum_i ||x_i - c_{y_i}||^2`` on the
bottleneck features ``x_i`` (``lambda = 5`` in the paper). The centers are not
trained by the optimiser: after each batch they move towards the batch's class
means by ``c_j <- c_j - alpha * delta_c_j`` (``audioexp.losses.functional.center_update``).

Normalisation, and what lambda = 5 means
----------------------------------------
What the papers print. Yadav & Rai's eq. 3 sums both terms over the batch and the
center term over the feature dimensions (a squared Euclidean norm), with a 1/2:
``L = -sum_i log p(y_i | x_i) + lambda/2 sum_i ||x_i - c_{y_i}||^2``, lambda = 5.
Wen et al. write the same (their eq. 5); their Caffe layer divides both terms by the
batch size, and their face models use lambda = 0.003 (512-d features).

Batch reduction. Summing or averaging *both* terms over the batch gives the same balance
(``mean/mean = (sum/sum) / n``); under Adam (the paper's optimiser) a constant loss scale
does not change the trajectory (``m`` and ``sqrt(v)`` both scale by ``1/n``), except for a
last batch of another size and ``torch.optim.Adam(weight_decay=...)``, whose L2 gradient
is not scaled (AdamW's decoupled decay is). Mixing them multiplies (mean softmax, summed
center term: by ``n``) or divides (summed softmax, mean center term: by ``n``) the effective
lambda by the batch size, which the paper does not give.

Dimension reduction: the choice that makes lambda = 5 coherent. Read literally (the
squared norm summed over the 128 bottleneck dimensions, 1/2, both terms reduced alike),
lambda = 5 is about 1,700 times Wen et al.'s 0.003 (which is in that normalisation), and
on our miniature VoxCeleb1 it collapses every embedding onto its center while the softmax
stays at chance, with and without a warm-up (``experiments/voxceleb.md``).
With the squared distance *averaged* over the feature dimensions (a per-dimension mean
squared error, what ``F.mse_loss(x, c[y])`` computes), lambda = 5 equals 5 / 128 = 0.039 of the literal reading: the value that
trains well on the miniature corpus, within an order of magnitude of Wen et al.'s
0.003 x 512 = 1.5 in this normalisation, and independent of ``ndims`` and of the batch
size, the two settings the paper varies (verification "with different values of
bottleneck dimensions") or leaves out while keeping "lambda = 5 in all our experiments".
So ``dim_reduction="mean"`` is the default here, with ``reduction="mean"`` over the batch
to pair with ``cross_entropy``'s default and the 1/2 of eq. 1 kept:
``L_c = 1/2 mean_i mean_d (x_id - c_{y_i} d)^2``. ``dim_reduction="sum"`` gives the
printed squared norm (its lambda is ``ndims`` times smaller for the same balance: 0.04
for ndims 128). The authors' code is not public; this is our reading, not theirs.
The center update itself uses no gradient and is the same under every normalisation.

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
    dim_reduction : {"mean", "sum"}
        Reduction of the squared distance over the ``ndims`` feature dimensions: "mean" (the
        default, under which the paper's lambda = 5 is coherent; module docstring) or "sum"
        (the squared Euclidean norm of eq. 1, lambda ``ndims`` times smaller for the same balance).

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
        self, num_classes: int, ndims: int, alpha: float = 0.5, reduction: str = "mean",
        dim_reduction: str = "mean",
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if dim_reduction not in REDUCTIONS:
            raise ValueError(f"dim_reduction must be one of {REDUCTIONS}, got {dim_reduction!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.num_classes, self.ndims = num_classes, ndims
        self.alpha, self.reduction, self.dim_reduction = alpha, reduction, dim_reduction
        self.register_buffer("centers", torch.zeros(num_classes, ndims))

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, ndims={self.ndims}, alpha={self.alpha}, "
            f"reduction={self.reduction!r}, dim_reduction={self.dim_reduction!r}"
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
        return center_loss(features, labels, self.centers.detach(), self.reduction, self.dim_reduction)

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
