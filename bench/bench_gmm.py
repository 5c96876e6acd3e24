"""Time EM of a diagonal GMM: scikit-learn against the torch EM (CPU, and a GPU if asked).

    python bench/bench_gmm.py [--frames 50000] [--dim 60] [--components 64 512] [--iters 10]
                              [--device cuda] [--repeats 2]

Both start from the same k-means initialisation (scikit-learn's ``KMeans``, computed once and
timed apart) and run ``--iters`` EM iterations; the times are of the EM iterations alone
(scikit-learn given the initial parameters, ``init_params="random_from_data"`` so that no
k-means runs, ``tol=0``; ours ``em_step`` in a loop), best of ``--repeats``.
Prints the ratio sklearn / torch and the largest difference of the fitted means. Data: random
frames of a few shifted Gaussians, the size of ASVspoof's CF/CM features (60-240 values).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from audioexp.backends.gmm_torch import TorchGaussianMixture, em_step


def _best(fn, repeats: int) -> tuple[float, object]:  # (seconds of the fastest call, its result)
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
        init_s, init = _best(lambda: TorchGaussianMixture(k, random_state=0).initial_parameters(x), 1)
        w0, m0, v0 = (t.numpy() for t in init)

        def sklearn_em():
            return GaussianMixture(k, covariance_type="diag", max_iter=args.iters, tol=0.0,
                                   init_params="random_from_data", weights_init=w0, means_init=m0,
                                   precisions_init=1.0 / v0, random_state=0).fit(x)

        sk_s, sk = _best(sklearn_em, args.repeats)
        print(f"{k} components: k-means init {init_s:.2f} s (shared); EM: sklearn {sk_s:.3f} s")
        for device in ["cpu"] + ([args.device] if args.device else []):
            def torch_em(device=device):
                xt = torch.as_tensor(x, device=device)
                w, m, v = (torch.as_tensor(a, device=device) for a in (w0, m0, v0))
                for _ in range(args.iters):
                    w, m, v, _ = em_step(xt, w, m, v)
                return m.cpu().numpy()

            t_s, means = _best(torch_em, args.repeats)
            print(f"  torch {device:>5}: EM {t_s:.3f} s  ratio {sk_s / t_s:6.1f}x  "
                  f"max |means - sklearn| {np.abs(means - sk.means_).max():.1e}")


if __name__ == "__main__":
    main()
