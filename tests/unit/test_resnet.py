"""SpeechMusicResNet's body: ImageNet weights from the hub cache and the one-channel first layer."""

import urllib.error

import pytest
import torch
from torch import nn

from audioexp.networks.heads import FastaiClassifierHead, LinearClassifierHead
from audioexp.networks.resnet import PretrainedWeightsMissing, ResNet18Body, imagenet_checkpoint_path



def test_imagenet_weights_load_from_hub_cache(imagenet_hub_cache, tmp_path):
    assert imagenet_checkpoint_path().name == "resnet18-f37072fd.pth"
    assert str(tmp_path) in str(imagenet_checkpoint_path())
    body = ResNet18Body(pretrained="imagenet", first_conv="copy_red")
    own = body.state_dict()
    for key, value in imagenet_hub_cache.items():
        if key.startswith("fc.") or key == "conv1.weight":
            continue
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)
    # copy_red keeps input channel 0 of the loaded RGB kernels
    torch.testing.assert_close(body.conv1.weight, imagenet_hub_cache["conv1.weight"][:, :1], rtol=0, atol=0)
    assert body.conv1.weight.shape == (64, 1, 7, 7)
    assert (body.conv1.stride, body.conv1.padding, body.conv1.bias) == ((2, 2), (3, 3), None)


def test_sum_first_conv_equals_rgb_layer_on_repeated_input(imagenet_hub_cache):
    body = ResNet18Body(pretrained="imagenet", first_conv="sum")
    rgb = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
    rgb.weight.data.copy_(imagenet_hub_cache["conv1.weight"])
    x = torch.randn(2, 1, 40, 57)
    torch.testing.assert_close(body.conv1(x), rgb(x.repeat(1, 3, 1, 1)), rtol=1e-5, atol=1e-5)


def test_default_first_conv_is_a_fresh_layer_on_a_pretrained_body(imagenet_hub_cache):
    """The default (the paper's reading, fastai audio's audio_learner of 2019-06): a new
    Conv2d(1, 64, 7, 2, 3) with PyTorch's own initialisation, every other layer ImageNet's."""
    body = ResNet18Body(pretrained="imagenet")
    rgb = imagenet_hub_cache["conv1.weight"]
    conv = body.conv1
    assert conv.weight.shape == (64, 1, 7, 7)
    assert (conv.stride, conv.padding, conv.bias) == ((2, 2), (3, 3), None)
    assert not torch.allclose(conv.weight, rgb[:, :1]) and not torch.allclose(conv.weight, rgb.sum(1, keepdim=True))
    # nn.Conv2d's default init: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 49
    assert conv.weight.abs().max() <= 1 / 7 and conv.weight.std() > 0.5 / (7 * 3**0.5)
    for key, value in imagenet_hub_cache.items():
        if not key.startswith(("fc.", "conv1.")):
            torch.testing.assert_close(body.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_missing_weights_fail_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(PretrainedWeightsMissing) as err:
        ResNet18Body(pretrained="imagenet")
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "empty") in message
    assert "model.backbone.pretrained=none" in message


def test_bad_options_and_shapes():
    with pytest.raises(ValueError, match="first_conv"):
        ResNet18Body("none", "green")
    with pytest.raises(ValueError, match="pretrained"):
        ResNet18Body("places365", "sum")
    body = ResNet18Body("none", "random")
    with pytest.raises(ValueError, match=r"\(batch, 1, freq, time\)"):
        body(torch.randn(2, 3, 64, 64))


def test_heads_shapes_and_fastai_layout():
    head = FastaiClassifierHead(512, 2, dropout=0.5)
    x = torch.randn(4, 512, 2, 5)
    assert head(x).shape == (4, 2)
    dropouts = [m.p for m in head if isinstance(m, nn.Dropout)]
    assert dropouts == [0.25, 0.5]
    pooled = head[0](x)
    torch.testing.assert_close(pooled[:, :512], x.amax(dim=(2, 3)))
    torch.testing.assert_close(pooled[:, 512:], x.mean(dim=(2, 3)))
    assert LinearClassifierHead(512, 3)(x).shape == (4, 3)
