"""Whole-utterance evaluation in windows (audioexp.networks.windowed): exact below the window,
close above it, and network memory bounded by the window for a 10-minute utterance."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from audioexp.features import LogPowerSpectrogram
from audioexp.features.fbank import LogFilterbank
from audioexp.losses.center import CenterLoss
from audioexp.networks.adresnet import AttributeDisentanglement, TableOneResNet
from audioexp.networks.vgg import VGGSpeakerNet
from audioexp.networks.windowed import window_spans, windowed_average
from audioexp.systems.adresnet import ADResNet
from audioexp.systems.vgg_center_loss import VGGCenterLoss

SR = 16000


def _vgg(**kw) -> VGGCenterLoss:
    """The narrow network B of tests/unit/test_vgg_center_loss_system.py, in eval mode."""
    torch.manual_seed(0)
    backbone = VGGSpeakerNet("B", num_classes=5, ndims=128, width=0.125)
    return VGGCenterLoss(LogPowerSpectrogram(), backbone, functools.partial(CenterLoss, alpha=0.5), num_classes=5, **kw).eval()


def _adresnet(with_ad: bool = True, **kw) -> ADResNet:
    """Table 1 ResNet [+ AD module after the last block], random weights, in eval mode."""
    torch.manual_seed(0)
    ad = functools.partial(AttributeDisentanglement, reduction_dim=8) if with_ad else None
    return ADResNet(LogFilterbank(), TableOneResNet(), num_classes=4, ad=ad, pretrained="none", tsne=False, **kw).eval()


def _speechlike(seconds: float, seed: int) -> torch.Tensor:
    """Noise under a slowly varying envelope (so the VAD keeps some frames and drops others)."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    envelope = 0.2 + (torch.sin(torch.arange(n) / SR * 2 * torch.pi * 1.3) > -0.5).float()
    return torch.randn(n, generator=g) * envelope


def _batch(seconds: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    items = [_speechlike(s, i) for i, s in enumerate(seconds)]
    lengths = torch.tensor([len(x) for x in items])
    return torch.nn.utils.rnn.pad_sequence(items, batch_first=True), lengths


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1) / b.norm(dim=-1)


# --- the pure function -----------------------------------------------------------------------

@pytest.mark.parametrize("num_frames,window", [(1, 5), (100, 100), (101, 100), (250, 100), (6001 * 10 + 7, 6001)])
def test_tiling_covers_every_frame_once_without_stubs(num_frames, window):
    spans = window_spans(num_frames, window)
    assert spans[0][0] == 0 and spans[-1][1] == num_frames
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous: each frame once
    lengths = [b - a for a, b in spans]
    assert max(lengths) <= window and max(lengths) - min(lengths) <= 1
    assert len(spans) == 1 or min(lengths) >= window // 2


def test_overlapping_windows_are_evenly_spaced_and_full_length():
    spans = window_spans(1000, 300, 200)
    assert spans[0] == (0, 300) and spans[-1] == (700, 1000)
    assert all(b - a == 300 for a, b in spans)
    assert all(0 < s2[0] - s1[0] <= 200 for s1, s2 in zip(spans, spans[1:]))
    with pytest.raises(ValueError, match="hop_frames"):
        window_spans(1000, 300, 301)


def test_frame_weighted_average_of_a_framewise_network_is_the_whole_mean():
    """A network that averages a per-frame map has no window edges: windowed equals whole
    (float64, 1e-12), whatever the windows per batch."""
    x = torch.randn(3, 1037, dtype=torch.float64)
    proj = torch.randn(3, 4, dtype=torch.float64)

    def encode(windows):  # (k, 3, w) -> (k, 4), averaged over w frames
        return torch.einsum("kcw,cd->kd", windows.tanh(), proj) / windows.shape[-1], windows.shape[-1]

    whole = encode(x[None])[0][0]
    for per_batch in (1, 2, 10):
        got = windowed_average(x, encode, window_frames=100, windows_per_batch=per_batch)
        torch.testing.assert_close(got, whole, rtol=1e-12, atol=1e-12)
    calls = []
    windowed_average(x, lambda w: (calls.append(w.shape[0]) or encode(w)), window_frames=100, windows_per_batch=3)
    assert max(calls) <= 3 and sum(calls) == 11  # 11 windows, never more than 3 at once


# --- the systems -----------------------------------------------------------------------------

@torch.no_grad()
def test_vgg_short_utterances_are_untouched_and_long_ones_close():
    """Window 10 s. (a) A batch of utterances up to 10 s takes the unwindowed path: equal bit for
    bit. In a batch that also holds a longer one, the short items are embedded alone, in one
    window: equal to the padded batch's embedding up to float32 rounding (batched = per-item,
    1e-5). (b) A 25-s utterance in three windows: relative error below 1e-2 (measured 1e-3 with
    this random network): only output frames whose receptive field crosses a window edge see
    zeros instead of their neighbours, and the max-pool grid restarts at each edge."""
    windowed, whole = _vgg(eval_window_seconds=10.0), _vgg(eval_window_seconds=None)
    wave, lengths = _batch([9.0, 4.0, 10.0])
    assert torch.equal(windowed.embed(wave, lengths), whole.embed(wave, lengths))
    assert torch.equal(windowed(wave, lengths), whole(wave, lengths))

    wave, lengths = _batch([4.0, 25.0, 9.5])
    ref_logits, ref = whole.forward_with_embedding(wave, lengths)
    logits, got = windowed.forward_with_embedding(wave, lengths)
    torch.testing.assert_close(got[[0, 2]], ref[[0, 2]], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits[[0, 2]], ref_logits[[0, 2]], rtol=1e-5, atol=1e-6)
    assert float(_relative_error(got[1], ref[1])) < 1e-2
    assert float(_relative_error(logits[1], ref_logits[1])) < 1e-2
    torch.testing.assert_close(windowed.embed(wave, lengths), got)
    # the logits are the classifier on the pooled embedding (= the frame-weighted mean of the windows' logits)
    torch.testing.assert_close(logits, windowed.backbone.classifier(got))


@torch.no_grad()
def test_vgg_training_mode_never_windows():
    model = _vgg(eval_window_seconds=1.0).train()
    wave = _speechlike(3.0, 0)[None]
    assert not model._windowed(wave, None)
    assert model.eval()._windowed(wave, None)


@pytest.mark.parametrize("with_ad,tolerance", [(False, 5e-2), (True, 0.2)])
@torch.no_grad()
def test_adresnet_short_utterances_are_untouched_and_long_ones_close(with_ad, tolerance):
    """IEMOCAP evaluation is one utterance per batch. Window 10 s: a 9-s utterance is evaluated
    as before (bit for bit); a 25-s one (three windows) is close. Relative error of this random
    network, measured: 1.8e-2 without the AD module (window edges: the ResNet's receptive field
    is wide), 9.5e-2 with it (its instance norm and time-frequency attention see one window's
    statistics instead of the utterance's; cosine similarity 0.996). Tolerances: 5e-2 and 0.2."""
    windowed, whole = _adresnet(eval_window_seconds=10.0, with_ad=with_ad), _adresnet(eval_window_seconds=None, with_ad=with_ad)
    wave, lengths = _batch([9.0])
    assert torch.equal(windowed.embed(wave, lengths), whole.embed(wave, lengths))
    batch = {"waveform": wave, "length": lengths, "label": torch.tensor([1])}
    assert torch.equal(windowed.losses(batch, with_ad=False)["logits"], whole.losses(batch, with_ad=False)["logits"])

    wave, lengths = _batch([25.0])
    batch = {"waveform": wave, "length": lengths, "label": torch.tensor([1])}
    got, ref = windowed.losses(batch, with_ad=False), whole.losses(batch, with_ad=False)
    assert float(_relative_error(got["embedding"], ref["embedding"])) < tolerance
    assert float(_relative_error(got["logits"], ref["logits"])) < tolerance
    torch.testing.assert_close(got["logits"], windowed.head(got["embedding"]))
    torch.testing.assert_close(windowed(wave, lengths), got["logits"])


# --- memory ----------------------------------------------------------------------------------

_PEAK_SCRIPT = textwrap.dedent(
    """
    import functools, json, sys, torch
    torch.set_num_threads(2)
    from audioexp.features import LogPowerSpectrogram
    from audioexp.losses.center import CenterLoss
    from audioexp.networks.vgg import VGGSpeakerNet
    from audioexp.systems.vgg_center_loss import VGGCenterLoss

    def peak_rss_mb():  # this process's high-water RSS; unlike ru_maxrss, not inherited across fork + exec
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

    window = json.loads(sys.argv[1])
    torch.manual_seed(0)
    model = VGGCenterLoss(LogPowerSpectrogram(), VGGSpeakerNet("A", num_classes=5, ndims=128, width=0.125),
                          functools.partial(CenterLoss, alpha=0.5), num_classes=5, eval_window_seconds=window).eval()
    wave = torch.randn(1, 600 * 16000, generator=torch.Generator().manual_seed(0))
    before = peak_rss_mb()
    with torch.inference_mode():
        embedding = model.embed(wave, torch.tensor([wave.shape[1]]))
    growth_mb = peak_rss_mb() - before
    print(json.dumps({"growth_mb": growth_mb, "embedding": embedding[0].tolist()}))
    """
)


def _peak_growth(window) -> tuple[float, torch.Tensor]:
    """Peak RSS growth (MB) of embedding a 600-s utterance, in a fresh process (torch's CPU
    allocations are invisible to tracemalloc; the kernel's high-water RSS, VmHWM, sees them).
    Not ``ru_maxrss``: Linux carries it over from the parent across fork + exec, so in a
    large pytest process it starts at the parent's RSS and hides the growth."""
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, json.dumps(window)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["growth_mb"], torch.tensor(result["embedding"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_ten_minute_utterance_is_embedded_in_bounded_memory():
    """600 s at 16 kHz through a narrow network A (width 0.125; A rather than B to keep the
    test short). Measured peak RSS growth: about 970 MB whole, about 190 MB in the default 60-s
    windows, nearly all of it the front-end, which runs on the whole utterance for its
    utterance-level normalisation (the network's share is one window's). Bound: 350 MB
    windowed; the whole utterance must need over twice that, so the bound means something."""
    windowed_mb, windowed = _peak_growth(_vgg().eval_window_seconds)  # the default, 60 s
    whole_mb, whole = _peak_growth(None)
    assert windowed_mb < 350, f"windowed: {windowed_mb:.0f} MB"
    assert whole_mb > 2 * 350, f"unwindowed: {whole_mb:.0f} MB (the bound would mean nothing)"
    assert float(_relative_error(windowed, whole)) < 1e-2  # ten 60-s windows
