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
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, recall_score
from sklearn.model_selection import GridSearchCV, GroupKFold, ParameterGrid, StratifiedKFold
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
    """A progress bar over a grid search's fits (candidates x folds) with its time left.

    GridSearchCV runs its fits through ``sklearn.utils.parallel.Parallel`` (joblib), whose
    ``print_progress`` is called in this process after each finished batch of fits, with
    ``n_completed_tasks``, whatever the backend or ``n_jobs``; while the bar is open that call
    moves the bar instead of printing (what the fits compute is unchanged).
    """
    from sklearn.utils.parallel import Parallel
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="fit", disable=not enabled, mininterval=1.0, smoothing=0.1)
    original = Parallel.__dict__.get("print_progress")

    def print_progress(self) -> None:
        bar.update(min(self.n_completed_tasks, total) - bar.n)

    Parallel.print_progress = print_progress
    try:
        yield bar
    finally:
        if original is None:
            del Parallel.print_progress
        else:
            Parallel.print_progress = original
        bar.close()


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
) -> GridSearchCV:
    """Fit ``GridSearchCV`` (macro recall, refit on all training rows) for one classifier.

    ``groups`` (the training rows' speakers) makes the inner folds speaker-independent
    (``GroupKFold``); without it the folds are sklearn's default for classifiers
    (``StratifiedKFold``, unshuffled), as in the notebook (``cv=5``).
    """
    pipeline, grid_spec = param_grid(classifier, grid, seed)
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < cv_folds:
            raise ValueError(f"grouped inner folds: {n_groups} training speakers for {cv_folds} folds")
        cv = GroupKFold(n_splits=cv_folds)
    else:
        cv = StratifiedKFold(n_splits=cv_folds)
    # the bar replaces GridSearchCV's own lines (verbose 1-2); verbose >= 3 keeps them as well
    search = GridSearchCV(clone(pipeline), grid_spec, scoring="recall_macro", cv=cv, n_jobs=n_jobs,
                          verbose=verbose if verbose >= 3 else 0, error_score="raise")
    total = len(ParameterGrid(grid_spec)) * cv_folds
    with warnings.catch_warnings(record=True) as caught, fit_progress(total, f"{classifier} grid", enabled=verbose >= 1):
        warnings.simplefilter("always", ConvergenceWarning)
        search.fit(x_train, y_train, **({"groups": groups} if groups is not None else {}))
    converge = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    if converge:
        log.info("%s: %d fits stopped at max_iter before converging (library default max_iter, as the notebook)", classifier, converge)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return search


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
