"""The EmoDB probe's paper grids: ours (``audioexp.probes.classifiers.grid_search``) against the
reference, plain ``GridSearchCV`` as the probe ran it before (sequential, ``n_jobs=None``), on
ComParE-shaped features; and what the quick grid gives up against the paper grid.

    python bench/bench_probe_grid.py                       # 2,000 dims, all three classifiers (~5 min on 2 cores)
    python bench/bench_probe_grid.py --dims 6373           # ComParE's size (the reference alone: ~9 min on 2 idle cores)
    python bench/bench_probe_grid.py --dims 6373 --classifiers svm --skip-quick

The features are **generated** (no EmoDB here): EmoDB's shape (535 utterances, its 7 class
sizes, 10 speakers) with openSMILE-like columns: heavy-tailed (Student t, 3 degrees of freedom),
scales from 1e-3 to 1e4, offsets, a speaker offset per column, low-rank nuisance shared by all
columns, and class means shifted in 5 % of the columns (rank 4). Then as the probe: per-speaker
standardisation, one seeded speaker split (3 test speakers), 5 stratified inner folds. Both
searches start from the same NumPy global RNG state (liblinear draws its seed from it).

Per classifier: wall and CPU seconds of each (CPU: every thread and worker process; on a shared
machine the steadier measure), their ratios, and whether the selected parameters, every
candidate's fold scores, the test predictions and the RNG state after the search are the same.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, recall_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from audioexp.probes.classifiers import CLASSIFIERS, describe_params, grid_search, param_grid
from audioexp.probes.functional import speaker_split, speaker_standardize

EMODB_CLASS_COUNTS = (127, 81, 46, 69, 71, 79, 62)  # anger, boredom, disgust, fear, happiness, neutral, sadness


def compare_like(n: int = 535, dim: int = 6373, classes: int = 7, speakers: int = 10, shift: float = 1.5, seed: int = 0):
    """Generated openSMILE-like functionals of EmoDB's shape: ``(x, labels, speakers)``."""
    rng = np.random.default_rng(seed)
    counts = np.array(EMODB_CLASS_COUNTS) if (n == 535 and classes == 7) else np.full(classes, n // classes)
    counts[-1] += n - counts.sum()
    y = rng.permutation(np.repeat(np.arange(classes), counts))
    spk = rng.permutation(np.arange(n) % speakers)
    cols = rng.choice(dim, max(1, dim // 20), replace=False)
    means = np.zeros((classes, dim))
    means[:, cols] = rng.normal(0, 1, (classes, 4)) @ rng.normal(0, 1, (4, len(cols))) * shift / 2
    nuisance = rng.normal(0, 1, (n, 30)) @ rng.normal(0, 1, (30, dim)) * 0.5
    x = rng.standard_t(3, (n, dim)) + nuisance + means[y] + rng.normal(0, 1, (speakers, dim))[spk]
    scale = 10.0 ** rng.uniform(-3, 4, dim)
    return x * scale + rng.normal(0, 5, dim) * scale, y, np.array([f"{s:02d}" for s in spk])


def reference_grid_search(classifier: str, x: np.ndarray, y: np.ndarray, grid: str = "paper", cv_folds: int = 5, seed: int = 0,
                          n_jobs: int | None = None) -> GridSearchCV:
    """The probe's grid search before this bench's change: plain GridSearchCV."""
    pipeline, grid_spec = param_grid(classifier, grid, seed)
    search = GridSearchCV(clone(pipeline), grid_spec, scoring="recall_macro", cv=StratifiedKFold(n_splits=cv_folds), n_jobs=n_jobs,
                          error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(x, y)


def _cpu_seconds() -> float:
    """CPU seconds of this process (all its threads) and of its finished child processes."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))


def _timed(fn, rng_seed: int):
    """``(result, wall seconds, CPU seconds, RNG state after)``. The CPU seconds include the joblib
    workers' (they are shut down to be counted): on a shared machine they say more than the wall
    time does."""
    from joblib.externals.loky import get_reusable_executor

    np.random.seed(rng_seed)  # the run's seed_everything
    cpu, start = _cpu_seconds(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    state = np.random.get_state()
    get_reusable_executor().shutdown(wait=True)
    return out, wall, _cpu_seconds() - cpu, state


def _same(a, b) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, default=2000)
    parser.add_argument("--utterances", type=int, default=535)
    parser.add_argument("--classifiers", default=",".join(CLASSIFIERS))
    parser.add_argument("--n-jobs", type=int, default=-1, help="ours (the reference: sequential, as before)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-quick", action="store_true")
    parser.add_argument("--progress", action="store_true", help="show our progress bars")
    args = parser.parse_args()
    classifiers = args.classifiers.split(",")

    x, y, speakers = compare_like(args.utterances, args.dims, seed=args.seed)
    x = speaker_standardize(x, speakers)
    train, test = speaker_split(speakers, 0.3, seed=args.seed)
    print(f"generated ComParE-like features: {x.shape[0]} utterances x {x.shape[1]} dims, 7 classes, "
          f"{len(np.unique(speakers))} speakers; {len(train)} training rows (5 stratified inner folds), {len(test)} test rows; "
          f"{os.cpu_count()} CPUs, ours n_jobs={args.n_jobs}, reference sequential")
    rows, totals = [], {"ours": 0.0, "reference": 0.0, "quick": 0.0, "ours_cpu": 0.0, "reference_cpu": 0.0}
    for clf in classifiers:
        ours, t_ours, cpu_ours, state_ours = _timed(lambda: grid_search(clf, x[train], y[train], grid="paper", n_jobs=args.n_jobs,
                                                              seed=args.seed, verbose=int(args.progress)), args.seed)
        pred = ours.predict(x[test])
        row = {"classifier": clf, "ours_s": t_ours, "ours_cpu": cpu_ours, "best": describe_params(ours.best_params_), "cv_uar": ours.best_score_,
               "uar": recall_score(y[test], pred, average="macro"), "acc": accuracy_score(y[test], pred)}
        totals["ours"] += t_ours
        totals["ours_cpu"] += cpu_ours
        if not args.skip_reference:
            ref, t_ref, cpu_ref, state_ref = _timed(lambda: reference_grid_search(clf, x[train], y[train], seed=args.seed), args.seed)
            totals["reference"] += t_ref
            totals["reference_cpu"] += cpu_ref
            row.update(ref_s=t_ref, ref_cpu=cpu_ref, same_params=describe_params(ref.best_params_) == row["best"] and ref.best_index_ == ours.best_index_,
                       same_scores=all(np.array_equal(ref.cv_results_[k], ours.cv_results_[k])
                                       for k in ["mean_test_score"] + [f"split{f}_test_score" for f in range(ours.n_splits_)]),
                       same_predictions=np.array_equal(ref.predict(x[test]), pred), same_rng=_same(state_ref, state_ours))
        if not args.skip_quick:
            quick, t_quick, _, _ = _timed(lambda: grid_search(clf, x[train], y[train], grid="quick", n_jobs=args.n_jobs, seed=args.seed,
                                                           verbose=0), args.seed)
            qpred = quick.predict(x[test])
            totals["quick"] += t_quick
            row.update(quick_s=t_quick, quick_best=describe_params(quick.best_params_), quick_cv_uar=quick.best_score_,
                       quick_uar=recall_score(y[test], qpred, average="macro"), quick_acc=accuracy_score(y[test], qpred))
        rows.append(row)
        print(row, flush=True)

    print("\n| classifier | reference wall s (CPU s) | ours wall s (CPU s) | ratio wall (CPU) | same params / fold scores / test predictions / RNG | best (paper) |")
    print("| --- | --- | --- | --- | --- | --- |")
    total = {"classifier": "all", "ours_s": totals["ours"], "ours_cpu": totals["ours_cpu"], "ref_s": totals["reference"], "ref_cpu": totals["reference_cpu"]}
    for r in rows + ([total] if len(rows) > 1 else []):
        same = "/".join("yes" if r[k] else "NO" for k in ("same_params", "same_scores", "same_predictions", "same_rng")) if "same_params" in r else ""
        has_ref = bool(r.get("ref_s"))
        ref = f"{r['ref_s']:.1f} ({r['ref_cpu']:.1f})" if has_ref else "-"
        ratio = f"{r['ref_s'] / r['ours_s']:.1f}x ({r['ref_cpu'] / r['ours_cpu']:.1f}x)" if has_ref else "-"
        print(f"| {r['classifier']} | {ref} | {r['ours_s']:.1f} ({r['ours_cpu']:.1f}) | {ratio} | {same} | {r.get('best', '')} |")
    if not args.skip_quick:
        print("\n| classifier | paper s | quick s | CV UAR paper / quick | test UAR paper / quick | test accuracy paper / quick | best (quick) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['classifier']} | {r['ours_s']:.1f} | {r['quick_s']:.1f} | {100 * r['cv_uar']:.1f} / {100 * r['quick_cv_uar']:.1f} | "
                  f"{100 * r['uar']:.1f} / {100 * r['quick_uar']:.1f} | {100 * r['acc']:.1f} / {100 * r['quick_acc']:.1f} | {r['quick_best']} |")
    if any(not all(r.get(k, True) for k in ("same_params", "same_scores", "same_predictions", "same_rng")) for r in rows):
        raise SystemExit("ours and the reference differ")


if __name__ == "__main__":
    main()
