"""Classifier heads on (batch, channels, freq, time) feature maps."""

from __future__ import annotations

import torch
from torch import nn


class AdaptiveConcatPool2d(nn.Module):
    """Global max pool and global average pool, concatenated (max first, as fastai v1).

    Shapes
    ------
    (batch, C, H, W) -> (batch, 2C)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=1)


class FastaiClassifierHead(nn.Sequential):
    """fastai v1 ``create_head``: concat pool, then BN-dropout-linear blocks.

    ``[BN(2C), Dropout(p/2), Linear(2C, hidden), ReLU, BN(hidden), Dropout(p), Linear(hidden, n)]``
    with fastai's initialisation of the new layers (Kaiming normal weights, zero biases).

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the body's output.
    num_classes : int
    dropout : float
        fastai's ``ps`` (0.5): the last dropout; the first is half of it.
    hidden : int

    Examples
    --------
    >>> FastaiClassifierHead(512, 2)(torch.randn(4, 512, 2, 5)).shape
    torch.Size([4, 2])
    """

    def __init__(
        self, in_channels: int, num_classes: int, dropout: float = 0.5, hidden: int = 512
    ) -> None:
        super().__init__(
            AdaptiveConcatPool2d(),
            nn.BatchNorm1d(2 * in_channels),
            nn.Dropout(dropout / 2),
            nn.Linear(2 * in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)


class LinearClassifierHead(nn.Module):
    """Global average pool, dropout, linear (torchvision's ResNet head).

    Examples
    --------
    >>> LinearClassifierHead(512, 3)(torch.randn(2, 512, 2, 5)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


def make_classifier_head(
    kind: str, in_channels: int, num_classes: int, dropout: float = 0.5
) -> nn.Module:
    """``kind`` in {"fastai", "linear"}."""
    if kind == "fastai":
        return FastaiClassifierHead(in_channels, num_classes, dropout)
    if kind == "linear":
        return LinearClassifierHead(in_channels, num_classes, dropout)
    raise ValueError(f"head must be 'fastai' or 'linear', got {kind!r}")
