"""Time the spatially differentiated filterbank against its direct computation.

    python bench/bench_sd_filterbank.py [--seconds 4] [--batch 1 8] [--k 0 2 6] [--repeats 5]
                                        [--threads 1 2] [--device cuda]

Reference: one ``scipy.signal.lfilter`` per filter (80), then the ``k`` differences in NumPy
(``sd_filterbank_reference``; single-threaded, as lfilter is). Ours, float64, each timed in the
same alternating rounds as the reference (the machine may be shared: compare ratios, not
seconds), best of ``repeats``:

- ``compiled tN``: the C++ kernel with N threads (``implementation="compiled"``) as a caller
  gets it: a new output each call, whose memory is recycled from dropped outputs (the output pool);
- ``fresh tN``: the same with the pool off, so every output is new memory from the operating
  system (its first touch, the pages being zeroed, is then part of the time);
- ``reused tN``: writing into one output passed as ``out=``;
- ``blas``: the chunked-recurrence fallback (BLAS one thread);
- ``--device cuda``: the torch path on the GPU (input moved there before timing, output left
  there, synchronised), against the same CPU reference.

Prints, per batch and ``k``, each time, its ratio to the reference, the real-time factor of the
fastest (seconds of compute per second of audio) and the largest error relative to the
reference's peak. Untimed calls of each (``--warmup`` seconds) precede the timing: operators and
kernel are built and cached once per process, and the first two-thread calls of a process run
slower (about 0.3 s of them on our machine). Measured numbers: experiments/asvspoof2017.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import importlib

from audioexp.features.sd_filterbank import sd_filterbank, sd_filterbank_reference

POOL = importlib.import_module("audioexp.features.sd_filterbank").OUTPUT_POOL


def _without_pool(fn):
    def call():
        kept, POOL.max_bytes = POOL.max_bytes, 0
        try:
            return fn()
        finally:
            POOL.max_bytes = kept
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--k", type=int, nargs="+", default=[0, 2, 6])
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of untimed calls of each first")
    parser.add_argument("--no-blas", action="store_true", help="skip the BLAS fallback")
    parser.add_argument("--device", default=None, help="also time the torch path on this device (e.g. cuda)")
    args = parser.parse_args()
    sr = 16000
    rng = np.random.default_rng(0)
    print(f"{args.seconds:g}-s utterances at {sr} Hz, 80 filters, float64, best of {args.repeats} alternating "
          f"rounds, {torch.get_num_threads()} torch threads available")
    for batch in args.batch:
        x = rng.standard_normal((batch, int(args.seconds * sr)))
        xt = torch.from_numpy(x)
        audio_s = batch * args.seconds
        for k in args.k:
            candidates = {}
            for t in args.threads:
                candidates[f"compiled t{t}"] = lambda t=t: sd_filterbank(xt, sr, num_differentiations=k,
                                                                        implementation="compiled", num_threads=t)
                candidates[f"fresh t{t}"] = _without_pool(candidates[f"compiled t{t}"])
                buf = torch.empty(batch, 80, x.shape[1], dtype=torch.float64)
                buf.fill_(0.0)
                candidates[f"reused t{t}"] = lambda t=t, buf=buf: sd_filterbank(
                    xt, sr, num_differentiations=k, implementation="compiled", num_threads=t, out=buf)
            if not args.no_blas:
                candidates["blas"] = lambda: sd_filterbank(xt, sr, num_differentiations=k, implementation="blas")
            if args.device:
                xd = xt.to(args.device)
                sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

                def on_device(xd=xd, sync=sync):
                    y = sd_filterbank(xd, sr, num_differentiations=k, implementation="torch")
                    sync()
                    return y

                candidates[f"torch {args.device}"] = on_device

            for fn in candidates.values():  # steady state: the first calls of a process are slower
                t_end = time.perf_counter() + args.warmup
                while time.perf_counter() < t_end:
                    fn()
            expected = sd_filterbank_reference(x, sr, num_differentiations=k)
            peak = np.abs(expected).max()
            errors = {name: float(np.abs(fn().cpu().numpy() - expected).max() / peak) for name, fn in candidates.items()}
            del expected
            times = {"reference": [], **{name: [] for name in candidates}}
            for _ in range(args.repeats):
                t = time.perf_counter()
                sd_filterbank_reference(x, sr, num_differentiations=k)
                times["reference"].append(time.perf_counter() - t)
                for name, fn in candidates.items():
                    t = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t)
            best = {name: min(v) for name, v in times.items()}
            ref = best["reference"]
            print(f"batch {batch}, k {k}: reference {ref:.4f} s (RTF {ref / audio_s:.5f})")
            for name in candidates:
                print(f"  {name:>14}: {best[name]:.4f} s  ratio {ref / best[name]:5.1f}x  RTF {best[name] / audio_s:.5f}"
                      f"  max rel err {errors[name]:.1e}")


if __name__ == "__main__":
    main()
