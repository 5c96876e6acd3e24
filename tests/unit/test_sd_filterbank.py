"""Spatially differentiated filterbank, CF/CM, deltas, CQCC: against scipy/NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from audioexp.features import cqcc as cqcc_mod
from audioexp.features.replay import (
    SDFBFeatures,
    deltas,
    spectral_envelope_centroids,
    triangular_filterbank_bands,
    utterance_mvn,
)
from audioexp.features.sd_filterbank import (
    differentiation_matrix,
    resonator_bank,
    response_shape,
    sd_filterbank,
    sd_filterbank_reference,
    spatially_differentiate,
)


def test_filters_stable_centres_on_mel_grid_and_unit_centre_gain():
    bank = resonator_bank(80, 16000)
    assert np.all(bank["radius"] < 1.0) and np.all(bank["radius"] > 0.6)
    for i in range(80):
        assert np.all(np.abs(np.roots(bank["a"][i])) < 1.0)
    mel = 2595 * np.log10(1 + bank["center_hz"] / 700)
    assert np.allclose(np.diff(mel), np.diff(mel)[0])
    assert bank["center_hz"][0] > 100 and bank["center_hz"][-1] < 8000
    # bandwidth: 8 local channel spacings (half the distance between the neighbours)
    spacing = np.diff(bank["center_hz"][53:56]).sum() / 2
    assert bank["bandwidth_hz"][54] == pytest.approx(8 * spacing, rel=1e-2)
    # pole radius from the bandwidth: r = exp(-pi B / fs)
    assert np.allclose(bank["radius"], np.exp(-np.pi * bank["bandwidth_hz"] / 16000))
    # "edges" grid: filter 55 (from 0) on 3346 Hz
    edges = resonator_bank(80, 16000, f_min=1e-3, f_max=8000 - 1e-3, center_grid="edges")
    assert abs(edges["center_hz"][55] - 3349.3) < 5
    with pytest.raises(ValueError, match="zeros"):
        resonator_bank(80, 16000, center_grid="edges")
    unit = resonator_bank(80, 16000, unit_center_gain=True)
    for i in (0, 30, 54, 79):
        _, h = scipy.signal.freqz(unit["b"][i], unit["a"][i], worN=[unit["theta"][i]])
        assert abs(abs(h[0]) - 1.0) < 1e-12
    assert not np.allclose(unit["gain"], 1.0) and np.all(bank["gain"] == 1.0)


def test_differentiation_matrix_equals_iterated_differences():
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.standard_normal((7, 50)))
    for k in range(0, 6):
        d = torch.from_numpy(differentiation_matrix(7, k))
        assert torch.allclose(d @ y, spatially_differentiate(y, k), atol=1e-12)
    with pytest.raises(ValueError):
        differentiation_matrix(4, 4)


def _require_kernel():
    import importlib

    kernel, why = importlib.import_module("audioexp.features.sd_filterbank")._load_kernel()
    if kernel is None:
        pytest.skip(f"the compiled kernel cannot be built here ({why}); the BLAS path is tested")


@pytest.mark.parametrize("implementation", ["compiled", "blas", "torch"])
@pytest.mark.parametrize("k", [0, 1, 3, 6])
@pytest.mark.parametrize("unit_gain", [False, True])
def test_filterbank_matches_lfilter_then_differences_on_random_audio(k, unit_gain, implementation):
    if implementation == "compiled":
        _require_kernel()
    rng = np.random.default_rng(k)
    x = rng.standard_normal((2, 3003))  # not a multiple of the block size
    ref = sd_filterbank_reference(x, num_differentiations=k, unit_center_gain=unit_gain)
    ours = sd_filterbank(torch.from_numpy(x), num_differentiations=k, unit_center_gain=unit_gain,
                         implementation=implementation).numpy()
    assert ours.shape == (2, 80, 3003)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-10
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4
    # batched call equals per-item calls
    single = sd_filterbank(torch.from_numpy(x[1]), num_differentiations=k, unit_center_gain=unit_gain,
                           implementation=implementation).numpy()
    assert np.allclose(single, ours[1], rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("num_filters", [2, 3, 5, 17, 80])
def test_compiled_kernel_any_bank_size_k_threads_and_band_groups(num_filters):
    """Every k < N, 1-3 threads, and batches that split the bands into groups for the threads
    (the group boundaries, and the top bands of the paper's padding, cross the differences)."""
    _require_kernel()
    rng = np.random.default_rng(num_filters)
    for k in range(min(num_filters, 9)):
        for batch, threads in ((1, 1), (1, 2), (1, 3), (2, 3), (3, 2)):
            x = rng.standard_normal((batch, 257))
            ref = sd_filterbank_reference(x, num_filters=num_filters, num_differentiations=k, unit_center_gain=True)
            ours = sd_filterbank(torch.from_numpy(x), num_filters=num_filters, num_differentiations=k,
                                 unit_center_gain=True, implementation="compiled", num_threads=threads)
            assert np.abs(ours.numpy() - ref).max() <= 1e-11 * np.abs(ref).max(), (k, batch, threads)


def test_compiled_kernel_writes_into_out_and_checks_it():
    _require_kernel()
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 999)))
    out = torch.full((2, 80, 999), float("nan"), dtype=torch.float64)
    got = sd_filterbank(x, num_differentiations=4, implementation="compiled", out=out)
    assert got.data_ptr() == out.data_ptr()
    ref = sd_filterbank_reference(x.numpy(), num_differentiations=4)
    assert np.abs(out.numpy() - ref).max() <= 1e-11 * np.abs(ref).max()
    with pytest.raises(ValueError, match="shape"):
        sd_filterbank(x, implementation="compiled", out=torch.empty(2, 80, 998, dtype=torch.float64))
    with pytest.raises(ValueError, match="compiled CPU kernel only"):
        sd_filterbank(x, implementation="blas", out=out)
    with pytest.raises(ValueError, match="implementation"):
        sd_filterbank(x, implementation="numba")


def test_output_pool_recycles_only_outputs_nothing_uses():
    import gc
    import importlib

    _require_kernel()
    sdf = importlib.import_module("audioexp.features.sd_filterbank")
    sdf.OUTPUT_POOL.clear()
    x = torch.from_numpy(np.random.default_rng(6).standard_normal((1, 3000)))
    first = sd_filterbank(x, num_differentiations=2, implementation="compiled")
    ptr, expected = first.data_ptr(), first[0, 5].clone()
    kept = first[0, 5]  # a view keeps the whole output's memory in use
    del first
    gc.collect()
    second = sd_filterbank(2 * x, num_differentiations=2, implementation="compiled")
    assert second.data_ptr() != ptr and torch.equal(kept, expected)
    dropped = {ptr, second.data_ptr()}
    del kept, second
    gc.collect()
    assert len(sdf.OUTPUT_POOL._free) == 2
    shorter = sd_filterbank(x[:, :2000], num_differentiations=2, implementation="compiled")  # fits in a dropped one
    assert shorter.data_ptr() in dropped
    ref = sd_filterbank_reference(x[:, :2000].numpy(), num_differentiations=2)
    assert np.abs(shorter.numpy() - ref).max() <= 1e-11 * np.abs(ref).max()
    del shorter
    gc.collect()
    again = [sd_filterbank(x[:, :2000], num_differentiations=2, implementation="compiled") for _ in range(3)]
    assert {a.data_ptr() for a in again[:2]} == dropped  # both dropped outputs served, while in use...
    assert again[2].data_ptr() not in dropped  # ... and the third needed new memory
    pool = sdf.OutputPool(max_bytes=0)  # off: always new memory
    a = pool.empty((2, 3), np.float64)
    del a
    gc.collect()
    assert pool._free == []
    small = sdf.OutputPool(max_bytes=1000)
    arrays = [small.empty((100,), np.float64) for _ in range(3)]  # 800 bytes each
    del arrays
    gc.collect()
    assert sum(b.nbytes for b in small._free) <= 1000


def test_float32_is_computed_in_float32_near_the_float64_result():
    _require_kernel()
    x = np.random.default_rng(4).standard_normal((1, 4000))
    ref = sd_filterbank_reference(x, num_differentiations=2)
    for implementation in ("compiled", "blas"):
        ours = sd_filterbank(torch.from_numpy(x), num_differentiations=2, dtype=torch.float32,
                             implementation=implementation)
        assert ours.dtype == torch.float32
        # the direct recursion (compiled) loses more in float32 than the block products (about 1e-4
        # against 3e-6 of the peak): float64 is the default for this reason
        assert np.abs(ours.double().numpy() - ref).max() <= 1e-3 * np.abs(ref).max()


def test_without_a_compiler_auto_falls_back_to_blas_and_says_so(monkeypatch, caplog):
    import importlib

    import audioexp.utils.logging as logging_utils

    sdf = importlib.import_module("audioexp.features.sd_filterbank")  # the package exports a function of that name

    monkeypatch.setattr(sdf, "_load_kernel", lambda: (None, "RuntimeError: g++ not found"))
    monkeypatch.setattr(logging_utils, "_said", set())
    x = np.random.default_rng(5).standard_normal((1, 700))
    ref = sd_filterbank_reference(x, num_differentiations=3)
    with caplog.at_level("WARNING", logger="audioexp.features.sd_filterbank"):
        for _ in range(2):
            ours = sd_filterbank(torch.from_numpy(x), num_differentiations=3)
            assert np.abs(ours.numpy() - ref).max() <= 1e-10 * np.abs(ref).max()
    warnings = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert len(warnings) == 1 and "g++ not found" in warnings[0].getMessage()
    with pytest.raises(RuntimeError, match="g\\+\\+ and ninja"):
        sd_filterbank(torch.from_numpy(x), implementation="compiled")


@pytest.mark.parametrize("block", [1, 7, 16, 32, 64])
def test_block_size_and_short_inputs_match_reference(block):
    rng = np.random.default_rng(block)
    for n in (1, 2, 5, 31, 33, 2 * 16 * 64 + 3):  # shorter than a block, and past two scan levels
        x = rng.standard_normal((3, n))
        ref = sd_filterbank_reference(x, num_differentiations=2)
        ours = sd_filterbank(torch.from_numpy(x), num_differentiations=2, block_size=block)
        assert ours.shape == (3, 80, n) and ours.is_contiguous()
        assert np.abs(ours.numpy() - ref).max() <= 1e-10 * np.abs(ref).max()


def test_torch_path_for_accelerators_equals_numpy_path():
    from audioexp.features.sd_filterbank import (
        BANDWIDTH_FACTOR,
        F_MIN,
        _block_operators,
        _filterbank_numpy,
        _filterbank_torch,
    )

    x = np.random.default_rng(7).standard_normal((2, 1500))
    ops = _block_operators(80, 16000, F_MIN, None, BANDWIDTH_FACTOR, False, "inner", 6, 16)
    assert not ops["qt"].flags.writeable  # cached operators cannot be changed by a caller
    a = _filterbank_numpy(x, ops, 80)
    b = _filterbank_torch(torch.from_numpy(x), ops, 80).numpy()
    ref = sd_filterbank_reference(x, num_differentiations=6)
    assert np.abs(a - ref).max() < 1e-10 * np.abs(ref).max()
    assert np.abs(b - ref).max() < 1e-10 * np.abs(ref).max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the torch path for accelerators)")
@pytest.mark.parametrize("k", [0, 6])
def test_torch_path_on_cuda_matches_reference(k):
    x = np.random.default_rng(8).standard_normal((3, 4001))
    ref = sd_filterbank_reference(x, num_differentiations=k)
    ours = sd_filterbank(torch.from_numpy(x).cuda(), num_differentiations=k)
    assert ours.device.type == "cuda" and ours.dtype == torch.float64
    assert np.abs(ours.cpu().numpy() - ref).max() <= 1e-10 * np.abs(ref).max()


def test_impulse_response_matches_scipy_per_band():
    x = np.zeros(4000)
    x[0] = 1.0
    bank = resonator_bank(80, 16000)
    h0 = np.stack([scipy.signal.lfilter(bank["b"][i], bank["a"][i], x) for i in range(80)])
    ours = sd_filterbank(torch.from_numpy(x), num_differentiations=4, block_size=8).numpy()
    expected = differentiation_matrix(80, 4) @ h0
    assert np.abs(ours - expected).max() < 1e-9 * np.abs(expected).max()


def _band_54(k: int, **design):
    """Filter 55's response after k differentiations, from the filterbank's impulse response."""
    n = 16384
    impulse = np.zeros(n)
    impulse[0] = 1.0
    h = sd_filterbank(torch.from_numpy(impulse), num_differentiations=k, **design).numpy()[54]
    return np.fft.rfftfreq(n, 1 / 16000), np.abs(np.fft.rfft(h))


def test_fig1_default_design_sharpens_filter_55_with_differentiation():
    """Fig. 1 / section 2: filter 55 centred on 3349.3 Hz at k = 0, its centre moving up and its
    -3 dB width and -20 dB skirts narrowing with every differentiation (default design, unit gain
    at the peak as the figure)."""
    shapes = {k: (response_shape(*_band_54(k), -3.0), response_shape(*_band_54(k), -20.0)) for k in range(7)}
    centre0 = shapes[0][0][0]
    assert abs(centre0 - 3349.3) < 0.01 * 3349.3, centre0
    centres = [shapes[k][0][0] for k in range(7)]
    assert all(np.diff(centres) > 0), centres
    widths3 = [shapes[k][0][1] for k in (0, 2, 4, 6)]
    widths20 = [shapes[k][1][1] for k in (0, 2, 4, 6)]
    assert all(np.diff(widths3) < 0), widths3
    assert all(np.diff(widths20) < 0), widths20
    assert widths3[-1] < 0.6 * widths3[0] and widths20[-1] < 0.3 * widths20[0]
    # the mechanism: k differences of strongly overlapping filters act like a (k + 1)-fold pole,
    # whose -3 dB width is sqrt(2^(1/(k+1)) - 1) of a single pole's; the bank follows the trend
    ratio = widths3[1] / widths3[0]
    assert ratio < 0.75, ratio


def test_fig1_half_spacing_design_widens_instead():
    """The design before issue 15 (B = one channel spacing, grid from 0 Hz): the -3 dB width of
    filter 55 grows with k, the opposite of Fig. 1; kept as an option, so pin what it does."""
    old = {"f_min": 0.0, "bandwidth_factor": 1.0}
    widths = [response_shape(*_band_54(k, **old), -3.0)[1] for k in (0, 2, 4, 6)]
    assert all(np.diff(widths) > 0), widths
    assert abs(response_shape(*_band_54(0, **old), -3.0)[0] - 3175.0) < 10


def test_response_shape_matches_a_hand_computed_resonance():
    """-3 dB width of a second-order resonator against its closed form, on a fine grid."""
    fs, fc, bw = 16000.0, 2000.0, 200.0
    r = np.exp(-np.pi * bw / fs)
    f, h = scipy.signal.freqz([1.0, 0.0, -1.0], [1.0, -2 * r * np.cos(2 * np.pi * fc / fs), r * r],
                              worN=1 << 16, fs=fs)
    centre, width = response_shape(f, h, -3.0)
    assert abs(centre - fc) < 0.002 * fc  # the peak of (1 - z^-2) / A(z) sits near, not on, the pole angle
    assert width == pytest.approx(bw, rel=0.02)
    # the -20 dB width of a resonance is about sqrt(99) times its -3 dB width
    assert response_shape(f, h, -20.0)[1] == pytest.approx(np.sqrt(99) * bw, rel=0.05)
    with pytest.raises(ValueError, match="negative"):
        response_shape(f, h, 3.0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="NaN"):
        sd_filterbank(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="shape"):
        sd_filterbank(torch.zeros(1, 2, 3))


def _direct_centroids(bands, include_dc=True):
    """Eqs. 6 and 7 with numpy.fft.rfft per band and frame."""
    frame, hop, nfft = 320, 160, 320
    win = np.hamming(frame + 1)[:-1]  # periodic
    f = np.arange(nfft // 2 + 1) * 16000 / nfft
    keep = f <= 950
    nfr = 1 + (bands.shape[-1] - frame) // hop
    cf = np.zeros((bands.shape[0], nfr))
    cm = np.zeros_like(cf)
    for b in range(bands.shape[0]):
        for t in range(nfr):
            seg = np.abs(bands[b, t * hop : t * hop + frame]) * win
            mag = np.abs(np.fft.rfft(seg, nfft))[keep]
            fk = f[keep]
            lo = 0 if include_dc else 1
            cf[b, t] = np.sum(fk * mag) / np.sum(mag[lo:])
            cm[b, t] = np.sum(fk * mag) / np.sum(fk)
    return cf, cm


@pytest.mark.parametrize("include_dc", [True, False])
def test_centroids_match_direct_numpy_evaluation_of_eqs_6_and_7(include_dc):
    rng = np.random.default_rng(1)
    bands = rng.standard_normal((5, 3300))
    cf, cm = spectral_envelope_centroids(torch.from_numpy(bands), include_dc=include_dc)
    cf_ref, cm_ref = _direct_centroids(bands, include_dc)
    assert cf.shape == (5, 19)
    np.testing.assert_allclose(cf.numpy(), cf_ref, rtol=1e-10)
    np.testing.assert_allclose(cm.numpy(), cm_ref, rtol=1e-10)


def test_deltas_match_direct_regression_formula():
    rng = np.random.default_rng(2)
    c = rng.standard_normal((3, 12))
    for width in (1, 2, 4):
        padded = np.concatenate([np.repeat(c[:, :1], width, 1), c, np.repeat(c[:, -1:], width, 1)], axis=1)
        ref = np.zeros_like(c)
        for t in range(c.shape[1]):
            num = sum(n * (padded[:, t + width + n] - padded[:, t + width - n]) for n in range(1, width + 1))
            ref[:, t] = num / (2 * sum(n * n for n in range(1, width + 1)))
        np.testing.assert_allclose(deltas(torch.from_numpy(c), width).numpy(), ref, atol=1e-12)
    mvn = utterance_mvn(torch.from_numpy(c)).numpy()
    np.testing.assert_allclose(mvn.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(mvn.std(1), 1, atol=1e-6)


def test_triangular_bands_sum_back_to_the_signal_and_use_the_same_centres():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3200))
    bands = triangular_filterbank_bands(torch.from_numpy(x)).numpy()
    assert bands.shape == (1, 80, 3200)
    # triangles crossing at neighbouring centres sum to 1 between the first and last centre:
    # a tone there is reconstructed by the sum of the bands
    t = np.arange(3200) / 16000
    tone = np.sin(2 * np.pi * 1000 * t)[None]
    total = triangular_filterbank_bands(torch.from_numpy(tone)).numpy().sum(1)
    assert np.abs(total - tone).max() < 0.05


def test_feature_shapes_and_mvn():
    x = np.random.default_rng(4).standard_normal(8000)
    for feature, dim in (("cf", 240), ("cm", 120), ("cf_cm", 360)):
        fe = SDFBFeatures(feature=feature, num_differentiations=2)
        out = fe(x)
        assert out.shape == (49, dim) == (49, fe.dim)
        np.testing.assert_allclose(out.mean(0), 0, atol=1e-8)
    tri = SDFBFeatures(feature="cm", filterbank="triangular", num_differentiations=2)(x)
    assert tri.shape == (49, 120) and np.isfinite(tri).all()
    with pytest.raises(ValueError, match="feature"):
        SDFBFeatures(feature="mfcc")


def test_cqcc_static_part_against_librosa_and_dct():
    from scipy.fft import dct

    import librosa

    x = np.random.default_rng(5).standard_normal(8000)
    # the linear-interpolation, constant-Q path (the defaults follow baseline_CM.m: tests/unit/test_cqcc_baseline.py)
    ours = cqcc_mod.cqcc(x, hop_length=256, num_ceps=19, include_c0=False, log_energy=True, variable_q=False,
                         interpolation="linear", eps=1e-10)
    spec = np.abs(librosa.cqt(x, sr=16000, hop_length=256, fmin=15.625, n_bins=864, bins_per_octave=96)) ** 2
    geo = 15.625 * 2 ** (np.arange(864) / 96)
    lin = np.arange(15.625, geo[-1] + 1e-9, 15.625 / 16)
    uniform = np.stack([np.interp(lin, geo, np.log(spec[:, t] + 1e-10)) for t in range(spec.shape[1])], axis=1)
    ref = dct(uniform, type=2, norm="ortho", axis=0)[1:20].T
    np.testing.assert_allclose(ours[:, :19], ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours[:, 19], np.log(spec.sum(0) + 1e-10), rtol=1e-10)
    assert cqcc_mod.CQCCFeatures(variant="paper_text", hop_length=256)(x).shape == (ours.shape[0], 60)


@pytest.mark.parametrize("k", [0, 3, 6])
def test_fig1_response_equals_spectrum_of_the_filterbank_impulse_response(k):
    """sd_filter_response (freqz per filter, combined by D) = FFT of sd_filterbank's impulse response."""
    from audioexp.features.sd_filterbank import sd_filter_response

    n = 16384  # long enough for the slowest pole (r ~ 0.997) to decay below 1e-12
    impulse = np.zeros(n)
    impulse[0] = 1.0
    h_time = sd_filterbank(torch.from_numpy(impulse), num_differentiations=k, unit_center_gain=True).numpy()[54]
    spectrum = np.fft.rfft(h_time)[: n // 2]
    _, response = sd_filter_response(54, k, num_freqs=n // 2, unit_center_gain=True)
    np.testing.assert_allclose(response, spectrum, atol=1e-9 * np.abs(spectrum).max())


def test_fig1_figure_has_one_curve_per_differentiation_count():
    from audioexp.figures import sd_filter_response_figure

    fig = sd_filter_response_figure(54, (0, 3, 6))
    assert len(fig.axes[0].lines) == 3
