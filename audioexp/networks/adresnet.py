"""Networks of Xi et al. (ICASSP 2022): the ResNet of Table 1, VGG5, and the AD module.

"Frontend attributes disentanglement for speech emotion recognition". Feature maps are
``(batch, C, F, T)`` (frequency before time, as the front-ends of this package emit them);
the paper writes ``C x T x F``.

- :class:`TableOneResNet`: conv1 7x7/16, then four stages of two 3x3 residual blocks at
  16, 32, 64 and 128 channels, each stage followed by a standalone 3x3 stride-2
  "transition" convolution (to 32, 64, 128 and 128 channels). Not torchvision's ResNet18.
  The paper leaves open, and we choose: conv1 stride 1 (``conv1_stride``; the four
  transitions already halve the 41 filterbank channels four times, 41 -> 21 -> 11 -> 6 -> 3),
  no max-pool (Table 1 lists none), BatchNorm + ReLU after conv1 and every transition,
  the basic block of He et al. (2016) (conv-BN-ReLU-conv-BN, identity shortcut, ReLU).
- :class:`VGG5`: five 3x3 convolutions with 16, 32, 48, 64 and 80 channels (section 4.2);
  ours: BatchNorm + ReLU after each and a 2x2 max-pool after the first four.
- :class:`AttributeDisentanglement`: eqs. 1-3 with the time-frequency attention of
  eqs. 5-6 (:class:`TimeFrequencyAttention`, D = 8).

Each network exposes its layers as ``blocks`` (an ordered ``nn.ModuleDict``) so that one
AD module can be inserted after any of them (:meth:`FeatureExtractor.forward`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "ADOutput",
    "AttributeDisentanglement",
    "BasicBlock",
    "FeatureExtractor",
    "TableOneResNet",
    "TimeFrequencyAttention",
    "VGG5",
    "build_extractor",
]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """Residual block ``relu(x + BN(conv3x3(relu(BN(conv3x3(x))))))`` at constant width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(out)))


@dataclass
class ADOutput:
    """What an AD module returns: ``F+`` (goes on), ``F-`` and the attention mask ``a_att``."""

    positive: torch.Tensor
    negative: torch.Tensor
    attention: torch.Tensor


class FeatureExtractor(nn.Module):
    """Layers in ``self.blocks`` run in order; one AD module may follow any of them."""

    blocks: nn.ModuleDict
    block_channels: dict[str, int]

    @property
    def out_channels(self) -> int:
        return self.block_channels[list(self.blocks)[-1]]

    def forward(
        self, x: torch.Tensor, ad: "AttributeDisentanglement | None" = None, ad_after: str = "end"
    ) -> tuple[torch.Tensor, ADOutput | None]:
        """Feature map ``(batch, out_channels, F', T')`` and the AD module's output (or None).

        ``ad_after`` names a block (``"end"``: the last); the AD module's ``F+`` replaces that
        block's output for the rest of the network.
        """
        last = list(self.blocks)[-1]
        target = last if ad_after == "end" else ad_after
        if ad is not None and target not in self.blocks:
            raise ValueError(f"ad_after must be 'end' or one of {list(self.blocks)}, got {ad_after!r}")
        out = None
        for name, block in self.blocks.items():
            x = block(x)
            if ad is not None and name == target:
                out = ad(x)
                x = out.positive
        return x, out


class TableOneResNet(FeatureExtractor):
    """The ResNet of Table 1 ("ResNet18" in the paper).

    Parameters
    ----------
    in_channels : int
    conv1_stride : int
        Unstated in the paper; 1 by default (ours).
    widths : sequence of 4 int
        Stage widths (16, 32, 64, 128).
    transition_widths : sequence of 4 int
        Output channels of Transition 1-4 (32, 64, 128, 128).
    blocks_per_stage : int

    Shapes
    ------
    (batch, in_channels, F, T) -> (batch, 128, F', T'), ``F' = ceil(F / 16)`` with stride 1.

    Examples
    --------
    >>> TableOneResNet()(torch.randn(2, 1, 41, 100))[0].shape
    torch.Size([2, 128, 3, 7])
    """

    def __init__(
        self,
        in_channels: int = 1,
        conv1_stride: int = 1,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        transition_widths: tuple[int, ...] = (32, 64, 128, 128),
        blocks_per_stage: int = 2,
    ) -> None:
        super().__init__()
        if len(widths) != len(transition_widths):
            raise ValueError("one transition per stage")
        for i in range(1, len(widths)):
            if transition_widths[i - 1] != widths[i]:
                raise ValueError(f"transition {i} must widen to stage {i + 1}'s {widths[i]} channels")
        blocks: dict[str, nn.Module] = {"conv1": conv_bn_relu(in_channels, widths[0], 7, conv1_stride)}
        channels = {"conv1": widths[0]}
        for i, (width, out) in enumerate(zip(widths, transition_widths), start=1):
            blocks[f"stage{i}"] = nn.Sequential(*[BasicBlock(width) for _ in range(blocks_per_stage)])
            blocks[f"transition{i}"] = conv_bn_relu(width, out, 3, stride=2)
            channels[f"stage{i}"] = width
            channels[f"transition{i}"] = out
        self.blocks = nn.ModuleDict(blocks)
        self.block_channels = channels
        self.conv1_stride = conv1_stride


class VGG5(FeatureExtractor):
    """Five 3x3 convolutions, 16-32-48-64-80 channels (section 4.2).

    Examples
    --------
    >>> VGG5()(torch.randn(2, 1, 41, 100))[0].shape
    torch.Size([2, 80, 2, 6])
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 48, 64, 80)) -> None:
        super().__init__()
        blocks: dict[str, nn.Module] = {}
        channels = {}
        prev = in_channels
        for i, width in enumerate(widths, start=1):
            layers = list(conv_bn_relu(prev, width, 3))
            if i < len(widths):
                layers.append(nn.MaxPool2d(2))
            blocks[f"conv{i}"] = nn.Sequential(*layers)
            channels[f"conv{i}"] = width
            prev = width
        self.blocks = nn.ModuleDict(blocks)
        self.block_channels = channels


NETWORKS = {"resnet": TableOneResNet, "vgg5": VGG5}


def build_extractor(network: str, conv1_stride: int = 1) -> FeatureExtractor:
    """``"resnet"`` (Table 1) or ``"vgg5"``."""
    if network == "resnet":
        return TableOneResNet(conv1_stride=conv1_stride)
    if network == "vgg5":
        return VGG5()
    raise ValueError(f"network must be one of {sorted(NETWORKS)}, got {network!r}")


class TimeFrequencyAttention(nn.Module):
    """Time-frequency attention of eqs. 5-6: a channel weight at every (frequency, time) point.

    ``R^F`` (the map averaged over frequency, one C-vector per frame) and ``R^T`` (averaged
    over time, one per frequency) each pass a 1x1 convolution C -> D and one D -> C; the two
    are broadcast over the missing axis, summed and squashed by a sigmoid. Eqs. 5-6 put no
    activation between the two convolutions, and none is used (``hidden_activation``
    "none"); the two branches have their own weights (ours, as in strip pooling).

    Parameters
    ----------
    channels : int
        C.
    reduction_dim : int
        D (8 in the paper).
    hidden_activation : {"none", "relu"}

    Shapes
    ------
    (batch, C, F, T) -> (batch, C, F, T), values in (0, 1)

    Examples
    --------
    >>> TimeFrequencyAttention(16)(torch.randn(2, 16, 5, 9)).shape
    torch.Size([2, 16, 5, 9])
    """

    def __init__(self, channels: int, reduction_dim: int = 8, hidden_activation: str = "none") -> None:
        super().__init__()
        if hidden_activation not in ("none", "relu"):
            raise ValueError(f"hidden_activation must be 'none' or 'relu', got {hidden_activation!r}")
        self.time_reduce = nn.Conv1d(channels, reduction_dim, 1)  # on R^F: (B, C, T)
        self.time_expand = nn.Conv1d(reduction_dim, channels, 1)
        self.freq_reduce = nn.Conv1d(channels, reduction_dim, 1)  # on R^T: (B, C, F)
        self.freq_expand = nn.Conv1d(reduction_dim, channels, 1)
        self.act = nn.ReLU() if hidden_activation == "relu" else nn.Identity()

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        per_frame = r.mean(dim=2)  # R^F, (B, C, T)
        per_band = r.mean(dim=3)  # R^T, (B, C, F)
        a_time = self.time_expand(self.act(self.time_reduce(per_frame)))
        a_freq = self.freq_expand(self.act(self.freq_reduce(per_band)))
        return torch.sigmoid(a_time[:, :, None, :] + a_freq[:, :, :, None])


class AttributeDisentanglement(nn.Module):
    """The AD module (section 3.1): attribute normalisation and reconstruction.

    ``IN(F) = gamma (F - mu(F)) / sigma(F) + beta`` (eq. 1, per sample and channel over the
    F x T plane, learned ``gamma, beta``), residual ``R = F - IN(F)``, attention ``a`` of
    :class:`TimeFrequencyAttention`, ``R+ = a R``, ``R- = (1 - a) R`` (eq. 2),
    ``F+ = IN(F) + R+``, ``F- = IN(F) + R-`` (eq. 3).

    Parameters
    ----------
    channels : int
    reduction_dim : int
        D of the attention (8).
    eps : float
        Added to the variance in ``sigma`` (PyTorch's InstanceNorm default).

    Shapes
    ------
    (batch, C, F, T) -> :class:`ADOutput` of three (batch, C, F, T) tensors

    Examples
    --------
    >>> AttributeDisentanglement(32)(torch.randn(2, 32, 6, 11)).positive.shape
    torch.Size([2, 32, 6, 11])
    """

    def __init__(self, channels: int, reduction_dim: int = 8, eps: float = 1e-5, hidden_activation: str = "none") -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=True, eps=eps)
        self.attention = TimeFrequencyAttention(channels, reduction_dim, hidden_activation)

    def forward(self, x: torch.Tensor) -> ADOutput:
        if x.dim() != 4:
            raise ValueError(f"AttributeDisentanglement expects (batch, C, F, T), got shape {tuple(x.shape)}")
        normed = self.norm(x)
        residual = x - normed
        a = self.attention(residual)
        return ADOutput(positive=normed + a * residual, negative=normed + (1 - a) * residual, attention=a)
