"""The VoxCeleb front-end (log-power spectrogram + MVN) against librosa, on the same clips.

Ours: ``LogPowerSpectrogram`` on a padded batch of utterances (with their lengths, as
evaluation batches are). Reference: librosa per clip (``librosa.stft`` with the same
window, hop and FFT, ``log(|X|^2 + eps)``, per-frequency mean/variance normalisation in
NumPy). Prints clips per second for both and the ratio.

    python bench/bench_spectrogram.py [--clips 64] [--min-seconds 4] [--max-seconds 8] [--threads 2]
"""

from __future__ import annotations

import time

import librosa
import numpy as np
import torch

from _options import parse_options
from audioexp.features import LogPowerSpectrogram


def librosa_reference(y: np.ndarray) -> np.ndarray:
    S = librosa.stft(y, n_fft=320, hop_length=160, win_length=320, window="hamming", center=True, pad_mode="reflect")
    logp = np.log(np.abs(S) ** 2 + 1e-10)
    return (logp - logp.mean(axis=1, keepdims=True)) / (logp.std(axis=1, keepdims=True) + 1e-5)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    args = parse_options(__doc__, clips=64, min_seconds=4.0, max_seconds=8.0, threads=2, repeats=3)

    rng = np.random.default_rng(0)
    lengths = (rng.uniform(args.min_seconds, args.max_seconds, args.clips) * 16000).astype(int)
    clips = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in lengths]
    batch = torch.zeros(args.clips, int(lengths.max()))
    for i, c in enumerate(clips):
        batch[i, : len(c)] = torch.from_numpy(c)
    lengths_t = torch.from_numpy(lengths)
    frontend = LogPowerSpectrogram(16000)

    with torch.no_grad():
        ours = frontend(batch, lengths_t)
    # same numbers first (float32 against float64, see tests/unit/test_features.py)
    worst = max(
        float(np.abs(ours[i, 0, :, : 1 + n // 160].numpy() - librosa_reference(c.astype(np.float64))).max())
        for i, (c, n) in enumerate(zip(clips[:8], lengths[:8]))
    )

    def run_ours():
        with torch.no_grad():
            frontend(batch, lengths_t)

    def run_fixed():
        with torch.no_grad():
            frontend(batch[:, : 3 * 16000])

    def run_librosa():
        for c in clips:
            librosa_reference(c)

    def run_librosa_fixed():
        for c in clips:
            librosa_reference(c[: 3 * 16000])

    t_ours, t_ref = best_of(run_ours, args.repeats), best_of(run_librosa, args.repeats)
    t_fix, t_ref_fix = best_of(run_fixed, args.repeats), best_of(run_librosa_fixed, args.repeats)
    seconds = lengths.sum() / 16000
    print(f"{args.clips} clips, {seconds:.0f} s of audio, {args.threads} threads; max |ours - librosa| on 8 clips: {worst:.1e}")
    print(f"{'':34s}{'seconds':>9s}{'clips/s':>10s}{'x real time':>13s}")
    rows = [
        ("ours, variable lengths (masked)", t_ours, seconds),
        ("librosa per clip, variable", t_ref, seconds),
        ("ours, 3-s training crops (batched)", t_fix, args.clips * 3.0),
        ("librosa per clip, 3-s crops", t_ref_fix, args.clips * 3.0),
    ]
    for name, t, audio in rows:
        print(f"{name:34s}{t:9.3f}{args.clips / t:10.1f}{audio / t:13.0f}")
    print(f"ratio librosa / ours: variable lengths {t_ref / t_ours:.2f}x, 3-s crops {t_ref_fix / t_fix:.2f}x")


if __name__ == "__main__":
    main()
