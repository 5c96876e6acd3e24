"""VGGSpeakerNet (Yadav & Rai 2018, Table 1): parameter counts, shapes, layers, padded batches."""

import copy

import pytest
import torch
from torch import nn

from audioexp.networks.vgg import ConvReLUBN, VGGSpeakerNet, min_input_length, pooled_length

# Parameters (conv weight + bias, BN weight + bias, FC weight + bias), ndims 128, 1251 classes:
#   conv c_in->c_out: 9 c_in c_out + c_out;  BN c: 2c
#   1->64: 640          64->64: 36,928       64->128: 73,856      128->128: 147,584
#   128->256: 295,168   256->256: 590,080    256->512: 1,180,160  512->512: 2,359,808
#   FC 512->128: 65,664   FC 128->1251: 161,379   (together 227,043)
# Network B: convs 640 + 36,928 + 73,856 + 147,584 + 295,168 + 590,080 + 1,180,160
#            + 3 x 2,359,808 = 9,403,840; BN 2(64+64+128+128+256+256+512 x 4) = 5,888;
#            total 9,403,840 + 5,888 + 227,043 = 9,636,771 (the paper's "9.6M").
# Network A: convs 640 + 73,856 + 295,168 + 590,080 + 1,180,160 + 3 x 2,359,808 = 9,219,328;
#            BN 2(64+128+256+256+512 x 4) = 5,504; total 9,219,328 + 5,504 + 227,043 = 9,451,875.
NETWORK_B_PARAMETERS = 9_636_771
NETWORK_A_PARAMETERS = 9_451_875


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_network_b_has_9_636_771_parameters():
    n = count_parameters(VGGSpeakerNet("B", num_classes=1251, ndims=128))
    assert n == NETWORK_B_PARAMETERS
    assert abs(n - 9.6e6) <= 0.01 * 9.6e6


def test_network_a_has_9_451_875_parameters():
    assert count_parameters(VGGSpeakerNet("A", num_classes=1251, ndims=128)) == NETWORK_A_PARAMETERS


@pytest.mark.parametrize("config, num_convs", [("A", 8), ("B", 10)])
def test_layer_structure(config, num_convs):
    net = VGGSpeakerNet(config)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == num_convs
    for conv in convs:
        assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 0)] + [(2, 2, 0)] * 4
    assert all(not p.ceil_mode for p in pools)
    blocks = [m for m in net.features if isinstance(m, ConvReLUBN)]
    assert len(blocks) == num_convs
    for block in blocks:  # Conv, then ReLU, then BN ("BN after every Conv-ReLU pair")
        conv, relu, bn = block
        assert isinstance(conv, nn.Conv2d) and isinstance(relu, nn.ReLU)
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
    # no nonlinearity after the bottleneck: embedding -> dropout -> classifier
    assert (net.bottleneck.in_features, net.bottleneck.out_features) == (512, 128)
    assert (net.classifier.in_features, net.classifier.out_features) == (128, 1251)
    assert net.dropout_in.p == net.dropout_out.p == 0.4


def test_output_shapes_for_a_3_second_crop():
    torch.manual_seed(0)
    net = VGGSpeakerNet("B").eval()
    with torch.no_grad():
        logits, embedding = net(torch.randn(2, 1, 161, 301))
        assert logits.shape == (2, 1251) and embedding.shape == (2, 128)
        # the bottleneck is affine: no ReLU, so embeddings take negative values
        assert (embedding < 0).any()


def test_minimum_frame_count_is_33():
    assert min_input_length() == VGGSpeakerNet.min_frames == 33
    assert VGGSpeakerNet.output_frames(33) == 1 and VGGSpeakerNet.output_frames(301) == 9
    net = VGGSpeakerNet("A", num_classes=5, ndims=4).eval()
    with torch.no_grad():
        logits, embedding = net(torch.randn(1, 1, 161, 33))
    assert logits.shape == (1, 5) and embedding.shape == (1, 4)
    with pytest.raises(ValueError, match="at least 33"):
        net(torch.randn(1, 1, 161, 32))
    with pytest.raises(ValueError, match="at least 33"):
        net(torch.randn(1, 1, 32, 100))  # frequency goes through the same pools
    with pytest.raises(ValueError, match="at least 33"):
        VGGSpeakerNet.output_frames(32)


def test_output_frames_match_the_pooled_feature_map():
    net = VGGSpeakerNet("A").eval()
    # the convolutions keep the width, so the network's pools alone give the output width
    pools = nn.Sequential(*[m for m in net.features if isinstance(m, nn.MaxPool2d)])
    frames = [33, 34, 35, 36, 37, 38, 39, 40, 41, 64, 65, 66, 67, 173, 250, 301]
    widths = [pools(torch.randn(1, 1, 33, t)).shape[-1] for t in frames]
    assert widths == [VGGSpeakerNet.output_frames(t) for t in frames]
    assert pooled_length(torch.tensor(frames)).tolist() == widths
    with torch.no_grad():
        assert net.features(torch.randn(1, 1, 33, 67)).shape == (1, 512, 1, 2)


def test_width_multiplier_makes_a_miniature_network():
    net = VGGSpeakerNet("B", num_classes=7, ndims=16, width=0.25).eval()
    channels = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert channels == [16, 16, 32, 32, 64, 64, 128, 128, 128, 128]
    assert net.bottleneck.in_features == 128
    with torch.no_grad():
        logits, embedding = net(torch.randn(2, 1, 161, 40), torch.tensor([40, 35]))
    assert logits.shape == (2, 7) and embedding.shape == (2, 16)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="config"):
        VGGSpeakerNet("C")
    with pytest.raises(ValueError, match="width"):
        VGGSpeakerNet("A", width=0.0)
    net = VGGSpeakerNet("A", num_classes=5, ndims=4).eval()
    x = torch.randn(2, 1, 161, 60)
    with pytest.raises(ValueError, match="batch, 1, freq, frames"):
        net(torch.randn(2, 161, 60))
    with pytest.raises(ValueError, match="lengths must be integers"):
        net(x, torch.tensor([60.0, 50.0]))
    with pytest.raises(ValueError, match="lengths must be integers"):
        net(x, torch.tensor([60]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[33, 60\]"):
        net(x, torch.tensor([61, 50]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[33, 60\]"):
        net(x, torch.tensor([60, 32]))


@pytest.fixture(scope="module")
def calibrated_network_b() -> VGGSpeakerNet:
    """Network B in eval mode whose BN running statistics come from one unpadded batch.

    With PyTorch's default initialisation and BN's initial (0, 1) statistics the
    activations shrink layer after layer (embeddings of order 0.05); calibrated
    statistics bring the embedding to unit scale, so a tolerance of 1e-5 is a real test.
    """
    torch.manual_seed(0)
    net = VGGSpeakerNet("B")
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 1.0
    with torch.no_grad():
        net.train()(torch.randn(2, 1, 161, 64))
    return net.eval()


def padded_batch(lengths: list[int], freq: int, dtype: torch.dtype, noise: bool = False):
    """Per-item inputs, and the same items right-padded into one batch, with zeros or noise."""
    items = [torch.randn(1, 1, freq, n, dtype=dtype) for n in lengths]
    batch = torch.randn(len(items), 1, freq, max(lengths), dtype=dtype)
    if not noise:
        batch.zero_()
    for i, (item, n) in enumerate(zip(items, lengths)):
        batch[i, ..., :n] = item
    return items, batch, torch.tensor(lengths)


def test_padded_batch_with_lengths_equals_per_item_calls(calibrated_network_b):
    net = calibrated_network_b
    torch.manual_seed(1)
    items, batch, lengths = padded_batch([301, 250, 173], 161, torch.float32)
    with torch.no_grad():
        per_item = torch.cat([net.embed(item) for item in items])
        logits, embedding = net(batch, lengths)
    assert per_item.abs().max() > 0.5
    torch.testing.assert_close(embedding, per_item, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, net.classifier(per_item), rtol=1e-5, atol=1e-5)


def test_padded_batch_is_exact_in_float64(calibrated_network_b):
    # float32 differences are rounding (convolutions of other widths sum in another
    # order, and BN with small running variances amplifies it); in float64 the
    # batched and per-item embeddings agree to ~1e-14, even with noise as padding
    net = copy.deepcopy(calibrated_network_b).double()
    torch.manual_seed(2)
    lengths = [120, 97, 61]
    items, batch, batch_lengths = padded_batch(lengths, 40, torch.float64, noise=True)
    zero_padded = batch * (torch.arange(batch.shape[-1]) < batch_lengths[:, None])[:, None, None, :]
    with torch.no_grad():
        per_item = torch.cat([net.embed(item) for item in items])
        torch.testing.assert_close(net.embed(batch, batch_lengths), per_item, rtol=0, atol=1e-10)
        # masking only the final average lets the padding leak in through convolutions and pools
        feature_map = net.features(zero_padded).mean(dim=2)
        out_frames = torch.tensor([net.output_frames(n) for n in lengths])
        valid = (torch.arange(feature_map.shape[-1]) < out_frames[:, None]).double()[:, None]
        naive = net.bottleneck((feature_map * valid).sum(dim=-1) / out_frames[:, None])
    assert (naive[1:] - per_item[1:]).abs().max() > 1e-2


def test_full_lengths_equal_no_lengths(calibrated_network_b):
    x = torch.randn(2, 1, 40, 50)
    with torch.no_grad():
        full = calibrated_network_b.embed(x, torch.tensor([50, 50]))
        torch.testing.assert_close(full, calibrated_network_b.embed(x), rtol=1e-5, atol=1e-5)
