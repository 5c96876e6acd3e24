"""Grid-searched scikit-learn classifiers scored by macro recall (UAR).

The grids are the EmoDB notebook's (``paper``) with the options that current scikit-learn
removed replaced by their equivalents, and a small ``quick`` grid for tests and first looks:

- LogisticRegression: ``penalty`` is deprecated (1.8) -> ``l1_ratio`` 0 (l2) / 1 (l1);
  ``liblinear`` no longer fits multiclass problems -> ``OneVsRestClassifier`` around it (what
  ``multi_class='auto'`` did with liblinear in 2022). The notebook's l1 + newton-cg/lbfgs
  combinations always failed (scored NaN by GridSearchCV) and are left out: the valid
  candidates are the same 28 (2 x 7 multinomial l2, 2 x 7 one-vs-rest liblinear l1/l2).
- RandomForestClassifier: ``max_features='auto'`` was removed (1.3); for classifiers it
  meant ``'sqrt'``, already in the grid, so the grid keeps ``['sqrt', 'log2']`` (12 candidates
  instead of 18 with 6 duplicates). ``random_state`` is set (the notebook left it unseeded).
- SVC: unchanged, 6 x 8 x 4 = 192 candidates (gamma is ignored by the linear kernel).

:func:`grid_search` gives what ``GridSearchCV`` gives (every fold score, the best candidate, the
refitted model, the global RNG state after it), to the bit, in less time: the SVC candidates
through kernel matrices computed once, the fits in ``n_jobs`` worker processes
(``bench/bench_probe_grid.py`` times both and checks they agree).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, recall_score
from sklearn.model_selection import GroupKFold, ParameterGrid, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

log = logging.getLogger(__name__)

CLASSIFIERS = ("logistic_regression", "svm", "random_forest")
#: Row names of the notebook's results table.
DISPLAY_NAMES = {"logistic_regression": "Logistic Regression", "svm": "Support Vector Machine", "random_forest": "Random Forest Classification"}
GRIDS = ("paper", "quick")


def _logistic_grid(cs: list[float], paper: bool) -> list[dict]:
    multinomial = [LogisticRegression(solver=s, l1_ratio=0.0) for s in (("newton-cg", "lbfgs") if paper else ("lbfgs",))]
    grid = [{"clf": multinomial, "clf__C": cs}]
    if paper:
        ovr = [OneVsRestClassifier(LogisticRegression(solver="liblinear", l1_ratio=r)) for r in (0.0, 1.0)]
        grid.append({"clf": ovr, "clf__estimator__C": cs})
    return grid


def param_grid(classifier: str, grid: str = "paper", seed: int = 0) -> tuple[Pipeline, list[dict]]:
    """The pipeline and GridSearchCV grid of one classifier.

    Returns
    -------
    (Pipeline, list of dict)
        A one-step pipeline ``clf`` and its grid (a list of sub-grids, as GridSearchCV takes).

    Examples
    --------
    >>> from sklearn.model_selection import ParameterGrid
    >>> [len(ParameterGrid(param_grid(c, "paper")[1])) for c in CLASSIFIERS]
    [28, 192, 12]
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    paper = grid == "paper"
    if classifier == "logistic_regression":
        cs = [float(c) for c in (np.logspace(-4, 2, 7) if paper else [0.01, 1.0, 100.0])]
        return Pipeline([("clf", LogisticRegression())]), _logistic_grid(cs, paper)
    if classifier == "svm":
        if paper:
            g = {"clf__C": [float(c) for c in np.logspace(-2, 3, 6)], "clf__gamma": [float(c) for c in np.logspace(-5, 2, 8)],
                 "clf__kernel": ["rbf", "poly", "sigmoid", "linear"]}
        else:
            g = {"clf__C": [1.0, 10.0], "clf__gamma": [1e-3], "clf__kernel": ["rbf", "linear"]}
        return Pipeline([("clf", SVC())]), [g]
    if classifier == "random_forest":
        if paper:
            g = {"clf__n_estimators": [50, 100, 200], "clf__max_features": ["sqrt", "log2"], "clf__bootstrap": [True, False]}
        else:
            g = {"clf__n_estimators": [100], "clf__max_features": ["sqrt"], "clf__bootstrap": [True]}
        return Pipeline([("clf", RandomForestClassifier(random_state=seed))]), [g]
    raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")


def describe_params(params: dict) -> dict[str, object]:
    """Best parameters as plain values (estimators by their own non-default parameters)."""
    out: dict[str, object] = {}
    for key, value in params.items():
        key = key.removeprefix("clf__").removeprefix("estimator__")
        if hasattr(value, "get_params"):
            inner = value.estimator if isinstance(value, OneVsRestClassifier) else value
            out["estimator"] = ("OneVsRest(" if isinstance(value, OneVsRestClassifier) else "") + type(inner).__name__ + (")" if isinstance(value, OneVsRestClassifier) else "")
            out["solver"] = getattr(inner, "solver", None)
            if hasattr(inner, "l1_ratio"):
                out["penalty"] = "l1" if inner.l1_ratio == 1.0 else "l2"
        else:
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


@dataclass
class ProbeResult:
    """One classifier on one train/test split."""

    classifier: str
    uar: float  # macro recall on the test rows
    accuracy: float
    cv_uar: float  # best mean macro recall of the inner cross-validation
    best_params: dict
    y_true: np.ndarray
    y_pred: np.ndarray
    test_speakers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: The grid search's best pipeline refitted on the training rows (``best_estimator_``):
    #: the model that made ``y_pred``. Not written to ``splits.json``; the run saves split 0's
    #: (:func:`audioexp.systems.probe_predictor.write_deployable_probe`).
    estimator: object | None = field(default=None, repr=False, compare=False)


@contextlib.contextmanager
def fit_progress(total: int, desc: str, enabled: bool = True):
    """A progress bar over a grid search's fits (candidates x folds), with the time left.

    Yields a tqdm bar that :func:`grid_search` moves as its tasks finish (a task's fits at
    once); tqdm shows ``elapsed<remaining`` (the time left from the recent rate, smoothing 0.1)
    and the rate in fits per second.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="fit", disable=not enabled, mininterval=1.0, smoothing=0.1)
    try:
        yield bar
    finally:
        bar.close()


@dataclass
class GridSearchResult:
    """What :func:`grid_search` returns: the attributes of a fitted ``GridSearchCV`` that the
    probe reads, with the same values (``cv_results_`` holds ``params``, ``split<k>_test_score``,
    ``mean_test_score``, ``std_test_score`` and ``rank_test_score``)."""

    cv: object
    cv_results_: dict
    best_index_: int
    best_score_: float
    best_params_: dict
    best_estimator_: object
    n_splits_: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.best_estimator_.predict(x)


_SVC_KERNELS = ("linear", "poly", "rbf", "sigmoid")


def _global_draws(estimator, y: np.ndarray) -> int | None:
    """How many draws from NumPy's global RNG (``np.random``) fitting ``estimator`` on labels
    ``y`` makes, as scikit-learn does it; None where not known.

    libsvm (SVC) draws one seed per fit; liblinear one per binary problem (``OneVsRest``: one per
    class; the l1 solver's coordinate order depends on it); the other solvers none. An estimator
    whose ``random_state`` is set draws nothing from the global RNG.
    """
    from sklearn.svm._base import BaseLibSVM

    clf = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(clf, OneVsRestClassifier):
        n_classes = len(np.unique(y))
        inner = _global_draws(clf.estimator, y)
        return None if inner is None else inner * (1 if n_classes <= 2 else n_classes)
    if isinstance(clf, BaseLibSVM):
        return 1 if clf.random_state is None else 0
    if isinstance(clf, LogisticRegression):
        return 1 if clf.solver == "liblinear" and clf.random_state is None else 0
    if isinstance(clf, RandomForestClassifier):
        return 0 if clf.random_state is not None else None
    return 0 if getattr(clf, "random_state", 0) is not None else None


@contextlib.contextmanager
def _global_rng_state(state):
    """Run with NumPy's global RNG in ``state`` (None: as it is), then put the caller's back."""
    if state is None:
        yield
        return
    saved = np.random.get_state()
    np.random.set_state(state)
    try:
        yield
    finally:
        np.random.set_state(saved)


@contextlib.contextmanager
def _counted_warnings(counts: dict):
    """Count ConvergenceWarnings into ``counts['converge']``; keep the others in ``counts['other']``
    (a worker process's warnings do not reach the caller by themselves)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    counts["converge"] = counts.get("converge", 0) + sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    counts.setdefault("other", []).extend((w.message, w.category, w.filename, w.lineno)
                                          for w in caught if not issubclass(w.category, ConvergenceWarning))


def _fit_one(pipeline, params: dict, x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, rng_state, scorer,
             where: tuple[int, int]):
    """One candidate on one fold, as ``GridSearchCV`` fits it: a clone with the candidate's
    (cloned) parameters, fitted on the fold's training rows, scored on its validation rows.
    Returns ``([([candidate], fold, score)], warning counts)``."""
    counts: dict = {}
    with _counted_warnings(counts), _global_rng_state(rng_state):
        estimator = clone(pipeline).set_params(**clone(params, safe=False))
        estimator.fit(x[train], y[train])
        score = scorer(estimator, x[test], y[test])
    return [([where[0]], where[1], score)], counts


def _row_dots(x: np.ndarray) -> np.ndarray:
    """``dots[i, j]``: the dot product of rows i and j by the BLAS ``ddot`` libsvm calls (so
    equal to libsvm's to the last bit, which a matrix product is not)."""
    from scipy.linalg.blas import ddot

    n = len(x)
    dots = np.empty((n, n))
    for i in range(n):
        xi = x[i]
        for j in range(i, n):
            dots[i, j] = dots[j, i] = ddot(xi, x[j])
    return dots


def _row_sq_distances(x: np.ndarray) -> np.ndarray:
    """``d2[i, j]``: the squared distance of rows i and j as libsvm's RBF prediction computes it
    (``ddot(x_i - x_j, x_i - x_j)``)."""
    from scipy.linalg.blas import ddot

    n = len(x)
    d2 = np.zeros((n, n))
    for i in range(n - 1):
        diff = x[i + 1:] - x[i]
        for k in range(n - 1 - i):
            d2[i, i + 1 + k] = d2[i + 1 + k, i] = ddot(diff[k], diff[k])
    return d2


_libm_exp = np.vectorize(math.exp, otypes=[np.float64])  # libsvm's exp and tanh are the C
_libm_tanh = np.vectorize(math.tanh, otypes=[np.float64])  # library's; NumPy's differ by an ulp


def _svc_kernels(kernel: str, gamma: float, degree: int, coef0: float, dots: np.ndarray, d2: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The (training, prediction) kernel matrices over all rows, libsvm's arithmetic
    (``Kernel::kernel_*`` while fitting, ``Kernel::k_function`` while predicting)."""
    if kernel == "linear":
        return dots, dots
    if kernel == "rbf":
        sq = np.diag(dots)
        return _libm_exp(-gamma * (sq[:, None] + sq[None, :] - 2 * dots)), _libm_exp(-gamma * d2)
    base = gamma * dots + coef0
    if kernel == "sigmoid":
        k = _libm_tanh(base)
        return k, k
    k, power, t = np.ones_like(base), base, degree  # libsvm's powi
    while t > 0:
        if t % 2 == 1:
            k = k * power
        power = power * power
        t //= 2
    return k, k


def _svc_task(models: list[tuple[object, list[int]]], kernel: tuple, dots: np.ndarray, d2: np.ndarray | None,
              y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], scorer):
    """Every SVC sharing one kernel matrix, on every fold, with ``kernel='precomputed'``: the
    same libsvm problem, so the same model and predictions as SVC on the rows."""
    counts: dict = {}
    out = []
    with _counted_warnings(counts):
        k_fit, k_pred = _svc_kernels(*kernel, dots, d2)
        for svc, indices in models:
            for f, (train, test) in enumerate(folds):
                model = clone(svc).fit(k_fit[np.ix_(train, train)], y[train])
                out.append((indices, f, scorer(model, k_pred[np.ix_(test, train)], y[test])))
    return out, counts


def _svc_plan(pipeline, candidates: list[dict]) -> dict | None:
    """Candidates of a one-step SVC pipeline grouped by kernel matrix, each group's distinct
    models (precomputed-kernel SVCs) with the candidates they stand for (``gamma`` is unused by
    the linear kernel); None if some candidate cannot be computed so."""
    if len(pipeline.steps) != 1 or not isinstance(pipeline[-1], SVC):
        return None
    plan: dict = {}
    for index, params in enumerate(candidates):
        svc = clone(pipeline).set_params(**clone(params, safe=False))[-1]
        if svc.kernel not in _SVC_KERNELS or svc.probability is True or (svc.kernel != "linear" and not isinstance(svc.gamma, (int, float))):
            return None
        kernel = ("linear", 0.0, 0, 0.0) if svc.kernel == "linear" else (svc.kernel, float(svc.gamma), int(svc.degree), float(svc.coef0))
        model = clone(svc).set_params(kernel="precomputed", gamma="scale", degree=3, coef0=0.0)
        models = plan.setdefault(kernel, {})
        key = repr(sorted(model.get_params().items()))
        models.setdefault(key, (model, []))[1].append(index)
    return {kernel: list(models.values()) for kernel, models in plan.items()}


def _svc_precomputed_agrees(pipeline, plan: dict, x: np.ndarray, y: np.ndarray, dots: np.ndarray, d2: np.ndarray,
                            folds: list, candidates: list[dict]) -> bool:
    """One candidate per kernel type fitted both ways on the first fold: equal decision values,
    bit for bit (else the BLAS or libm here is not the one libsvm uses, and the rows are fitted)."""
    train, test = folds[0]
    seen = set()
    for kernel, models in plan.items():
        if kernel[0] in seen:
            continue
        seen.add(kernel[0])
        svc, indices = models[0]
        k_fit, k_pred = _svc_kernels(*kernel, dots, d2)
        with _global_rng_state(np.random.get_state()):  # the caller's RNG untouched (SVC.fit draws a seed)
            plain = clone(pipeline).set_params(**clone(candidates[indices[0]], safe=False)).fit(x[train], y[train])
            fast = clone(svc).fit(k_fit[np.ix_(train, train)], y[train])
        if not np.array_equal(plain.decision_function(x[test]), fast.decision_function(k_pred[np.ix_(test, train)])):
            return False
    return True


def search_results(scores: np.ndarray, candidates: list[dict]) -> tuple[dict, int]:
    """``GridSearchCV``'s ``cv_results_`` test scores and best index from the (candidates,
    folds) scores, with its arithmetic (mean, population std, 'min' ranks, the first best)."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    results: dict = {"params": candidates}
    for f in range(scores.shape[1]):
        results[f"split{f}_test_score"] = scores[:, f]
    means = np.average(scores, axis=1)
    results["mean_test_score"] = means
    results["std_test_score"] = np.sqrt(np.average((scores - means[:, np.newaxis]) ** 2, axis=1))
    results["rank_test_score"] = np.asarray(rankdata(-means, method="min"), dtype=np.int32)
    return results, int(results["rank_test_score"].argmin())


def grid_search(
    classifier: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    grid: str = "paper",
    cv_folds: int = 5,
    groups: np.ndarray | None = None,
    n_jobs: int | None = None,
    seed: int = 0,
    verbose: int = 1,
) -> GridSearchResult:
    """``GridSearchCV`` (macro recall, refit on all training rows) for one classifier, faster.

    The same fits and scores as ``GridSearchCV(pipeline, grid, scoring='recall_macro', cv=...,
    error_score='raise')`` run with ``n_jobs=None``, to the bit (``tests/unit/test_probe.py``
    checks that), computed so:

    - SVC: each fold's kernel matrix is taken from one matrix of the training rows' dot
      products (and, for rbf prediction, squared distances), computed once with the BLAS call
      and libm functions libsvm uses, and the candidates are fitted with
      ``kernel='precomputed'``: the same libsvm problem without its 6,373-long dot products.
      The linear kernel ignores ``gamma``: its candidates are fitted once per ``C``. Checked at
      run time on one fold per kernel type; where the decision values differ at all, the SVC
      candidates are fitted on the rows instead.
    - every other candidate: fitted on the rows as GridSearchCV does; where a fit draws from
      NumPy's global RNG (liblinear's seed), it draws from the state the sequential search would
      have at that fit, and the caller's RNG ends where that search would leave it.
    - the fits run in ``n_jobs`` joblib workers (None: 1; -1: every core), with a progress bar
      (``verbose >= 1``) that shows the time left.

    ``groups`` (the training rows' speakers) makes the inner folds speaker-independent
    (``GroupKFold``); without it the folds are sklearn's default for classifiers
    (``StratifiedKFold``, unshuffled), as in the notebook (``cv=5``).
    """
    from sklearn.metrics import get_scorer
    from sklearn.utils.parallel import Parallel, delayed

    pipeline, grid_spec = param_grid(classifier, grid, seed)
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < cv_folds:
            raise ValueError(f"grouped inner folds: {n_groups} training speakers for {cv_folds} folds")
        cv = GroupKFold(n_splits=cv_folds)
    else:
        cv = StratifiedKFold(n_splits=cv_folds)
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    folds = list(cv.split(x_train, y_train, groups))
    candidates = list(ParameterGrid(grid_spec))
    scorer = get_scorer("recall_macro")
    scores = np.full((len(candidates), len(folds)), np.nan)

    # the global RNG draws of the sequential search, in its order (candidates, then folds)
    draws = [[_global_draws(clone(pipeline).set_params(**clone(p, safe=False)), y_train[train]) for train, _ in folds] for p in candidates]
    replayable = all(d is not None for row in draws for d in row)
    svc_plan = _svc_plan(pipeline, candidates) if replayable else None
    if svc_plan is not None:
        rows = np.ascontiguousarray(x_train, dtype=np.float64)  # what libsvm fits on
        dots = _row_dots(rows)
        d2 = _row_sq_distances(rows) if any(k[0] == "rbf" for k in svc_plan) else None
        if not _svc_precomputed_agrees(pipeline, svc_plan, x_train, y_train, dots, d2, folds, candidates):
            log.warning("%s: precomputed kernels differ from libsvm's here; fitting every candidate on the rows", classifier)
            svc_plan = None
    tasks = []
    if svc_plan is not None:
        for kernel, models in svc_plan.items():
            tasks.append(delayed(_svc_task)(models, kernel, dots, d2 if kernel[0] == "rbf" else None, y_train, folds, scorer))
    for c, params in enumerate(candidates):
        for f, (train, test) in enumerate(folds):
            state = None
            if replayable and draws[c][f]:
                state = np.random.get_state()
                for _ in range(draws[c][f]):
                    np.random.randint(np.iinfo("i").max)  # sklearn's draw: check_random_state(None).randint(...)
            if svc_plan is None:
                tasks.append(delayed(_fit_one)(pipeline, params, x_train, y_train, train, test, state, scorer, (c, f)))
    if not replayable:  # draws not known: the fits run in order in this process, as GridSearchCV's
        n_jobs = None
    counts: dict = {"converge": 0, "other": []}
    with fit_progress(len(candidates) * len(folds), f"{classifier} grid", enabled=verbose >= 1) as bar:
        for entries, task_counts in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks):
            for indices, f, score in entries:
                scores[indices, f] = score
            bar.update(sum(len(indices) for indices, _, _ in entries))
            counts["converge"] += task_counts.get("converge", 0)
            counts["other"].extend(task_counts.get("other", []))
    results, best = search_results(scores, candidates)
    best_params = candidates[best]
    with _counted_warnings(counts):  # refit on every training row, as GridSearchCV(refit=True)
        best_estimator = clone(pipeline).set_params(**clone(best_params, safe=False)).fit(x_train, y_train)
    if counts["converge"]:
        log.info("%s: %d fits stopped at max_iter before converging (library default max_iter, as the notebook)", classifier, counts["converge"])
    for message, category, filename, lineno in counts["other"]:
        warnings.warn_explicit(message, category, filename, lineno)
    return GridSearchResult(cv=cv, cv_results_=results, best_index_=best, best_score_=float(results["mean_test_score"][best]),
                            best_params_=best_params, best_estimator_=best_estimator, n_splits_=len(folds))


def fit_and_score(
    classifier: str,
    x: np.ndarray,
    y: np.ndarray,
    train_index: np.ndarray,
    test_index: np.ndarray,
    speakers: np.ndarray | None = None,
    grouped_inner_folds: bool = False,
    **search_kwargs,
) -> ProbeResult:
    """Grid-search on the training rows, then macro recall and accuracy on the test rows
    (the fitted best pipeline is kept in :attr:`ProbeResult.estimator`)."""
    start = time.perf_counter()
    groups = np.asarray(speakers)[train_index] if grouped_inner_folds else None
    search = grid_search(classifier, x[train_index], y[train_index], groups=groups, **search_kwargs)
    y_pred = search.predict(x[test_index])
    y_true = y[test_index]
    return ProbeResult(
        classifier=classifier,
        uar=float(recall_score(y_true, y_pred, average="macro")),
        accuracy=float(accuracy_score(y_true, y_pred)),
        cv_uar=float(search.best_score_),
        best_params=describe_params(search.best_params_),
        y_true=y_true,
        y_pred=y_pred,
        test_speakers=sorted(set(np.asarray(speakers)[test_index].tolist())) if speakers is not None else [],
        seconds=time.perf_counter() - start,
        estimator=search.best_estimator_,
    )


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> tuple[str, dict]:
    """sklearn's classification report as text and as a dict, every class listed."""
    labels = list(range(len(class_names)))
    kwargs = dict(labels=labels, target_names=class_names, zero_division=0)
    return classification_report(y_true, y_pred, **kwargs), classification_report(y_true, y_pred, output_dict=True, **kwargs)


def pooled_confusion(results: list[ProbeResult], num_classes: int) -> np.ndarray:
    """Confusion matrix (true x predicted) summed over the splits of one classifier."""
    return sum(confusion_matrix(r.y_true, r.y_pred, labels=list(range(num_classes))) for r in results)
