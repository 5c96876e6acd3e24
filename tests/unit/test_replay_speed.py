"""The vectorised replay front-end (issue 17) gives the outputs of the implementation before it.

The reference below is the post-filterbank path of ``audioexp.features.replay`` as it was before
issue 17 (contiguous frames times a windowed DFT basis, the sums of eq. 6/7, SciPy's DCT of log
CM, deltas, normalisation), copied here unchanged; both run on the same band signals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioexp.features.replay import SDFBFeatures, spectral_envelope_centroids


# --- the implementation before issue 17 (reference) -------------------------------------------

def _old_deltas(features: torch.Tensor, width: int = 2) -> torch.Tensor:
    padded = torch.cat([features[..., :1].expand(*features.shape[:-1], width), features,
                        features[..., -1:].expand(*features.shape[:-1], width)], dim=-1)
    t = features.shape[-1]
    out = torch.zeros_like(features)
    for n in range(1, width + 1):
        out = out + n * (padded[..., width + n : width + n + t] - padded[..., width - n : width - n + t])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def _old_with_deltas(static: torch.Tensor, width: int = 2) -> torch.Tensor:
    d1 = _old_deltas(static, width)
    return torch.cat([static, d1, _old_deltas(d1, width)], dim=0)


def _old_mvn(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = features.mean(dim=-1, keepdim=True)
    std = features.std(dim=-1, unbiased=False, keepdim=True)
    return (features - mean) / (std + eps)


def _old_envelope_dft(frame_length, n_fft, num_bins, dtype, device):
    window = torch.hamming_window(frame_length, periodic=True, dtype=torch.float64)
    n = torch.arange(frame_length, dtype=torch.float64)[:, None]
    k = torch.arange(num_bins, dtype=torch.float64)[None, :]
    phase = -2.0 * torch.pi * n * k / n_fft
    basis = torch.cat([window[:, None] * torch.cos(phase), window[:, None] * torch.sin(phase)], dim=1)
    return basis.to(dtype=dtype, device=device)


def _old_centroids(bands, sample_rate=16000, frame_ms=20.0, hop_ms=10.0, n_fft=320, f_max=950.0,
                   include_dc=False, eps=1e-12):
    frame = int(round(frame_ms * sample_rate / 1000))
    hop = int(round(hop_ms * sample_rate / 1000))
    num_bins = int(np.floor(f_max * n_fft / sample_rate)) + 1
    freqs = torch.arange(num_bins, dtype=bands.dtype, device=bands.device) * (sample_rate / n_fft)
    frames = bands.abs().unfold(-1, frame, hop)
    basis = _old_envelope_dft(frame, n_fft, num_bins, bands.dtype, bands.device)
    spec = frames @ basis
    mag = torch.sqrt(spec[..., :num_bins] ** 2 + spec[..., num_bins:] ** 2)
    weighted = (mag * freqs).sum(-1)
    denom = mag.sum(-1) if include_dc else mag[..., 1:].sum(-1)
    cf = torch.where(denom > eps, weighted / denom.clamp_min(eps), torch.zeros_like(weighted))
    cm = weighted / freqs.sum()
    return cf, cm


def _old_post(fe: SDFBFeatures, cf: torch.Tensor, cm: torch.Tensor) -> np.ndarray:
    from scipy.fft import dct

    parts = []
    if fe.feature in ("cf", "cf_cm"):
        parts.append(_old_with_deltas(cf[0], fe.delta_width))
    if fe.feature in ("cm", "cf_cm"):
        log_cm = torch.log(cm[0] + fe.log_floor).numpy()
        cep = dct(log_cm, type=2, norm="ortho", axis=0)[: fe.num_cepstra]
        parts.append(_old_with_deltas(torch.from_numpy(cep), fe.delta_width))
    feats = torch.cat(parts, dim=0)
    if fe.mvn:
        feats = _old_mvn(feats)
    return feats.T.contiguous().numpy()


def _old_features(fe: SDFBFeatures, waveform: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(np.asarray(waveform, dtype=np.float64)).reshape(1, -1)
    cf, cm = _old_centroids(fe.bands(x), fe.sample_rate, f_max=fe.f_max, include_dc=fe.include_dc)
    return _old_post(fe, cf, cm)


# --- tests ------------------------------------------------------------------------------------

SR = 16000


def _signal(seconds: float, seed: int) -> np.ndarray:
    """Noise with a slow amplitude modulation and a tone: envelopes that move, as speech's do."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    return (0.3 * rng.standard_normal(n) * (1.0 + 0.8 * np.sin(2 * np.pi * 4.0 * t))
            + 0.2 * np.sin(2 * np.pi * 440.0 * t))


def _assert_same(new: np.ndarray, old: np.ndarray) -> float:
    assert new.shape == old.shape and new.dtype == np.float64
    np.testing.assert_allclose(new, old, rtol=1e-9, atol=1e-9)
    return float(np.abs(new - old).max())


@pytest.mark.parametrize("filterbank", ["iir", "triangular"])
@pytest.mark.parametrize("k", [0, 6])
def test_front_end_matches_the_implementation_before_issue_17(k, filterbank):
    for seed, seconds in enumerate((0.5, 1.3, 4.0)):
        x = _signal(seconds, seed)
        fe = SDFBFeatures(num_differentiations=k, filterbank=filterbank)
        cf, cm = _old_centroids(fe.bands(torch.from_numpy(x).reshape(1, -1)))  # the old path, shared by the features
        for feature in ("cf", "cm", "cf_cm"):
            fe = SDFBFeatures(feature=feature, num_differentiations=k, filterbank=filterbank)
            new = fe(x)
            assert new.shape[1] == fe.dim
            _assert_same(new, _old_post(fe, cf, cm))


@pytest.mark.parametrize("settings", [dict(include_dc=True), dict(mvn=False), dict(f_max=500.0, num_cepstra=13),
                                      dict(delta_width=3, unit_center_gain=True)])
def test_other_settings_match_too(settings):
    for feature in ("cf", "cm"):
        fe = SDFBFeatures(feature=feature, **settings)
        x = _signal(1.01, 7)  # a length that is no whole number of hops
        _assert_same(fe(x), _old_features(fe, x))


@pytest.mark.parametrize("frame_ms, hop_ms, n_fft", [(20.0, 10.0, 320), (20.0, 10.0, 512), (25.0, 10.0, 400),
                                                     (30.0, 10.0, 480), (20.0, 5.0, 320)])
def test_centroids_match_for_any_framing_and_batch_shape(frame_ms, hop_ms, n_fft):
    bands = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 3, 5, 4011)))
    kept = bands.clone()
    args = dict(frame_ms=frame_ms, hop_ms=hop_ms, n_fft=n_fft)
    for include_dc in (False, True):
        cf, cm = spectral_envelope_centroids(bands, include_dc=include_dc, **args)
        cf_old, cm_old = _old_centroids(bands, include_dc=include_dc, **args)
        torch.testing.assert_close(cf, cf_old, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(cm, cm_old, rtol=1e-9, atol=1e-9)
    assert torch.equal(bands, kept)  # the public function leaves its input alone


def test_a_silent_band_has_zero_cf():
    bands = torch.zeros(2, 1600, dtype=torch.float64)
    bands[1] = torch.from_numpy(_signal(0.1, 1))
    cf, cm = spectral_envelope_centroids(bands)
    assert torch.all(cf[0] == 0) and torch.all(cm[0] == 0) and torch.all(cf[1] > 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_gives_the_cpu_outputs():
    x = _signal(1.3, 5)
    for feature in ("cf", "cm", "cf_cm"):
        fe = SDFBFeatures(feature=feature)
        _assert_same(fe(torch.from_numpy(x).cuda()), _old_features(fe, x))


# --- the compiled path fused behind the filters (issue 17) against the torch path ----------------

def _require_kernel():
    from audioexp.features.sd_filterbank import compiled_kernel_error

    why = compiled_kernel_error()
    if why is not None:
        pytest.skip(f"the compiled kernel cannot be built here ({why})")


@pytest.mark.parametrize("k", [0, 3, 6])
def test_fused_kernel_equals_filterbank_then_torch_centroids(k):
    from audioexp.features.sd_filterbank import sd_filterbank, sd_filterbank_centroids

    _require_kernel()
    rng = np.random.default_rng(k)
    # one frame exactly, lengths that are no whole number of hops, a tail of 159 samples, 1 s + 37
    for n in (320, 321, 479, 480, 481, 1601, 16037):
        x = torch.from_numpy(rng.standard_normal((2, n)) * (1.0 + np.sin(np.arange(n) / 300.0)))
        for include_dc in (False, True):
            cf, cm = sd_filterbank_centroids(x, num_differentiations=k, include_dc=include_dc, num_threads=1)
            bands = sd_filterbank(x, num_differentiations=k, implementation="compiled")
            cf_ref, cm_ref = spectral_envelope_centroids(bands, include_dc=include_dc)
            assert cf.shape == cf_ref.shape == (2, 80, 1 + (n - 320) // 160) and cf.dtype == torch.float64
            torch.testing.assert_close(cf, cf_ref, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(cm, cm_ref, rtol=1e-9, atol=1e-9)
    # threads share utterances and groups of bands: the same numbers, bit for bit
    x = torch.from_numpy(rng.standard_normal(4000))
    one = sd_filterbank_centroids(x, num_differentiations=k, num_threads=1)
    for threads in (2, 3):
        assert all(torch.equal(a, b) for a, b in zip(one, sd_filterbank_centroids(x, num_differentiations=k,
                                                                                    num_threads=threads)))


def test_fused_kernel_other_designs_and_bins():
    from audioexp.features.sd_filterbank import sd_filterbank, sd_filterbank_centroids

    _require_kernel()
    x = torch.from_numpy(_signal(0.77, 11)).reshape(1, -1)
    for design, num_bins in ((dict(num_filters=40, unit_center_gain=True), 11), (dict(sample_rate=8000), 9),
                             (dict(num_differentiations=9, center_grid="inner"), 39)):
        hop = design.get("sample_rate", SR) // 100
        cf, cm = sd_filterbank_centroids(x, hop=hop, num_bins=num_bins, **design)
        f_max = (num_bins - 1) * design.get("sample_rate", SR) / (2 * hop)
        cf_ref, cm_ref = spectral_envelope_centroids(sd_filterbank(x, **design), sample_rate=design.get("sample_rate", SR),
                                                     n_fft=2 * hop, f_max=f_max)
        torch.testing.assert_close(cf, cf_ref, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(cm, cm_ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="shorter than one frame"):
        sd_filterbank_centroids(x[:, :319])
    with pytest.raises(ValueError, match="hop must be a multiple of 4"):
        sd_filterbank_centroids(x, hop=162)
    with pytest.raises(ValueError, match="hop must be a multiple of 4"):
        sd_filterbank_centroids(x, num_bins=80)


@pytest.mark.parametrize("seconds", [0.02, 0.0213, 0.031, 1.01, 2.5])
def test_features_on_the_fused_path_equal_the_torch_path(seconds, monkeypatch, caplog):
    import audioexp.features.replay as replay_mod
    import audioexp.utils.logging as logging_utils

    _require_kernel()
    x = _signal(seconds, 13)
    settings = [dict(num_differentiations=6), dict(num_differentiations=0, include_dc=True),
                dict(num_differentiations=4, f_max=500.0, num_cepstra=13, unit_center_gain=True)]
    fused = {(i, f): SDFBFeatures(feature=f, **s)(x) for i, s in enumerate(settings) for f in ("cf", "cm", "cf_cm")}
    monkeypatch.setattr(replay_mod, "compiled_kernel_error", lambda: "RuntimeError: g++ not found")
    monkeypatch.setattr(logging_utils, "_said", set())
    with caplog.at_level("WARNING", logger="audioexp.features.replay"):
        for (i, f), ours in fused.items():
            fe = SDFBFeatures(feature=f, **settings[i])
            _assert_same(ours, fe(x))
            _assert_same(ours, _old_features(fe, x))
    warnings = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert len(warnings) == 1 and "g++ not found" in warnings[0].getMessage()


def test_a_clip_shorter_than_a_frame_is_refused_on_every_path(monkeypatch):
    import audioexp.features.replay as replay_mod

    for error in (None, "RuntimeError: g++ not found"):
        monkeypatch.setattr(replay_mod, "compiled_kernel_error", lambda: error)
        with pytest.raises(ValueError, match="shorter than one"):
            SDFBFeatures()(_signal(0.019, 1))
