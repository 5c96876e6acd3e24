"""Synchronised BatchNorm for CPU (gloo) DDP, where PyTorch's SyncBatchNorm refuses to run.

With ``trainer=ddp_cpu`` each rank holds a share of the global batch. Plain BatchNorm
normalises every share by its own statistics, so two processes train another model than one
process on the same global batch. :class:`GlooSyncBatchNorm` computes the statistics of the
whole global batch: sums and counts are all-reduced across ranks with the differentiable
``torch.distributed.nn.functional.all_reduce`` (autograd carries the gradient through the
reduction, as torch's own SyncBatchNorm does), in two passes (mean, then the centred sum of
squares) for accuracy. :class:`CPUSyncBatchNorm` is the Lightning plugin that swaps it in
(``trainer.plugins``; the ``ddp_cpu`` preset uses it). Outside a multi-process run, and in
evaluation, the layer is the plain BatchNorm it replaced.
"""

from __future__ import annotations

import torch
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import nn

__all__ = ["CPUSyncBatchNorm", "GlooSyncBatchNorm", "convert_batchnorm", "revert_batchnorm"]


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all ranks (any device, any backend)."""

    _original_class: type = nn.BatchNorm2d

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        count = all_reduce(x.new_tensor([x.numel() / x.shape[1]]))
        mean = all_reduce(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _swap(module: nn.Module, make) -> nn.Module:
    new = make(module)
    if new is not None:
        return new
    for name, child in module.named_children():
        module.add_module(name, _swap(child, make))
    return module


def _copy_into(target: nn.modules.batchnorm._BatchNorm, source: nn.modules.batchnorm._BatchNorm):
    if source.affine:  # the same Parameter objects: the optimiser's references stay valid
        target.weight, target.bias = source.weight, source.bias
    if source.track_running_stats:
        target.running_mean, target.running_var = source.running_mean, source.running_var
        target.num_batches_tracked = source.num_batches_tracked
    target.train(source.training)
    return target


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm1d/2d/3d of ``module`` as a :class:`GlooSyncBatchNorm` (same parameters)."""
    def make(m):
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, (GlooSyncBatchNorm, nn.SyncBatchNorm)):
            new = GlooSyncBatchNorm(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            new._original_class = type(m)
            return _copy_into(new, m)
        return None
    return _swap(module, make)


def revert_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_batchnorm`."""
    def make(m):
        if isinstance(m, GlooSyncBatchNorm):
            new = m._original_class(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            return _copy_into(new, m)
        return None
    return _swap(module, make)


class CPUSyncBatchNorm(LayerSync):
    """Lightning plugin: BatchNorm statistics over the global batch on CPU DDP (gloo)."""

    def apply(self, model: nn.Module) -> nn.Module:
        return convert_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return revert_batchnorm(model)
