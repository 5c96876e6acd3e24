"""VGGCenterLoss: the joint loss it optimises and the lambda warm-up."""

import functools
from types import SimpleNamespace

import pytest
import torch

from audioexp.features import LogPowerSpectrogram
from audioexp.losses.center import CenterLoss
from audioexp.networks.vgg import VGGSpeakerNet
from audioexp.systems.vgg_center_loss import VGGCenterLoss


def _model(**kw):
    """The system with its parts injected as conf/model/vgg_center_loss.yaml does (a narrow network B)."""
    torch.manual_seed(0)
    frontend = LogPowerSpectrogram()
    backbone = VGGSpeakerNet("B", num_classes=5, ndims=128, width=0.125)
    return VGGCenterLoss(frontend, backbone, functools.partial(CenterLoss, alpha=0.5), num_classes=5, **kw)


def _fake_trainer(epoch: int, batch: int, batches: int):
    progress = SimpleNamespace(current=SimpleNamespace(ready=batch))
    return SimpleNamespace(
        current_epoch=epoch, num_training_batches=batches,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
    )


def test_model_step_is_softmax_plus_lambda_center():
    model = _model(center_loss_weight=5.0).eval()
    model.center_loss.centers.normal_()
    batch = {"waveform": torch.randn(3, 16000), "label": torch.tensor([0, 3, 3])}
    loss, logits, embedding, softmax, center = model.model_step(batch)
    torch.testing.assert_close(softmax, torch.nn.functional.cross_entropy(logits, batch["label"]))
    # the default normalisation: 1/2 of the squared difference averaged over the batch and the 128 dims
    expected_center = 0.5 * ((embedding - model.center_loss.centers[batch["label"]]) ** 2).mean()
    torch.testing.assert_close(center, expected_center)
    torch.testing.assert_close(loss, softmax + 5.0 * center)


@pytest.mark.parametrize("epoch,batch,expected", [(0, 0, 0.0), (1, 5, 5.0 * 1.5 / 3), (3, 0, 5.0), (7, 2, 5.0)])
def test_center_loss_weight_ramps_over_warmup_epochs(epoch, batch, expected):
    model = _model(center_loss_weight=5.0, center_loss_warmup_epochs=3)
    model._trainer = _fake_trainer(epoch, batch, batches=10)
    assert model.current_center_loss_weight() == pytest.approx(expected)
    assert _model(center_loss_weight=5.0).current_center_loss_weight() == 5.0  # no warm-up: the paper's constant


@pytest.mark.parametrize(
    "epoch,batch,warmup,expected",
    [(0, 0, 0, 0.0), (1, 9, 0, 0.0), (2, 0, 0, 5.0), (5, 3, 0, 5.0), (2, 5, 2, 5.0 * 0.5 / 2), (4, 0, 2, 5.0)],
)
def test_center_loss_starts_after_softmax_phase(epoch, batch, warmup, expected):
    model = _model(center_loss_weight=5.0, center_loss_start_epoch=2, center_loss_warmup_epochs=warmup)
    model._trainer = _fake_trainer(epoch, batch, batches=10)
    assert model.current_center_loss_weight() == pytest.approx(expected)
