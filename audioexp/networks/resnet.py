"""ResNet18 for one-channel spectrogram "images" (Han 2021, after fastai audio v1).

The paper sets the first layer of an ImageNet ResNet18 to
``Conv2d(1, 64, kernel_size=7, stride=2, padding=3)``. How the one-channel kernel is
made is ``first_conv``:

- ``random`` (default): a freshly initialised layer (PyTorch's default initialisation),
  the rest of the network pretrained. This is what fastai audio's ``audio_learner`` did
  from 2019-05-28 to 2019-06-14 (``learn.model[0][0] = nn.Conv2d(1, 64, ...)`` after
  ``cnn_learner``, whose ``pretrained`` defaults to True) and the plain reading of the
  paper, which "sets" that layer;
- ``copy_red``: keep input channel 0 of the RGB kernel: fastai audio's ``adapt_conv``
  with ``pretrained=True`` from 2019-08-14 on (release 0.1 and the last commit);
- ``sum``: sum the kernel over colour, so a one-channel input ``x`` gives exactly
  what the RGB layer gives for ``x`` repeated on three channels (ours).

See ``experiments/speech_music.md`` for the library's history and why ``random`` is the
default.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

log = logging.getLogger(__name__)

FIRST_CONV_MODES = ("random", "copy_red", "sum")
PRETRAINED_CHOICES = ("imagenet", "none")


class PretrainedWeightsMissing(FileNotFoundError):
    """Pretrained weights are neither in the cache nor downloadable."""


def imagenet_checkpoint_path() -> Path:
    """Where torchvision looks for the ImageNet ResNet18 weights (the torch hub cache)."""
    filename = os.path.basename(ResNet18_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_imagenet_resnet18_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet18 state dict, from the hub cache or downloaded.

    Raises
    ------
    PretrainedWeightsMissing
        When the file is not cached and cannot be downloaded, with instructions.
    """
    path = imagenet_checkpoint_path()
    if not path.exists():
        log.info("ImageNet ResNet18 weights not in %s; trying to download them", path)
    try:
        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=False)
    except Exception as err:  # URLError, HTTPError, OSError, ...: all mean "not available"
        raise PretrainedWeightsMissing(
            "model.backbone.pretrained=imagenet needs torchvision's ImageNet ResNet18 weights, which are "
            f"not in the torch hub cache and could not be downloaded ({type(err).__name__}: {err}).\n"
            f"  Place the file {path.name} (from {ResNet18_Weights.IMAGENET1K_V1.url}) at\n"
            f"    {path}\n"
            "  (set TORCH_HOME to use another cache), or train from scratch with model.backbone.pretrained=none."
        ) from err


def _one_channel_conv(rgb: nn.Conv2d, mode: str) -> nn.Conv2d:
    conv = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    with torch.no_grad():
        if mode == "copy_red":
            conv.weight.copy_(rgb.weight[:, :1])
        elif mode == "sum":
            conv.weight.copy_(rgb.weight.sum(dim=1, keepdim=True))
        elif mode != "random":
            raise ValueError(f"first_conv must be one of {FIRST_CONV_MODES}, got {mode!r}")
    return conv


class ResNet18Body(nn.Module):
    """torchvision ResNet18 up to ``layer4`` with a one-channel first convolution.

    Parameters
    ----------
    pretrained : {"imagenet", "none"}
        ImageNet weights for everything but the first convolution, or none.
    first_conv : {"random", "copy_red", "sum"}
        How the one-channel first convolution is made (see the module docstring).

    Shapes
    ------
    input (batch, 1, freq, time) -> output (batch, 512, ceil(freq/32), ceil(time/32))

    Examples
    --------
    >>> ResNet18Body("none", "random")(torch.randn(2, 1, 64, 100)).shape
    torch.Size([2, 512, 2, 4])
    """

    out_channels = 512

    def __init__(self, pretrained: str = "imagenet", first_conv: str = "random") -> None:
        super().__init__()
        if pretrained not in PRETRAINED_CHOICES:
            raise ValueError(f"pretrained must be one of {PRETRAINED_CHOICES}, got {pretrained!r}")
        if first_conv not in FIRST_CONV_MODES:
            raise ValueError(f"first_conv must be one of {FIRST_CONV_MODES}, got {first_conv!r}")
        net: ResNet = resnet18(weights=None)
        if pretrained == "imagenet":
            net.load_state_dict(load_imagenet_resnet18_state_dict(), strict=True)
        self.conv1 = _one_channel_conv(net.conv1, first_conv)
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (batch, 1, freq, time) input, got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
