"""The replay front-end (CF/CM of the spatially differentiated filterbank) against its kernel alone.

On one thread (``--threads 1``, the goal's setting), per utterance as feature extraction calls
it, on the same audio (``--utterances`` clips of noise with a slowly moving envelope, about
``--seconds`` each, 16 kHz):

- ``kernel``: the SD filterbank alone (``sd_filterbank``, compiled kernel, ``k`` differentiations,
  80 bands, float64), the part of the front-end every implementation of the rest needs;
- ``cf`` / ``cm`` / ``cf_cm``: the whole front-end, ``SDFBFeatures(feature=...)``: on the CPU the
  kernel's fused entry point (``sd_filterbank_centroids``: the filters, then rectification,
  framing, envelope DFT and eq. 6/7 on each 10-ms tile while it is in cache; the band signals are
  never stored), then log, DCT, deltas, normalisation in torch;
- ``numpy post``: the kernel followed by a plain NumPy/SciPy version of the steps after it
  (``numpy_post``: framed copies, ``np.fft.rfft``, the sums of eq. 6/7, ``scipy.fft.dct``), for
  ``cf_cm``; it is also checked to give our numbers (max abs difference printed).

Rounds alternate the candidates (the machine may be shared: compare ratios, not seconds); best of
``--repeats``. Prints seconds, the ratio to the kernel (goal of issue 17: at most 1.5) and the
real-time factor per core (audio seconds per compute second; goal: at least 200).

    python bench/bench_replay_frontend.py [--utterances 40] [--seconds 3] [--k 6] [--repeats 3] [--threads 1]

Measured numbers: experiments/performance.md.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.fft import dct
import torch

from _options import parse_options
from audioexp.features.replay import SDFBFeatures
from audioexp.features.sd_filterbank import sd_filterbank


def _deltas(c: np.ndarray, width: int = 2) -> np.ndarray:
    padded = np.concatenate([np.repeat(c[:, :1], width, 1), c, np.repeat(c[:, -1:], width, 1)], axis=1)
    t = c.shape[1]
    out = sum(n * (padded[:, width + n : width + n + t] - padded[:, width - n : width - n + t]) for n in range(1, width + 1))
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def numpy_post(bands: np.ndarray, fe: SDFBFeatures) -> np.ndarray:
    """The steps after the kernel, cf_cm, in plain NumPy/SciPy: bands (80, time) -> (frames, 360)."""
    frame, hop, n_fft = 320, 160, 320
    num_bins = int(np.floor(fe.f_max * n_fft / fe.sample_rate)) + 1
    frames = np.lib.stride_tricks.sliding_window_view(np.abs(bands), frame, axis=-1)[:, ::hop]
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(frame) / frame)
    mag = np.abs(np.fft.rfft(frames * window, n=n_fft, axis=-1)[..., :num_bins])  # (bands, frames, bins)
    freqs = np.arange(num_bins) * (fe.sample_rate / n_fft)
    weighted = mag @ freqs
    denom = mag[..., 1:].sum(-1)
    cf = np.where(denom > 1e-12, weighted / np.maximum(denom, 1e-12), 0.0)
    cm = weighted / freqs.sum()
    cep = dct(np.log(cm + fe.log_floor), type=2, norm="ortho", axis=0)[: fe.num_cepstra]
    parts = []
    for static in (cf, cep):
        d1 = _deltas(static, fe.delta_width)
        parts += [static, d1, _deltas(d1, fe.delta_width)]
    feats = np.concatenate(parts, axis=0)
    feats = (feats - feats.mean(1, keepdims=True)) / (feats.std(1, keepdims=True) + 1e-8)
    return feats.T


def main() -> None:
    args = parse_options(__doc__, utterances=40, seconds=3.0, k=6, repeats=3, threads=1)
    sr = 16000
    rng = np.random.default_rng(0)
    clips = []
    for _ in range(args.utterances):
        n = int(rng.uniform(0.8, 1.2) * args.seconds * sr)
        t = np.arange(n) / sr
        clips.append(0.3 * rng.standard_normal(n) * (1 + 0.8 * np.sin(2 * np.pi * rng.uniform(2, 8) * t)))
    audio_s = sum(len(c) for c in clips) / sr
    tensors = [torch.from_numpy(c) for c in clips]
    fes = {f: SDFBFeatures(feature=f, num_differentiations=args.k) for f in ("cf", "cm", "cf_cm")}

    def kernel():
        for x in tensors:
            sd_filterbank(x, sr, 80, args.k)

    def frontend(fe):
        return lambda: [fe(c) for c in clips]

    def numpy_pipeline():
        return [numpy_post(sd_filterbank(x, sr, 80, args.k).numpy(), fes["cf_cm"]) for x in tensors]

    candidates = {"kernel": kernel, **{f: frontend(fe) for f, fe in fes.items()}, "numpy post": numpy_pipeline}
    worst = max(float(np.abs(a - b).max()) for a, b in zip(numpy_pipeline()[:4], frontend(fes["cf_cm"])()[:4]))
    for fn in candidates.values():  # warm: kernel built, operators cached, memory pooled
        fn()
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    best = {name: min(v) for name, v in times.items()}
    print(f"{args.utterances} utterances, {audio_s:.1f} s of 16 kHz audio, k = {args.k}, {torch.get_num_threads()} "
          f"torch thread(s), best of {args.repeats} alternating rounds")
    for name, t in best.items():
        print(f"  {name:>10}: {t:.3f} s  ratio to kernel {t / best['kernel']:5.2f}  x real time {audio_s / t:6.1f}")
    print(f"numpy post vs ours (cf_cm, first 4 utterances): max abs difference {worst:.1e}")


if __name__ == "__main__":
    main()
