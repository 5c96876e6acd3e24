"""The speech/music recipe's defaults as composed (Han 2021 on fastai audio v1; experiments/speech_music.md).

Pinned here: a fresh one-channel first convolution on an ImageNet body, no spectrogram
normalisation (the library's ``standardize=False``), and the window and hop in milliseconds
(the library's 2560 / 256 samples at 44.1 kHz) turned into samples at the data's rate.
"""

from __future__ import annotations

import hydra
import pytest
import torch

from audioexp.features.spectral import LogMelSpectrogram, ms_to_samples
from tests.conftest import compose_config


def test_ms_to_samples():
    assert ms_to_samples(58.05, 44100) == 2560 and ms_to_samples(5.805, 44100) == 256  # fastai audio v1
    assert ms_to_samples(58.05, 16000) == 929 and ms_to_samples(5.805, 16000) == 93  # 928.8, 92.88 (an odd
    # window: LogMelSpectrogram zero-pads it to a 930-point FFT)
    assert ms_to_samples(40.0, 16000) == 640 and ms_to_samples(10.0, 8000) == 80 and ms_to_samples(64.0, 16000) == 1024
    with pytest.raises(ValueError, match="less than one sample"):
        ms_to_samples(0.01, 16000)


@pytest.mark.parametrize("rate,win,hop,n_fft", [(16000, 929, 93, 930), (44100, 2560, 256, 2560), (22050, 1280, 128, 1280)])
def test_recipe_front_end_in_samples_at_the_data_rate(rate, win, hop, n_fft, tmp_path):
    cfg = compose_config(["+experiment=fm_speech_music", f"data.sample_rate={rate}"], tmp_path)
    frontend = hydra.utils.instantiate(cfg.features)
    assert isinstance(frontend, LogMelSpectrogram)
    assert (frontend.sample_rate, frontend.win_length, frontend.hop_length, frontend.n_fft) == (rate, win, hop, n_fft)
    assert (frontend.n_mels, frontend.top_db, frontend.normalize) == (128, 100.0, "none")
    out = frontend(torch.randn(2, rate // 4))
    assert out.shape == (2, 1, 128, 1 + (rate // 4) // hop) and torch.isfinite(out).all()


def test_demo_front_end_is_unchanged_in_samples(tmp_path):
    cfg = compose_config(["+experiment=demo"], tmp_path)
    frontend = hydra.utils.instantiate(cfg.features)
    assert (frontend.win_length, frontend.hop_length, frontend.n_fft, frontend.n_mels) == (1024, 512, 1024, 64)


def test_recipe_model_has_a_fresh_first_conv_on_imagenet_weights(imagenet_hub_cache, tmp_path):
    cfg = compose_config(["+experiment=fm_speech_music"], tmp_path)
    assert (cfg.model.backbone.pretrained, cfg.model.backbone.first_conv) == ("imagenet", "random")
    body = hydra.utils.instantiate(cfg.model.backbone)
    conv, rgb = body.conv1, imagenet_hub_cache["conv1.weight"]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (1, 64, (7, 7), (2, 2), (3, 3))
    assert conv.bias is None and not torch.allclose(conv.weight, rgb[:, :1])
    torch.testing.assert_close(body.layer4[1].conv2.weight, imagenet_hub_cache["layer4.1.conv2.weight"], rtol=0, atol=0)
