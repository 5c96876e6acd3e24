"""Time EM of a diagonal GMM: scikit-learn against the torch EM (CPU, and a GPU if asked).

    python bench/bench_gmm.py [--frames 50000] [--dim 60] [--components 64 512] [--iters 10]
                              [--device cuda] [--repeats 2]

Both start from the same k-means initialisation (scikit-learn's ``KMeans``, timed once and
shown apart) and run ``--iters`` EM iterations (``tol=0``, so the count is fixed); the times
are of the EM iterations alone (fit time minus the initialisation), best of ``--repeats``.
Prints the ratio sklearn / torch and the largest difference of the fitted means. Data: random
frames of a few shifted Gaussians, the size of ASVspoof's CF/CM features (60-240 values).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from audioexp.backends.gmm_torch import TorchGaussianMixture


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50000)
    parser.add_argument("--dim", type=int, default=60)
    parser.add_argument("--components", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None, help="also run the torch EM here (e.g. cuda)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((args.frames // 4, args.dim)) + s for s in (-2, 0, 1, 3)])
    print(f"{len(x)} frames x {args.dim}, {args.iters} EM iterations, torch threads {torch.get_num_threads()}")
    for k in args.components:
        init_s, _ = _best(lambda: TorchGaussianMixture(k, random_state=0).initial_parameters(x), 1)
        sk_s, sk = _best(lambda: GaussianMixture(k, covariance_type="diag", max_iter=args.iters, tol=0.0,
                                                 random_state=0).fit(x), args.repeats)
        runs = {"torch cpu": "cpu"} | ({f"torch {args.device}": args.device} if args.device else {})
        print(f"{k} components: k-means init {init_s:.2f} s; EM: sklearn {sk_s - init_s:.2f} s")
        for name, device in runs.items():
            def fit(device=device):
                gmm = TorchGaussianMixture(k, max_iter=args.iters, tol=0.0, random_state=0, device=device).fit(x)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                return gmm

            t_s, ours = _best(fit, args.repeats)
            em = max(t_s - init_s, 1e-9)
            print(f"  {name:>11}: EM {em:.2f} s  ratio {(sk_s - init_s) / em:5.1f}x  "
                  f"max |means - sklearn| {np.abs(ours.means_ - sk.means_).max():.1e}")


if __name__ == "__main__":
    main()
