"""Spatially differentiated IIR filterbank (Wickramasinghe et al., ICASSP 2019).

A bank of ``N`` second-order IIR band-pass filters (the paper's eq. 1)::

    H_i(z) = g_i (1 - z^-2) / (1 - 2 r_i cos(theta_i) z^-1 + r_i^2 z^-2)

with centres equally spaced on the (HTK) mel scale, followed by ``k`` "spatial
differentiations" of the filter *outputs* (eq. 2), ``y_i^(j+1) = y_(i+1)^(j) - y_i^(j)``.
To keep ``N`` bands, the highest band is set to zero after each intermediate
differentiation and to a copy of the band below it after the last one (section 4.2).

How it is computed (why it is fast)
-----------------------------------
Everything after the filters is linear, so the ``k`` differences are folded into the
filters: output band ``i`` is ``sum_j D_ij H_j`` applied to the input, where ``D``
(:func:`differentiation_matrix`) holds signed binomial weights. The recursion is then
evaluated in blocks of ``L`` samples (a chunked linear recurrence): within a block the
zero-state response is a product of the input block with an ``L x L`` lower-triangular
Toeplitz matrix of the folded impulse responses (one GEMM per band); the memory carried
across blocks is the state of each second-order section, written as one complex one-pole
state ``s[n] = p s[n-1] + u[n]`` per filter (``p = r e^{j theta}``). The block-end states
follow their own one-pole recurrence with pole ``p^L``, evaluated the same way one level
up (blocks of ``L2``), and a short loop over the few remaining super-blocks. Everything
is float64 by default: six differences of nearby bands cancel to a small fraction of
each band, and float32 loses the result.

The reference it is tested against is the direct computation: one
``scipy.signal.lfilter`` per filter, then the differences (``tests/unit/test_sd_filterbank.py``;
``bench/bench_sd_filterbank.py`` times both).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "differentiation_matrix",
    "hz_to_mel",
    "mel_to_hz",
    "resonator_bank",
    "sd_filterbank",
    "sd_filterbank_reference",
    "spatially_differentiate",
]


def hz_to_mel(f):
    """HTK mel scale, ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def resonator_bank(
    num_filters: int = 80,
    sample_rate: int = 16000,
    f_min: float = 0.0,
    f_max: float | None = None,
    bandwidth_factor: float = 1.0,
    unit_center_gain: bool = False,
    center_grid: str = "inner",
) -> dict[str, np.ndarray]:
    """Centres, bandwidths and coefficients of the second-order band-pass bank (eq. 1).

    Centres: ``num_filters`` points equally spaced on the HTK mel scale. ``center_grid``
    "inner" (default, ours) takes the inner ``N`` of ``N + 2`` points over
    ``[f_min, f_max]`` (80 filters over 0-8 kHz: the 55th is centred on 3175 Hz).
    "edges" puts the first and last centre on ``f_min`` and ``f_max``
    (``librosa.mel_frequencies(N, htk=True)``): filter 55 counted from 0 is then centred on
    3346 Hz, closest to the paper's Fig. 1 (3349.3 Hz), but a centre on 0 Hz or on Nyquist
    coincides with a zero of eq. 1 (no pass band), so "edges" needs ``f_min > 0`` and
    ``f_max < sample_rate / 2``.
    Bandwidth (ours; the paper does not give its rule): half the distance between the two
    neighbouring centres (the grid continued by one mel step beyond each end), times
    ``bandwidth_factor``, so that neighbours cross near their -3 dB points. Pole radius ``r = exp(-pi B / fs)`` (the -3 dB bandwidth of a resonator
    is about ``B``), pole angle ``theta = 2 pi f_c / fs``.

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


def _block_operators(bank: dict, d: np.ndarray, block: int, block2: int):
    """Precomputed matrices of the chunked recurrence (see the module docstring)."""
    a, gain = bank["a"], bank["gain"]
    pole = bank["radius"] * np.exp(1j * bank["theta"])  # (J,)
    alpha = pole / (pole - np.conj(pole))  # 1/A(z) = alpha/(1-p z^-1) + conj
    n_out, n_in = d.shape
    g = _impulse_response(a, block)  # (J, L)
    dg = d * gain[None, :]  # folded weights (I, J)
    # zero-state block response: Y_i[b, k] = sum_m U[b, m] W_i[m, k], W_i Toeplitz of sum_j dg_ij g_j
    h = dg @ g  # (I, L)
    m_idx, k_idx = np.meshgrid(np.arange(block), np.arange(block), indexing="ij")
    lag = k_idx - m_idx
    toeplitz = np.where(lag[None] >= 0, h[:, np.clip(lag, 0, None)], 0.0)  # (I, L, L)
    # block-end one-pole sums: E_j[b] = sum_m p_j^(L-1-m) U[b, m]
    powers = pole[None, :] ** (block - 1 - np.arange(block))[:, None]  # (L, J)
    end_sum = np.concatenate([powers.real, powers.imag], axis=1)  # (L, 2J)
    # state contribution to output band i at offset k: sum_j Re(dg_ij 2 alpha_j p_j^(k+1) S_j[b-1])
    support = [np.flatnonzero(row) for row in d]
    width = max(1, max(len(s) for s in support))
    cols = np.zeros((n_out, width), dtype=np.int64)
    q = np.zeros((n_out, 2 * width, block))
    kpow = pole[:, None] ** (np.arange(block) + 1)[None, :]  # (J, L)
    for i, s in enumerate(support):
        cols[i, : len(s)] = s
        coef = 2.0 * dg[i, s][:, None] * alpha[s][:, None] * kpow[s]  # (|s|, L)
        q[i, : len(s)] = coef.real
        q[i, width : width + len(s)] = -coef.imag
    # level 2: the block-end states S[b] = P S[b-1] + E[b], P = p^L, in blocks of L2
    big = pole**block
    lag2 = np.arange(block2)[:, None] - np.arange(block2)[None, :]  # k - m
    toe2 = np.where(lag2[None] >= 0, big[:, None, None] ** np.clip(lag2, 0, None)[None], 0.0)  # (J, k, m)
    carry2 = big[:, None] ** (np.arange(block2) + 1)[None, :]  # (J, L2)
    return {"toeplitz": toeplitz, "end_sum": end_sum, "cols": cols, "q": q, "toe2": toe2,
            "carry2": carry2, "big2": big**block2}


def _scan_block_ends(e: torch.Tensor, ops: dict, block2: int) -> torch.Tensor:
    """Block-end states ``S[b] = P S[b-1] + E[b]`` for ``e`` of shape (batch, blocks, J), complex."""
    bsz, nb, nj = e.shape
    nc = -(-nb // block2)
    e = torch.nn.functional.pad(e, (0, 0, 0, nc * block2 - nb))
    e = e.reshape(bsz, nc, block2, nj)
    toe2 = ops["toe2"]  # (J, L2, L2) complex
    # zero-state within super-blocks: z[c, k, j] = sum_m toe2[j, k, m] e[c, m, j]
    z = torch.einsum("jkm,bcmj->bckj", toe2, e)
    ends = z[:, :, -1, :]  # (B, nc, J)
    big2 = ops["big2"]
    carried = torch.zeros(bsz, nc, nj, dtype=z.dtype, device=z.device)  # S at end of super-block c-1
    state = torch.zeros(bsz, nj, dtype=z.dtype, device=z.device)
    for c in range(nc):
        carried[:, c] = state
        state = big2 * state + ends[:, c]
    z = z + ops["carry2"].T[None, None] * carried[:, :, None, :]
    return z.reshape(bsz, nc * block2, nj)[:, :nb]


def sd_filterbank(
    waveform: torch.Tensor,
    sample_rate: int = 16000,
    num_filters: int = 80,
    num_differentiations: int = 0,
    f_min: float = 0.0,
    f_max: float | None = None,
    bandwidth_factor: float = 1.0,
    unit_center_gain: bool = False,
    center_grid: str = "inner",
    block_size: int = 16,
    dtype: torch.dtype = torch.float64,
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
        Samples per block of the chunked recurrence (speed only; 16 suits a CPU).
    dtype : torch.dtype
        Computation and output precision (float64 by default; see the module docstring).

    Returns
    -------
    Tensor, shape (batch, num_filters, time) (or (num_filters, time) for a 1-D input)
        Zero initial conditions, as ``scipy.signal.lfilter``.

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
    bank = resonator_bank(num_filters, sample_rate, f_min, f_max, bandwidth_factor, unit_center_gain, center_grid)
    d = differentiation_matrix(num_filters, num_differentiations)
    block, block2 = int(block_size), 32
    ops = _block_operators(bank, d, block, block2)
    dev = x.device
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    toeplitz = torch.as_tensor(ops["toeplitz"], dtype=dtype, device=dev)
    q = torch.as_tensor(ops["q"], dtype=dtype, device=dev)
    end_sum = torch.as_tensor(ops["end_sum"], dtype=dtype, device=dev)
    ops_t = {"toe2": torch.as_tensor(ops["toe2"], dtype=cdtype, device=dev),
             "carry2": torch.as_tensor(ops["carry2"], dtype=cdtype, device=dev),
             "big2": torch.as_tensor(ops["big2"], dtype=cdtype, device=dev)}
    cols = torch.as_tensor(ops["cols"], device=dev)
    bsz, n = x.shape
    nb = -(-n // block)
    x = x.to(dtype)
    # shared numerator (1 - z^-2)
    u = torch.zeros(bsz, nb * block, dtype=dtype, device=dev)
    u[:, :n] = x
    u[:, 2:n] -= x[:, : n - 2]
    ublocks = u.reshape(bsz, nb, block)
    nj = num_filters
    e = (ublocks.reshape(-1, block) @ end_sum).reshape(bsz, nb, 2 * nj)
    ends = _scan_block_ends(torch.complex(e[..., :nj], e[..., nj:]), ops_t, block2)  # (B, nb, J)
    prev = torch.zeros_like(ends)
    prev[:, 1:] = ends[:, :-1]  # state entering block b
    prev_ri = torch.cat([prev.real, prev.imag], dim=-1)  # (B, nb, 2J)
    gather = torch.cat([cols, cols + nj], dim=1)  # (I, 2w)
    out = torch.empty(bsz, num_filters, nb * block, dtype=dtype, device=dev)
    if dev.type == "cpu":  # NumPy's BLAS calls have less overhead for these small products
        out_np, u_np, t_np, q_np = out.numpy(), ublocks.numpy(), toeplitz.numpy(), q.numpy()
        for b in range(bsz):
            states = np.ascontiguousarray(prev_ri[b].numpy()[:, gather.numpy()].transpose(1, 0, 2))  # (I, nb, 2w)
            for i in range(num_filters):
                oi = out_np[b, i].reshape(nb, block)
                np.matmul(u_np[b], t_np[i], out=oi)
                oi += states[i] @ q_np[i]
    else:
        for b in range(bsz):
            states = prev_ri[b][:, gather].transpose(0, 1)  # (I, nb, 2w)
            res = torch.baddbmm(torch.bmm(states, q), ublocks[b].expand(num_filters, nb, block), toeplitz)
            out[b] = res.reshape(num_filters, nb * block)
    out = out[:, :, :n]
    return out[0] if squeeze else out


def sd_filterbank_reference(
    waveform: np.ndarray,
    sample_rate: int = 16000,
    num_filters: int = 80,
    num_differentiations: int = 0,
    f_min: float = 0.0,
    f_max: float | None = None,
    bandwidth_factor: float = 1.0,
    unit_center_gain: bool = False,
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

