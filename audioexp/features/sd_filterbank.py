"""Spatially differentiated IIR filterbank (Wickramasinghe et al., ICASSP 2019).

A bank of ``N`` second-order IIR band-pass filters (the paper's eq. 1)::

    H_i(z) = g_i (1 - z^-2) / (1 - 2 r_i cos(theta_i) z^-1 + r_i^2 z^-2)

with centres equally spaced on the (HTK) mel scale, followed by ``k`` "spatial
differentiations" of the filter *outputs* (eq. 2), ``y_i^(j+1) = y_(i+1)^(j) - y_i^(j)``.
To keep ``N`` bands, the highest band is set to zero after each intermediate
differentiation and to a copy of the band below it after the last one (section 4.2).

How it is computed (why it is fast)
-----------------------------------
Three implementations give the same numbers (to about 1e-13 of the peak in float64):

``compiled`` (the CPU default): a small C++ kernel (``sd_filterbank_kernel.cpp``), built with
``torch.utils.cpp_extension`` on first use (about 40 s, then cached; needs g++ and ninja).
Time is the outer loop and the filters the inner one, so all 80 recursions advance together
(vectorised across filters, each filter's latency hidden by the others); the ``k`` differences
are one pass over the band vector of a time step, with the weights of
:func:`differentiation_matrix`; each output sample is written once, through a tile that stays in
cache. Utterances and groups of bands are shared among threads (``num_threads``). This is
memory-bound: most of its time is writing the (batch, 80, time) float64 output, so the memory of
dropped outputs is recycled (:class:`OutputPool`). Its second entry point,
:func:`sd_filterbank_centroids`, is the replay front-end fused behind the filters (issue 17): each
10-ms tile of band vectors is rectified and turned into its envelope spectrum and CF/CM while in
cache, and the band signals are never stored.

``blas`` (the fallback when the kernel cannot be built): everything after the filters is
linear, so the ``k`` differences are folded into the filters: output band ``i`` is
``sum_j D_ij H_j`` applied to the input, where ``D`` (:func:`differentiation_matrix`) holds
signed binomial weights. The recursion is then evaluated in blocks of ``L`` samples (a chunked
linear recurrence): within a block the zero-state response is a product of the input block with
an ``L x L`` lower-triangular Toeplitz matrix of the folded impulse responses; the memory carried
across blocks is the state of each second-order section, written as one complex one-pole state
``s[n] = p s[n-1] + u[n]`` per filter (``p = r e^{j theta}``), and its contribution to band ``i``
needs only the ``2w`` state values of the ``w = k + 1`` filters band ``i`` sums. So each band is
one product ``[S_window(b-1) | U_b] @ [Q_i; T_i]`` of width ``L + 2w``, written straight into the
output (NumPy's BLAS, one thread). The block-end states follow their own one-pole recurrence with
pole ``p^L``, scanned in chunks of 16 (vectorised over chunks and filters) and recursively over
the chunk ends. The operators are cached.

``torch`` (accelerators): the ``blas`` computation with batched torch products.

Everything is float64 by default: six differences of nearby bands cancel to a small fraction of
each band, and float32 loses the result. Speed against ``lfilter``: ``bench/bench_sd_filterbank.py``
and ``experiments/asvspoof2017.md``.

The reference it is tested against is the direct computation: one
``scipy.signal.lfilter`` per filter, then the differences (``tests/unit/test_sd_filterbank.py``;
``bench/bench_sd_filterbank.py`` times both).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
import shutil
import sys
import threading
import weakref

import numpy as np
from scipy import signal
import torch

from audioexp.utils.logging import log_once

log = logging.getLogger(__name__)

__all__ = [
    "BANDWIDTH_FACTOR",
    "F_MIN",
    "compiled_kernel_error",
    "differentiation_matrix",
    "hz_to_mel",
    "mel_to_hz",
    "resonator_bank",
    "response_shape",
    "sd_filter_response",
    "sd_filterbank",
    "sd_filterbank_centroids",
    "sd_filterbank_reference",
    "spatially_differentiate",
]


def hz_to_mel(f):
    """HTK mel scale, ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


#: Lowest frequency of the centre grid (ours): puts filter 55 on Fig. 1's 3349.3 Hz (within 0.15 %).
F_MIN = 100.0
#: Bandwidth in channel spacings (ours): the smallest integer for which differentiation narrows
#: filter 55 monotonically over k = 0..6 (at -3 and -20 dB), as Fig. 1 shows.
BANDWIDTH_FACTOR = 8.0


def resonator_bank(
    num_filters: int = 80,
    sample_rate: int = 16000,
    f_min: float = F_MIN,
    f_max: float | None = None,
    bandwidth_factor: float = BANDWIDTH_FACTOR,
    unit_center_gain: bool = False,
    center_grid: str = "inner",
) -> dict[str, np.ndarray]:
    """Centres, bandwidths and coefficients of the second-order band-pass bank (eq. 1).

    Centres: ``num_filters`` points equally spaced on the HTK mel scale. ``center_grid``
    "inner" (default) takes the inner ``N`` of ``N + 2`` points over ``[f_min, f_max]``;
    with the default ``f_min = 100 Hz`` (ours) filter 55 (index 54) is centred on 3344 Hz,
    0.15 % from the paper's Fig. 1 (3349.3 Hz); over 0-8 kHz it would be 3175 Hz (5 % off).
    "edges" puts the first and last centre on ``f_min`` and ``f_max``
    (``librosa.mel_frequencies(N, htk=True)``), but a centre on 0 Hz or on Nyquist
    coincides with a zero of eq. 1 (no pass band), so "edges" needs ``f_min > 0`` and
    ``f_max < sample_rate / 2``.

    Bandwidth (ours; the paper does not give its rule): ``B_i = bandwidth_factor`` times the
    local channel spacing (half the distance between the two neighbouring centres, the grid
    continued by one mel step beyond each end). Pole radius ``r = exp(-pi B / fs)`` (the
    -3 dB bandwidth of a resonator is about ``B``), pole angle ``theta = 2 pi f_c / fs``.
    The default factor 8 makes neighbouring filters overlap by eight channels, and this is
    what makes spatial differentiation *sharpen* a filter, as the paper's Fig. 1 and section 2
    say: the difference of two filters much closer than their bandwidth is (up to a scale) the
    derivative of the response with respect to the centre, whose poles are double, so ``k``
    differences approximate a resonance with a ``(k + 1)``-fold pole, whose -3 dB width is
    ``sqrt(2^(1/(k+1)) - 1)`` of the original. When filters barely overlap
    (``bandwidth_factor = 1``, neighbours crossing near -3 dB: the design before issue 15) the
    difference of two resonators is a two-humped band *wider* than either, and the width of
    filter 55 grows with ``k``. Measured widths: ``experiments/asvspoof2017.md``.

    Parameters
    ----------
    unit_center_gain : bool
        ``g_i = 1 / |H_i(e^{j theta_i})|`` (unit gain at the centre, as in the paper's
        Fig. 1 "for easy comparison"); ``False`` (default): ``g_i = 1``, eq. 1 as written.
        It changes every difference, so it is a choice, not a cosmetic.

    Returns
    -------
    dict
        ``center_hz``, ``bandwidth_hz``, ``radius``, ``theta``, ``gain`` (each shape
        ``(num_filters,)``), ``b`` (``(num_filters, 3)``) and ``a`` (``(num_filters, 3)``).
    """
    if num_filters < 2:
        raise ValueError(f"num_filters must be >= 2, got {num_filters}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")
    if bandwidth_factor <= 0:
        raise ValueError(f"bandwidth_factor must be positive, got {bandwidth_factor}")
    lo, hi = float(hz_to_mel(f_min)), float(hz_to_mel(f_max))
    if center_grid == "edges":
        if f_min <= 0.0 or f_max >= sample_rate / 2.0:
            raise ValueError(
                "center_grid='edges' puts a filter on f_min and f_max, where eq. 1 has its zeros "
                f"when they are 0 Hz or Nyquist; use 0 < f_min and f_max < {sample_rate / 2:g}, got {f_min}, {f_max}"
            )
        step = (hi - lo) / (num_filters - 1)
        mels = lo + step * np.arange(-1, num_filters + 1)
    elif center_grid == "inner":
        mels = np.linspace(lo, hi, num_filters + 2)
    else:
        raise ValueError(f"center_grid must be 'edges' or 'inner', got {center_grid!r}")
    grid = mel_to_hz(mels)  # centres with one neighbour added at each end
    center = grid[1:-1]
    bandwidth = bandwidth_factor * (grid[2:] - grid[:-2]) / 2.0
    radius = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2.0 * np.pi * center / sample_rate
    a = np.stack([np.ones_like(theta), -2.0 * radius * np.cos(theta), radius**2], axis=1)
    if unit_center_gain:
        zc = np.exp(-1j * theta)
        response = (1.0 - zc**2) / (a[:, 0] + a[:, 1] * zc + a[:, 2] * zc**2)
        gain = 1.0 / np.abs(response)
    else:
        gain = np.ones_like(theta)
    b = gain[:, None] * np.array([1.0, 0.0, -1.0])[None, :]
    return {"center_hz": center, "bandwidth_hz": bandwidth, "radius": radius, "theta": theta,
            "gain": gain, "b": b, "a": a}


def sd_filter_response(
    band: int,
    num_differentiations: int,
    num_freqs: int = 4096,
    num_filters: int = 80,
    sample_rate: int = 16000,
    **design,
) -> tuple[np.ndarray, np.ndarray]:
    """Frequency response of one band after ``k`` spatial differentiations (the paper's Fig. 1).

    The differentiated band is ``sum_j D[band, j] H_j`` (:func:`differentiation_matrix`),
    each ``H_j`` evaluated with ``scipy.signal.freqz`` on ``num_freqs`` points in
    ``[0, sample_rate / 2)``. ``design`` goes to :func:`resonator_bank` (e.g.
    ``unit_center_gain=True`` as the figure).

    Returns
    -------
    freqs_hz : ndarray, shape (num_freqs,)
    response : ndarray of complex, shape (num_freqs,)

    Examples
    --------
    >>> f, h = sd_filter_response(54, 0, unit_center_gain=True)
    >>> bool(abs(np.abs(h).max() - 1.0) < 1e-3)
    True
    """
    if not 0 <= band < num_filters:
        raise ValueError(f"band must be in [0, {num_filters}), got {band}")
    bank = resonator_bank(num_filters, sample_rate, **design)
    row = differentiation_matrix(num_filters, num_differentiations)[band]
    freqs = np.arange(num_freqs) * (sample_rate / 2.0) / num_freqs
    response = np.zeros(num_freqs, dtype=complex)
    for j in np.flatnonzero(row):
        _, h = signal.freqz(bank["b"][j], bank["a"][j], worN=num_freqs, fs=sample_rate)
        response += row[j] * h
    return freqs, response


def response_shape(freqs: np.ndarray, response: np.ndarray, level_db: float = -3.0) -> tuple[float, float]:
    """Peak frequency and width of a band-pass response at ``level_db`` below its peak.

    The magnitude is normalised to 1 at its peak ("unit gain", as the paper's Fig. 1); the
    width is the contiguous span around the peak where it stays at or above the level,
    interpolated linearly between the grid points where it crosses.

    Parameters
    ----------
    freqs : ndarray, shape (n,)
        Increasing frequencies, in Hz.
    response : ndarray, shape (n,)
        Complex or magnitude response on ``freqs``.
    level_db : float
        Negative: -3 for the -3 dB width, -20 for the skirts.

    Returns
    -------
    centre_hz, width_hz : float
        The width runs to the grid's end where the response does not fall that far.

    Examples
    --------
    >>> f = np.linspace(0, 100, 1001)
    >>> response_shape(f, np.maximum(1 - np.abs(f - 50) / 20, 0), -20 * np.log10(2))
    (50.0, 20.0)
    """
    mag = np.abs(np.asarray(response))
    freqs = np.asarray(freqs, dtype=np.float64)
    if mag.ndim != 1 or mag.shape != freqs.shape or len(mag) < 2:
        raise ValueError(f"freqs and response must be 1-D of one length >= 2, got {freqs.shape}, {mag.shape}")
    if level_db >= 0:
        raise ValueError(f"level_db must be negative, got {level_db}")
    mag = mag / mag.max()
    peak = int(np.argmax(mag))
    level = 10.0 ** (level_db / 20.0)

    def edge(step: int) -> float:
        i = peak
        while 0 <= i + step < len(mag) and mag[i + step] >= level:
            i += step
        j = i + step
        if not 0 <= j < len(mag):
            return float(freqs[i])
        t = (mag[i] - level) / (mag[i] - mag[j])  # linear crossing between i and j
        return float(freqs[i] + t * (freqs[j] - freqs[i]))

    return float(freqs[peak]), edge(+1) - edge(-1)


def differentiation_matrix(num_bands: int, num_differentiations: int) -> np.ndarray:
    """The linear map from the filter outputs to their ``k``-times differentiated bands.

    One step: ``y_i <- y_(i+1) - y_i`` for ``i < N - 1``; the highest band becomes zero
    after an intermediate step and a copy of the band below it after the last one.

    Returns
    -------
    ndarray, shape (num_bands, num_bands)
        ``D`` with ``y^(k) = D @ y^(0)``; the identity for ``k = 0``.

    Examples
    --------
    >>> differentiation_matrix(4, 2)
    array([[ 1., -2.,  1.,  0.],
           [ 0.,  1., -2.,  1.],
           [ 0.,  0.,  1., -1.],
           [ 0.,  0.,  1., -1.]])
    """
    if num_differentiations < 0:
        raise ValueError(f"num_differentiations must be >= 0, got {num_differentiations}")
    if num_differentiations >= num_bands:
        raise ValueError(f"{num_differentiations} differentiations of {num_bands} bands leave no band")
    d = np.eye(num_bands)
    step = np.zeros((num_bands, num_bands))
    idx = np.arange(num_bands - 1)
    step[idx, idx + 1] = 1.0
    step[idx, idx] = -1.0
    for j in range(num_differentiations):
        d = step @ d
        if j == num_differentiations - 1:
            d[-1] = d[-2]
    return d


def spatially_differentiate(bands: torch.Tensor, num_differentiations: int) -> torch.Tensor:
    """Differentiate band signals ``k`` times across bands, as the paper does (eq. 2).

    Parameters
    ----------
    bands : Tensor, shape (..., bands, time)
    num_differentiations : int

    Returns
    -------
    Tensor, same shape

    Examples
    --------
    >>> spatially_differentiate(torch.tensor([[1.0], [2.0], [4.0]]), 1).flatten().tolist()
    [1.0, 2.0, 2.0]
    """
    y = bands
    for j in range(num_differentiations):
        d = torch.zeros_like(y)
        d[..., :-1, :] = y[..., 1:, :] - y[..., :-1, :]
        if j == num_differentiations - 1:
            d[..., -1, :] = d[..., -2, :]
        y = d
    return y


def _impulse_response(a: np.ndarray, n: int) -> np.ndarray:
    """First ``n`` samples of the impulse responses of ``1 / A_j(z)``, shape (filters, n)."""
    g = np.zeros((a.shape[0], n + 2))
    g[:, 2] = 1.0
    for t in range(2, n + 2):
        if t > 2:
            g[:, t] = -a[:, 1] * g[:, t - 1] - a[:, 2] * g[:, t - 2]
    return g[:, 2:]


@functools.lru_cache(maxsize=32)
def _block_operators(
    num_filters: int,
    sample_rate: int,
    f_min: float,
    f_max: float | None,
    bandwidth_factor: float,
    unit_center_gain: bool,
    center_grid: str,
    num_differentiations: int,
    block: int,
) -> dict:
    """Precomputed (and cached) matrices of the chunked recurrence (see the module docstring).

    Returns read-only float64 arrays: ``qt`` (bands, 2w + L, L), the state rows ``Q_i`` stacked
    over the Toeplitz block ``T_i`` of each output band; ``end_sum`` (L, 2J), the block-end
    one-pole sums with real and imaginary parts interleaved per filter (so that the product,
    viewed as complex, is the state); ``start`` (bands,), the first column of each band's window
    of ``2w`` interleaved state columns; ``pole_block`` (J,), ``p^L``.
    """
    bank = resonator_bank(num_filters, sample_rate, f_min, f_max, bandwidth_factor, unit_center_gain, center_grid)
    d = differentiation_matrix(num_filters, num_differentiations)
    pole = bank["radius"] * np.exp(1j * bank["theta"])  # (J,)
    alpha = pole / (pole - np.conj(pole))  # 1/A(z) = alpha/(1-p z^-1) + conj
    n_out, n_in = d.shape
    dg = d * bank["gain"][None, :]  # folded weights (I, J)
    # zero-state block response: Y_i[b, k] = sum_m U[b, m] T_i[m, k], T_i Toeplitz of sum_j dg_ij g_j
    h = dg @ _impulse_response(bank["a"], block)  # (I, L)
    lag = np.arange(block)[None, :] - np.arange(block)[:, None]  # k - m
    toeplitz = np.where(lag[None] >= 0, h[:, np.clip(lag, 0, None)], 0.0)  # (I, L, L)
    # state term of band i at offset k: sum_j Re(2 dg_ij alpha_j p_j^(k+1) S_j[b-1]) over a window
    # of w consecutive filters that holds the band's support (the k differences reach k bands up)
    first = np.array([np.flatnonzero(row)[0] for row in d])
    last = np.array([np.flatnonzero(row)[-1] for row in d])
    width = int((last - first).max()) + 1
    start = np.minimum(first, n_in - width)
    kpow = pole[:, None] ** (np.arange(block) + 1)[None, :]  # (J, L)
    qt = np.zeros((n_out, 2 * width + block, block))
    for i in range(n_out):
        js = start[i] + np.arange(width)
        coef = 2.0 * dg[i, js][:, None] * alpha[js][:, None] * kpow[js]  # (w, L)
        qt[i, 0 : 2 * width : 2] = coef.real  # Re(c S) = Re c Re S - Im c Im S
        qt[i, 1 : 2 * width : 2] = -coef.imag
    qt[:, 2 * width :] = toeplitz
    # block-end one-pole sums E_j[b] = sum_m p_j^(L-1-m) U[b, m], (re, im) interleaved per filter
    powers = pole[None, :] ** (block - 1 - np.arange(block))[:, None]  # (L, J)
    end_sum = np.empty((block, 2 * n_in))
    end_sum[:, 0::2], end_sum[:, 1::2] = powers.real, powers.imag
    ops = {"qt": qt, "end_sum": end_sum, "start": 2 * start, "width2": 2 * width, "pole_block": pole**block}
    for v in ops.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return ops


def _scan(e, pole, chunk: int = 16):
    """In place: ``e[:, b] += pole * e[:, b - 1]`` for all ``b`` (complex ``e`` of shape (batch, n, J)).

    Two levels at a time: a sequential pass inside chunks of ``chunk`` (vectorised over chunks and
    filters), the same scan over the chunk ends with ``pole^chunk`` (recursively), then the carried
    state added to each chunk. Works on NumPy arrays and torch tensors alike.
    """
    n = e.shape[1]
    if n <= 2 * chunk:
        for b in range(1, n):
            e[:, b] += pole * e[:, b - 1]
        return e
    nc = n // chunk
    body = e[:, : nc * chunk].reshape(e.shape[0], nc, chunk, e.shape[2])
    for i in range(1, chunk):
        body[:, :, i] += pole * body[:, :, i - 1]
    ends = body[:, :, -1] * 1  # a copy: the chunk-local end states
    _scan(ends, pole**chunk, chunk)  # now the full end states
    carry = pole[None, :] ** (1 + _arange_like(pole, chunk))[:, None]  # (chunk, J)
    body[:, 1:] += carry[None, None] * ends[:, :-1, None, :]
    for b in range(nc * chunk, n):
        e[:, b] += pole * e[:, b - 1]
    return e


def _arange_like(ref, n: int):
    if isinstance(ref, torch.Tensor):
        return torch.arange(n, device=ref.device).to(ref.real.dtype)
    return np.arange(n, dtype=ref.real.dtype)


_BLAS = None


def _single_threaded_blas():
    """Context limiting NumPy's BLAS to one thread (these products are too small to share)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController  # installed with scikit-learn

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _numerator_blocks(x, nb: int, block: int, xp):
    """``u = (1 - z^-2) x`` zero-padded to ``nb`` blocks, shape (batch, nb, block)."""
    bsz, n = x.shape
    if xp is np:
        u = np.zeros((bsz, nb * block), dtype=x.dtype)
    else:
        u = torch.zeros(bsz, nb * block, dtype=x.dtype, device=x.device)
    u[:, :n] = x
    u[:, 2:n] -= x[:, : n - 2]
    return u.reshape(bsz, nb, block)


def _filterbank_numpy(x: np.ndarray, ops: dict, num_bands: int) -> np.ndarray:
    """The CPU path: one BLAS product per band and utterance, written straight into the output."""
    bsz, n = x.shape
    qt = ops["qt"].astype(x.dtype, copy=False)
    block = qt.shape[-1]
    start, w2 = ops["start"], ops["width2"]
    nbf, nb = n // block, -(-n // block)
    ublocks = _numerator_blocks(x, nb, block, np)
    cdtype = np.complex128 if x.dtype == np.float64 else np.complex64
    out = np.empty((bsz, num_bands, n), dtype=x.dtype)  # NumPy asks for huge pages: faster first touch
    with _single_threaded_blas():
        ends = ublocks.reshape(-1, block) @ ops["end_sum"].astype(x.dtype, copy=False)  # (B*nb, 2J)
        states = _scan(ends.reshape(bsz, nb, -1).view(cdtype), ops["pole_block"].astype(cdtype), 16)
        states = states.view(x.dtype)  # (B, nb, 2J): state at the end of block b, (re, im) interleaved
        # per band: [S_window(b - 1) | U(b)] @ [Q; T]; the U columns of z are written once per utterance
        z = np.empty((nbf, w2 + block), dtype=x.dtype)
        for b in range(bsz):
            if nbf:
                z[:, w2:] = ublocks[b, :nbf]
                z[0, :w2] = 0.0
                for i in range(num_bands):
                    z[1:, :w2] = states[b, : nbf - 1, start[i] : start[i] + w2]
                    np.matmul(z, qt[i], out=out[b, i, : nbf * block].reshape(nbf, block))
            if nb > nbf:  # the last, partial block
                zt = np.zeros((num_bands, w2 + block), dtype=x.dtype)
                if nbf:
                    zt[:, :w2] = states[b, nbf - 1][start[:, None] + np.arange(w2)[None, :]]
                zt[:, w2:] = ublocks[b, nbf]
                out[b, :, nbf * block :] = np.einsum("ic,ick->ik", zt, qt)[:, : n - nbf * block]
    return out


def _filterbank_torch(x: torch.Tensor, ops: dict, num_bands: int) -> torch.Tensor:
    """The same computation with batched torch products (for accelerators)."""
    bsz, n = x.shape
    dev, dtype = x.device, x.dtype
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    qt = torch.tensor(ops["qt"], dtype=dtype, device=dev)
    block = qt.shape[-1]
    w2 = ops["width2"]
    nb = -(-n // block)
    ublocks = _numerator_blocks(x, nb, block, torch)
    ends = ublocks.reshape(-1, block) @ torch.tensor(ops["end_sum"], dtype=dtype, device=dev)
    pole = torch.tensor(ops["pole_block"], dtype=cdtype, device=dev)
    states = _scan(torch.view_as_complex(ends.reshape(bsz, nb, -1, 2)).contiguous(), pole, 16)
    states = torch.view_as_real(states).reshape(bsz, nb, -1)
    prev = torch.nn.functional.pad(states[:, :-1], (0, 0, 1, 0))  # state entering block b
    cols = torch.as_tensor(ops["start"][:, None] + np.arange(w2)[None, :], device=dev)  # (I, 2w)
    out = torch.empty(bsz, num_bands, nb * block, dtype=dtype, device=dev)
    for b in range(bsz):
        z = torch.cat([prev[b][:, cols].transpose(0, 1), ublocks[b].expand(num_bands, nb, block)], dim=2)
        torch.bmm(z, qt, out=out[b].view(num_bands, nb, block))
    return out[:, :, :n]


_KERNEL_SOURCE = Path(__file__).with_name("sd_filterbank_kernel.cpp")
IMPLEMENTATIONS = ("auto", "compiled", "blas", "torch")


@functools.lru_cache(maxsize=1)
def _load_kernel():
    """Build (first use in a machine, about 40 s; then cached on disk) and load the C++ kernel.

    Returns ``(module, None)``, or ``(None, reason)`` when it cannot be built (no compiler).
    """
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_log.level
    cpp_log.setLevel(logging.ERROR)  # its import warns that a CPU-only machine has no CUDA
    try:
        from torch.utils.cpp_extension import load

        here = Path(sys.executable).parent  # a virtual environment's ninja, when its bin is not on PATH
        if shutil.which("ninja") is None and (here / "ninja").exists():
            os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"
        # AVX2/FMA only where the CPU has them, under a name of its own (a home directory shared
        # by machines of different CPUs keeps one build per instruction set)
        simd = "avx2" if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else "sse2"
        flags = ["-O3", "-fopenmp"] + (["-mavx2", "-mfma"] if simd == "avx2" else [])
        module = load(name=f"audioexp_sd_filterbank_{simd}", sources=[str(_KERNEL_SOURCE)], extra_cflags=flags,
                      extra_ldflags=["-fopenmp"], verbose=False)
        return module, None
    except Exception as exc:  # a missing compiler or ninja shows up as many exception types
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() and "Error building" not in line]
        return None, f"{type(exc).__name__}: {(errors or lines or [''])[0][:300]}"
    finally:
        cpp_log.setLevel(level)


@functools.lru_cache(maxsize=32)
def _kernel_coefficients(num_filters, sample_rate, f_min, f_max, bandwidth_factor, unit_center_gain,
                         center_grid, num_differentiations, dtype: torch.dtype) -> dict:
    """Recursion coefficients and difference weights for the compiled kernel, as ``dtype`` tensors
    (cached per design and dtype; the kernel only reads them).

    ``inner``: the weights of band ``i`` on filters ``i .. i + k`` (the same for every band below
    ``N - k``); ``top``: the weights of the top ``k`` bands on filters ``N - k - 1 .. N - 1``. Both
    are read from :func:`differentiation_matrix`, and checked to be all it holds.
    """
    bank = resonator_bank(num_filters, sample_rate, f_min, f_max, bandwidth_factor, unit_center_gain, center_grid)
    d = differentiation_matrix(num_filters, num_differentiations)
    n, w = num_filters, num_differentiations + 1
    inner = d[0, :w].copy()
    banded = np.zeros_like(d)
    for i in range(n - w + 1):
        banded[i, i:i + w] = inner
    banded[n - w + 1:, n - w:] = d[n - w + 1:, n - w:]
    if not np.array_equal(banded, d):  # pragma: no cover - guards the kernel's assumption on D
        raise AssertionError("differentiation_matrix is not banded as the compiled kernel assumes")
    coeffs = {"a1": bank["a"][:, 1], "a2": bank["a"][:, 2], "gain": bank["gain"], "inner": inner,
              "top": d[n - w + 1:, n - w:]}
    return {name: torch.tensor(v, dtype=dtype).contiguous() for name, v in coeffs.items()}


class OutputPool:
    """Recycles the memory of the compiled kernel's outputs once nothing uses them any more.

    A fresh (batch, 80, time) float64 output is tens of MB whose first touch (the operating
    system zeroing new pages) costs about half of the kernel's time. Feature extraction makes one
    per utterance and drops it soon after, so the memory of a dropped output serves the next one
    (any shape that fits in it, within twice its size). A buffer returns to the pool only when
    every tensor and view of that output is gone (a finalizer on the NumPy view that torch's
    storage holds), so results a caller keeps are never overwritten. At most ``max_bytes`` are
    kept (``AUDIOEXP_SD_POOL_MB``, default 512; 0 turns the pool off).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._free: list[np.ndarray] = []  # flat uint8 buffers, oldest first
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``, from a recycled buffer where one fits."""
        dtype = np.dtype(dtype)
        need = int(np.prod(shape)) * dtype.itemsize
        if self.max_bytes <= 0 or need > self.max_bytes:
            return np.empty(shape, dtype)  # NumPy asks for huge pages: a faster first touch than torch.empty
        owner = None
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if need <= b.nbytes <= 2 * need]
            if fits:
                owner = self._free.pop(min(fits, key=lambda i: self._free[i].nbytes))
        if owner is None:
            owner = np.empty(need, np.uint8)
        view = owner[:need].view(dtype).reshape(shape)
        weakref.finalize(view, self._release, owner)
        return view

    def _release(self, owner: np.ndarray) -> None:
        with self._lock:
            self._free.append(owner)
            while sum(b.nbytes for b in self._free) > self.max_bytes:
                self._free.pop(0)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


OUTPUT_POOL = OutputPool(int(float(os.environ.get("AUDIOEXP_SD_POOL_MB", "512")) * 2**20))


def _filterbank_compiled(kernel, x: torch.Tensor, coeffs: dict, num_threads: int,
                         out: torch.Tensor | None) -> torch.Tensor:
    bsz, n = x.shape
    num_bands = coeffs["a1"].shape[0]
    if out is None:
        out = torch.from_numpy(OUTPUT_POOL.empty((bsz, num_bands, n), x.numpy().dtype))
    elif out.shape != (bsz, num_bands, n) or out.dtype != x.dtype or not out.is_contiguous() or out.device.type != "cpu":
        raise ValueError(f"out must be a contiguous CPU tensor of shape {(bsz, num_bands, n)} and dtype {x.dtype}, "
                         f"got {tuple(out.shape)}, {out.dtype}")
    threads = max(1, int(num_threads))
    groups = 1 if bsz >= threads else math.ceil(threads / bsz)  # enough work items for the threads
    kernel.sd_filterbank_cpu(x.contiguous(), *(coeffs[k] for k in ("a1", "a2", "gain", "inner", "top")),
                             math.ceil(num_bands / groups), threads, out)
    return out


def sd_filterbank(
    waveform: torch.Tensor, sample_rate: int = 16000, num_filters: int = 80, num_differentiations: int = 0,
    f_min: float = F_MIN, f_max: float | None = None, bandwidth_factor: float = BANDWIDTH_FACTOR, unit_center_gain: bool = False,
    center_grid: str = "inner", block_size: int = 32, dtype: torch.dtype = torch.float64,
    implementation: str = "auto", num_threads: int | None = None, out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Band signals of the spatially differentiated second-order IIR filterbank.

    Parameters
    ----------
    waveform : Tensor, shape (batch, time) or (time,)
    sample_rate : int
        In Hz.
    num_filters : int
        ``N`` (the paper: 80).
    num_differentiations : int
        ``k`` (the paper: 0, 2, 4, 6).
    f_min, f_max, bandwidth_factor, unit_center_gain, center_grid
        Filter design, see :func:`resonator_bank`.
    block_size : int
        Samples per block of the chunked recurrence of the ``blas`` and ``torch`` paths (speed
        only; 32 was fastest on our CPU).
    dtype : torch.dtype
        Computation and output precision (float64 by default; see the module docstring).
    implementation : {"auto", "compiled", "blas", "torch"}
        "auto": the compiled kernel on the CPU (the BLAS path, with one warning, when it cannot be
        built) and the torch path elsewhere. "compiled" raises when the kernel cannot be built.
        All agree to about 1e-13 of the peak in float64 (see the module docstring).
    num_threads : int, optional
        Threads of the compiled kernel (default ``torch.get_num_threads()``).
    out : Tensor, optional
        A contiguous (batch, num_filters, time) CPU tensor of ``dtype`` to write into (compiled
        kernel only): reusing one across utterances saves the first touch of fresh memory.

    Returns
    -------
    Tensor, shape (batch, num_filters, time) (or (num_filters, time) for a 1-D input)
        Zero initial conditions, as ``scipy.signal.lfilter``. On the CPU the result is
        contiguous; the operators are cached per design, ``k`` and block size.

    Examples
    --------
    >>> sd_filterbank(torch.randn(2, 1600), num_differentiations=6).shape
    torch.Size([2, 80, 1600])
    """
    squeeze = waveform.dim() == 1
    x = waveform.unsqueeze(0) if squeeze else waveform
    if x.dim() != 2:
        raise ValueError(f"waveform must have shape (batch, time) or (time,), got {tuple(waveform.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("waveform contains NaN or infinite values")
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    design = (int(num_filters), int(sample_rate), float(f_min), None if f_max is None else float(f_max),
              float(bandwidth_factor), bool(unit_center_gain), str(center_grid), int(num_differentiations))
    x = x.detach().to(dtype)
    impl = implementation
    if x.device.type != "cpu":
        if impl in ("compiled", "blas"):
            raise ValueError(f"implementation={impl!r} runs on the CPU; the waveform is on {x.device}")
        impl = "torch"
    elif impl in ("auto", "compiled"):
        kernel, why = _load_kernel()
        if kernel is None and impl == "compiled":
            raise RuntimeError(f"the compiled sd_filterbank kernel could not be built ({why}); it needs g++ and "
                               "ninja (pip install ninja). implementation='blas' runs without them, 3-5x slower")
        if kernel is None:
            log_once(log, "sd_filterbank_kernel",
                     "sd_filterbank: the compiled CPU kernel could not be built (%s); using the BLAS path, 3-5x "
                     "slower. Install g++ and ninja, or pass implementation='blas' to silence this.", why,
                     level=logging.WARNING)
        impl = "compiled" if kernel is not None else "blas"
    if out is not None and impl != "compiled":
        raise ValueError(f"out= is supported by the compiled CPU kernel only, not by implementation={impl!r}")
    if impl == "compiled":
        threads = torch.get_num_threads() if num_threads is None else int(num_threads)
        result = _filterbank_compiled(kernel, x, _kernel_coefficients(*design, x.dtype), threads,
                                      None if out is None else (out.unsqueeze(0) if squeeze else out))
    else:
        ops = _block_operators(*design, int(block_size))
        if impl == "blas":
            result = torch.from_numpy(_filterbank_numpy(x.numpy(), ops, num_filters))
        else:
            result = _filterbank_torch(x, ops, num_filters)
    return result[0] if squeeze else result


def compiled_kernel_error() -> str | None:
    """Why the compiled CPU kernel cannot be built here, or None when it is built (and loaded)."""
    return _load_kernel()[1]


@functools.lru_cache(maxsize=16)
def _chunk_dft_bases(hop: int, n_fft: int, num_bins: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The bases of :func:`sd_filterbank_centroids`' chunk DFT, float64 tensors (cached).

    Bins ``k = 0 .. num_bins`` (one above the last used: the window's convolution reaches it) of
    the ``n_fft``-point DFT of a ``hop``-long chunk about its centre ``m = (hop - 1) / 2``, with
    ``a_n = 2 pi (m - n) / n_fft``, rows ``n < hop / 4`` (the kernel folds the chunk twice; see
    ``sd_filterbank_kernel.cpp``): ``cos(k a_n)`` of ``k = 0 mod 4``, of ``k = 2 mod 4``,
    ``sin(k a_n)`` of ``k = 4, 8, ...``, of ``k = 2 mod 4``; ``cos(k a_n)``, ``sin(k a_n)`` of the
    centres ``k = 2, 6, ...`` of the odd bins' pairs; ``(cos a_n, sin a_n)``; and
    ``rot[k] = exp(-2 pi i m k / n_fft)`` (re, im).
    """
    half, mid = hop // 2, (hop - 1) / 2
    a = 2.0 * np.pi * (mid - np.arange(half // 2)) / n_fft  # n < hop / 4
    k = np.arange(num_bins + 1)
    pairs = 4 * np.arange(((num_bins + 1) // 2 + 1) // 2) + 2  # the odd bins' pairs: k - 1, k + 1
    q = a[:, None]
    bases = [np.cos(q * k[0::4]), np.cos(q * k[2::4]), np.sin(q * k[4::4]), np.sin(q * k[2::4]), np.cos(q * pairs),
             np.sin(q * pairs), np.stack([np.cos(a), np.sin(a)], axis=1)]
    phase = 2.0 * np.pi * mid * k / n_fft
    rot = np.stack([np.cos(phase), -np.sin(phase)], axis=1)
    as_tensor = lambda b: torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))  # noqa: E731
    return [as_tensor(b) for b in bases], as_tensor(rot)


def sd_filterbank_centroids(
    waveform: torch.Tensor, sample_rate: int = 16000, num_filters: int = 80, num_differentiations: int = 0,
    f_min: float = F_MIN, f_max: float | None = None, bandwidth_factor: float = BANDWIDTH_FACTOR,
    unit_center_gain: bool = False, center_grid: str = "inner", hop: int = 160, num_bins: int = 20,
    include_dc: bool = False, eps: float = 1e-12, num_threads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compiled kernel fused with the replay front-end's envelope centroids (CPU, float64).

    The band signals of :func:`sd_filterbank` (same design arguments) are not returned: right
    after the filters produce ``hop`` samples of every band, the kernel rectifies them and takes
    the DFT of that chunk (bins ``0 .. num_bins``, about its centre: the pairs of samples
    symmetric about it folded first, then the halves' symmetric pairs, the odd bins in pairs: a quarter
    of the plain DFT's products);
    each frame of two chunks (a periodic
    Hamming window, a DFT as long as the frame, frames ``1 + (time - 2 hop) // hop``) adds its
    chunks' spectra and applies the window as its three-bin convolution, then eq. 6/7 give CF and
    CM over bins ``0 .. num_bins - 1`` (:func:`audioexp.features.replay.spectral_envelope_centroids`
    with ``frame = n_fft = 2 hop``, which it equals to rounding; the rectified bands never reach
    memory). Raises RuntimeError when the kernel cannot be built (:func:`compiled_kernel_error`).

    Parameters
    ----------
    waveform : Tensor, shape (batch, time) or (time,), on the CPU
    hop : int
        Samples per hop (a multiple of 4); frames and the DFT are ``2 hop`` long (the paper: 160 at
        16 kHz).
    num_bins : int
        DFT bins used by eq. 6/7 (the paper: 20, up to 950 Hz); at most ``hop / 2 - 1``.
    include_dc, eps
        As :func:`audioexp.features.replay.spectral_envelope_centroids`.
    num_threads : int, optional
        Threads (default ``torch.get_num_threads()``): utterances and groups of bands.

    Returns
    -------
    cf, cm : Tensor, float64, shape (batch, num_filters, frames) (or (num_filters, frames))
    """
    squeeze = waveform.dim() == 1
    x = waveform.unsqueeze(0) if squeeze else waveform
    if x.dim() != 2 or x.device.type != "cpu":
        raise ValueError(f"waveform must be a CPU tensor of shape (batch, time) or (time,), got "
                         f"{tuple(waveform.shape)} on {waveform.device}")
    if hop < 4 or hop % 4 or not 1 <= num_bins <= hop // 2 - 1:
        raise ValueError(f"hop must be a multiple of 4 and num_bins in [1, hop / 2 - 1], got hop={hop}, "
                         f"num_bins={num_bins}")
    if x.shape[-1] < 2 * hop:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than one frame of {2 * hop} samples")
    if not torch.isfinite(x).all():
        raise ValueError("waveform contains NaN or infinite values")
    kernel, why = _load_kernel()
    if kernel is None:
        raise RuntimeError(f"the compiled sd_filterbank kernel could not be built ({why}); it needs g++ and ninja")
    design = (int(num_filters), int(sample_rate), float(f_min), None if f_max is None else float(f_max),
              float(bandwidth_factor), bool(unit_center_gain), str(center_grid), int(num_differentiations))
    coeffs = _kernel_coefficients(*design, torch.float64)
    x = x.detach().to(torch.float64).contiguous()
    bsz, n = x.shape
    frames = 1 + (n - 2 * hop) // hop
    cf = torch.empty(bsz, num_filters, frames, dtype=torch.float64)
    cm = torch.empty_like(cf)
    bases, rot = _chunk_dft_bases(int(hop), 2 * int(hop), int(num_bins))
    freqs = torch.arange(num_bins, dtype=torch.float64) * (sample_rate / (2 * hop))
    threads = max(1, torch.get_num_threads() if num_threads is None else int(num_threads))
    groups = 1 if bsz >= threads else math.ceil(threads / bsz)
    kernel.sd_centroids_cpu(x, *(coeffs[k] for k in ("a1", "a2", "gain", "inner", "top")), bases, rot, freqs,
                            0.54, 0.23, bool(include_dc), float(eps), math.ceil(num_filters / groups), threads, cf, cm)
    return (cf[0], cm[0]) if squeeze else (cf, cm)


def sd_filterbank_reference(
    waveform: np.ndarray, sample_rate: int = 16000, num_filters: int = 80, num_differentiations: int = 0,
    f_min: float = F_MIN, f_max: float | None = None, bandwidth_factor: float = BANDWIDTH_FACTOR, unit_center_gain: bool = False,
    center_grid: str = "inner",
) -> np.ndarray:
    """The direct computation: one ``scipy.signal.lfilter`` per filter, then the differences.

    Slow; the reference that :func:`sd_filterbank` is tested and timed against.

    Parameters
    ----------
    waveform : ndarray, shape (batch, time) or (time,)

    Returns
    -------
    ndarray, float64, shape (batch, num_filters, time) (or (num_filters, time))
    """
    from scipy.signal import lfilter

    x = np.asarray(waveform, dtype=np.float64)
    bank = resonator_bank(num_filters, sample_rate, f_min, f_max, bandwidth_factor, unit_center_gain, center_grid)
    y = np.stack([lfilter(bank["b"][i], bank["a"][i], x, axis=-1) for i in range(num_filters)], axis=-2)
    for j in range(num_differentiations):
        d = np.zeros_like(y)
        np.subtract(y[..., 1:, :], y[..., :-1, :], out=d[..., :-1, :])
        if j == num_differentiations - 1:
            d[..., -1, :] = d[..., -2, :]
        y = d
    return y

