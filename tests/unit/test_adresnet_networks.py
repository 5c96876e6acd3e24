"""Table 1 ResNet, VGG5 and the AD module (eqs. 1-6) against direct NumPy recomputations."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from audioexp.networks.adresnet import (
    AttributeDisentanglement,
    BasicBlock,
    TableOneResNet,
    TimeFrequencyAttention,
    VGG5,
    build_extractor,
)


def convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_resnet_follows_table_1():
    net = TableOneResNet()
    assert list(net.blocks) == ["conv1"] + [f"{k}{i}" for i in range(1, 5) for k in ("stage", "transition")]
    c1 = convs(net.blocks["conv1"])
    assert [(c.kernel_size, c.out_channels, c.stride) for c in c1] == [((7, 7), 16, (1, 1))]
    for i, (width, out) in enumerate(zip((16, 32, 64, 128), (32, 64, 128, 128)), start=1):
        stage = net.blocks[f"stage{i}"]
        assert len(stage) == 2 and all(isinstance(b, BasicBlock) for b in stage)
        assert [(c.kernel_size, c.in_channels, c.out_channels, c.stride) for c in convs(stage)] == [((3, 3), width, width, (1, 1))] * 4
        (t,) = convs(net.blocks[f"transition{i}"])
        assert (t.kernel_size, t.in_channels, t.out_channels, t.stride) == ((3, 3), width, out, (2, 2))
    assert net.out_channels == 128
    assert TableOneResNet(conv1_stride=2).blocks["conv1"][0].stride == (2, 2)


def test_basic_block_is_identity_shortcut_residual():
    torch.manual_seed(0)
    block = BasicBlock(8).eval()
    x = torch.randn(2, 8, 5, 7)
    inner = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(x + inner))


def test_vgg5_widths():
    net = VGG5()
    assert [c.out_channels for c in convs(net)] == [16, 32, 48, 64, 80]
    assert all(c.kernel_size == (3, 3) for c in convs(net)) and net.out_channels == 80


@pytest.mark.parametrize("network", ["resnet", "vgg5"])
@pytest.mark.parametrize("freq,frames", [(41, 16), (41, 301), (40, 37), (64, 123)])
def test_shapes_for_any_length(network, freq, frames):
    net = build_extractor(network).eval()
    out, ad_out = net(torch.randn(2, 1, freq, frames))
    if network == "resnet":
        f, t = freq, frames
        for _ in range(4):
            f, t = math.ceil(f / 2), math.ceil(t / 2)
        assert out.shape == (2, 128, f, t)
    else:
        assert out.shape == (2, 80, freq // 16, frames // 16)
    assert ad_out is None


@pytest.mark.parametrize("network,after", [("resnet", "end"), ("resnet", "stage2"), ("resnet", "conv1"), ("vgg5", "conv3"), ("vgg5", "end")])
def test_ad_module_after_any_block(network, after):
    net = build_extractor(network).eval()
    name = list(net.blocks)[-1] if after == "end" else after
    ad = AttributeDisentanglement(net.block_channels[name]).eval()
    x = torch.randn(2, 1, 41, 50)
    out, ad_out = net(x, ad=ad, ad_after=after)
    plain, _ = net(x)
    assert out.shape == plain.shape
    assert ad_out.positive.shape[1] == net.block_channels[name]
    if after == "end":
        torch.testing.assert_close(out, ad_out.positive)
    with pytest.raises(ValueError, match="ad_after must be"):
        net(x, ad=ad, ad_after="stage9")


def ad_reference(x, gamma, beta, wt1, bt1, wt2, bt2, wf1, bf1, wf2, bf2, eps):
    """Eqs. 1-6 written out in float64 NumPy on (B, C, F, T) maps (the paper writes C x T x F)."""
    mu = x.mean(axis=(2, 3), keepdims=True)
    sigma = np.sqrt(x.var(axis=(2, 3), keepdims=True) + eps)
    inorm = gamma[None, :, None, None] * (x - mu) / sigma + beta[None, :, None, None]  # eq. 1
    r = x - inorm
    r_f = r.mean(axis=2)  # eq. 5: average over frequency -> (B, C, T)
    r_t = r.mean(axis=3)  # average over time -> (B, C, F)
    r_fd = np.einsum("dc,bct->bdt", wt1, r_f) + bt1[None, :, None]  # 1x1 conv C -> D
    r_td = np.einsum("dc,bcf->bdf", wf1, r_t) + bf1[None, :, None]
    up_t = np.einsum("cd,bdt->bct", wt2, r_fd) + bt2[None, :, None]  # D -> C
    up_f = np.einsum("cd,bdf->bcf", wf2, r_td) + bf2[None, :, None]
    r_tf = up_t[:, :, None, :] + up_f[:, :, :, None]  # eq. 6: expand and sum
    a = 1.0 / (1.0 + np.exp(-r_tf))
    return inorm + a * r, inorm + (1 - a) * r, a  # eqs. 2-3


@pytest.mark.parametrize("shape", [(2, 16, 6, 11), (3, 32, 3, 25), (1, 8, 9, 4)])
def test_ad_module_matches_equations_1_to_6(shape):
    rng = np.random.default_rng(sum(shape))
    b, c, f, t = shape
    ad = AttributeDisentanglement(c, reduction_dim=8).double()
    # fixed, non-trivial weights everywhere (gamma/beta away from 1/0, biases non-zero)
    params = {
        "gamma": rng.uniform(0.5, 2.0, c), "beta": rng.normal(0, 0.5, c),
        "wt1": rng.normal(0, 0.5, (8, c)), "bt1": rng.normal(0, 0.3, 8),
        "wt2": rng.normal(0, 0.5, (c, 8)), "bt2": rng.normal(0, 0.3, c),
        "wf1": rng.normal(0, 0.5, (8, c)), "bf1": rng.normal(0, 0.3, 8),
        "wf2": rng.normal(0, 0.5, (c, 8)), "bf2": rng.normal(0, 0.3, c),
    }
    with torch.no_grad():
        ad.norm.weight.copy_(torch.from_numpy(params["gamma"]))
        ad.norm.bias.copy_(torch.from_numpy(params["beta"]))
        att = ad.attention
        for conv, w, bias in ((att.time_reduce, "wt1", "bt1"), (att.time_expand, "wt2", "bt2"),
                              (att.freq_reduce, "wf1", "bf1"), (att.freq_expand, "wf2", "bf2")):
            conv.weight.copy_(torch.from_numpy(params[w])[:, :, None])
            conv.bias.copy_(torch.from_numpy(params[bias]))
    # channels with different scales and offsets, so IN really changes them
    x = rng.normal(0, 1, shape) * rng.uniform(0.2, 3, (1, c, 1, 1)) + rng.normal(0, 2, (1, c, 1, 1))
    out = ad(torch.from_numpy(x))
    pos, neg, a = ad_reference(x, eps=1e-5, **params)
    np.testing.assert_allclose(out.attention.detach().numpy(), a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.positive.detach().numpy(), pos, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.negative.detach().numpy(), neg, rtol=1e-10, atol=1e-10)
    # the mask varies over both time and frequency (not a constant that the sum identity would hide)
    assert a.std(axis=3).mean() > 1e-3 and a.std(axis=2).mean() > 1e-3


def test_attention_is_in_unit_interval_and_depends_on_time_and_frequency():
    torch.manual_seed(1)
    att = TimeFrequencyAttention(16, 8)
    r = torch.randn(4, 16, 7, 30) * 50  # large inputs push the sigmoid to its ends
    with torch.no_grad():
        a = att(r)
    assert a.shape == r.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # changing one frame changes that frame's weights most (its own time-branch term)
    r2 = r.clone()
    r2[:, :, :, 5] += 1.0
    with torch.no_grad():
        diff = (att(r2) - a).abs().mean(dim=(0, 1))  # (F, T)
    assert float(diff[:, 5].min()) > float(diff[:, [0, 10, 20]].max())
    with pytest.raises(ValueError, match="hidden_activation"):
        TimeFrequencyAttention(16, 8, hidden_activation="gelu")


def test_ad_sum_identity_and_errors():
    ad = AttributeDisentanglement(8)
    x = torch.randn(2, 8, 5, 6)
    out = ad(x)
    normed = ad.norm(x)
    torch.testing.assert_close(out.positive + out.negative, 2 * normed + (x - normed))
    with pytest.raises(ValueError, match=r"\(batch, C, F, T\)"):
        ad(torch.randn(8, 5, 6))
