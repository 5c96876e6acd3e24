"""SpeechMusicResNet: speech/music discrimination of 5-s broadcast clips (Han 2021).

S.-I. Han, "Speech-Music Discrimination Using Deep Learning", J. Korea Academia-Industrial
cooperation Society, 2021: an ImageNet ResNet18 whose first layer is set to a new
``Conv2d(1, 64, kernel_size=7, stride=2, padding=3)`` (``first_conv=random`` of
:class:`audioexp.networks.resnet.ResNet18Body`), fine-tuned on unnormalised log-mel
spectrograms with fastai v1 (``fit_one_cycle``, fastai's classifier head, the whole
network unfrozen as fastai audio's ``audio_learner`` does). 89.6 % accuracy on a random
20 % validation split of 3.89 M clips. Which settings are the paper's, the library's and
ours: ``experiments/speech_music.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from torch import nn

from audioexp.systems.classification import AudioClassifier

log = logging.getLogger(__name__)


class SpeechMusicResNet(AudioClassifier):
    """ResNet18 speech/music classifier on a log-mel front-end.

    Parameters
    ----------
    frontend : nn.Module
        Waveform (batch, time) -> (batch, 1, n_mels, frames), e.g. ``LogMelSpectrogram``.
    backbone : nn.Module
        (batch, 1, F, T) -> (batch, C, F', T') with an ``out_channels`` attribute: the paper's
        ``ResNet18Body`` (ImageNet weights or none, a fresh one-channel first convolution).
    head : callable
        ``head(in_channels, num_classes) -> nn.Module`` (a ``_partial_``): fastai v1's head
        (``FastaiClassifierHead``, with its ``dropout`` = fastai's ``ps``) or a linear one.
    num_classes : int
    class_names : list of str
    lr : float
        ``max_lr`` of the head; the body gets ``lr * body_lr_factor`` (fastai v1's
        ``slice(3e-3)`` gives the body groups a tenth).
    optimizer, scheduler : partial
        AdamW (fastai's ``true_wd``) and OneCycleLR in the default config.
    """

    def __init__(
        self,
        frontend: nn.Module,
        backbone: nn.Module,
        head: Callable[[int, int], nn.Module],
        num_classes: int = 2,
        class_names: list[str] | None = None,
        lr: float = 3e-3,
        body_lr_factor: float = 0.1,
        optimizer: partial | None = None,
        scheduler: partial | None = None,
    ) -> None:
        # plain lists in the checkpoint's hparams: it then loads with torch.load(weights_only=True)
        class_names = [str(c) for c in class_names] if class_names is not None else None
        super().__init__(
            frontend=frontend,
            backbone=backbone,
            head=head(backbone.out_channels, num_classes),
            num_classes=num_classes,
            class_names=class_names,
            lr=lr,
            optimizer=optimizer,
            scheduler=scheduler,
        )
        self.body_lr_factor = body_lr_factor
        self.save_hyperparameters(ignore=["frontend", "backbone", "head", "optimizer", "scheduler"], logger=False)
        log.info("SpeechMusicResNet: %s body, %s head", type(backbone).__name__, type(self.head).__name__)

    def parameter_groups(self) -> list[dict]:
        return [
            {"params": list(self.backbone.parameters()), "lr": self.lr * self.body_lr_factor, "name": "body"},
            {"params": list(self.head.parameters()) + list(self.frontend.parameters()), "lr": self.lr, "name": "head"},
        ]
