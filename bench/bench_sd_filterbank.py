"""Time the spatially differentiated filterbank against its direct computation.

    python bench/bench_sd_filterbank.py [--seconds 4] [--batch 1] [--repeats 5]

Reference: one ``scipy.signal.lfilter`` per filter (80), then the ``k`` differences in
NumPy (``sd_filterbank_reference``). Ours: ``audioexp.features.sd_filterbank`` (chunked
linear recurrence, differences folded into the filters), float64, torch threads as set.
Prints the best-of-``repeats`` times, their ratio, the real-time factor (seconds of
compute per second of audio) and the largest error relative to the reference's peak.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from audioexp.features.sd_filterbank import sd_filterbank, sd_filterbank_reference


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, nargs="+", default=[0, 2, 6])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sr = 16000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, int(args.seconds * sr)))
    xt = torch.from_numpy(x)
    audio_s = args.batch * args.seconds
    print(f"{args.batch} x {args.seconds:g} s of audio at {sr} Hz, 80 filters, float64, torch threads {args.threads}")
    print(f"{'k':>2} {'reference s':>12} {'ours s':>8} {'ratio':>6} {'RTF ours':>9} {'RTF ref':>8} {'max rel err':>12}")
    for k in args.k:
        ref = sd_filterbank_reference(x, sr, num_differentiations=k)
        ours = sd_filterbank(xt, sr, num_differentiations=k).numpy()
        err = float(np.abs(ours - ref).max() / np.abs(ref).max())
        t_ref = best_time(lambda: sd_filterbank_reference(x, sr, num_differentiations=k), args.repeats)
        t_ours = best_time(lambda: sd_filterbank(xt, sr, num_differentiations=k), args.repeats)
        print(f"{k:>2} {t_ref:12.4f} {t_ours:8.4f} {t_ref / t_ours:6.1f} {t_ours / audio_s:9.5f} {t_ref / audio_s:8.5f} {err:12.2e}")


if __name__ == "__main__":
    main()
