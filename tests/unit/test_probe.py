"""Probe functions: per-speaker standardisation, speaker splits, grids, scoring, tables."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.model_selection import GridSearchCV, GroupKFold, ParameterGrid, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from audioexp.probes.classifiers import CLASSIFIERS, fit_and_score, fit_progress, grid_search, param_grid, pooled_confusion
from audioexp.probes.functional import evaluation_splits, leave_one_speaker_out, speaker_split, speaker_standardize
from audioexp.systems.embedding_probe import markdown_table, summarize


def _speakers(rng, n_speakers=6, per=12):
    return np.repeat([f"{s:02d}" for s in rng.permutation(np.arange(3, 3 + n_speakers))], per)


def test_speaker_standardize_every_column_of_every_speaker():
    rng = np.random.default_rng(0)
    speakers = rng.permutation(_speakers(rng))
    x = rng.normal(5.0, 3.0, (len(speakers), 9)) * rng.uniform(0.01, 100, 9)
    x[speakers == speakers[0], 4] = 7.5  # constant within one speaker
    x[:, 7] = 1e6  # constant for everybody
    out = speaker_standardize(x, speakers)
    assert np.isfinite(out).all()
    for s in np.unique(speakers):
        block = out[speakers == s]
        assert np.abs(block.mean(axis=0)).max() < 1e-10
        var = block.var(axis=0)
        constant = np.ptp(x[speakers == s], axis=0) == 0
        np.testing.assert_allclose(var[~constant], 1.0, atol=1e-10)
        assert np.all(block[:, constant] == 0.0)
        # the reference: StandardScaler fitted on the speaker's rows (the notebook)
        np.testing.assert_allclose(block, StandardScaler().fit_transform(x[speakers == s]), atol=1e-9)


def test_speaker_standardize_refuses_nan_and_misaligned_input():
    x = np.ones((4, 3))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2, column 1"):
        speaker_standardize(x, ["a", "a", "b", "b"])
    with pytest.raises(ValueError, match="n speakers"):
        speaker_standardize(np.ones((4, 3)), ["a", "b"])


def test_speaker_split_is_disjoint_seeded_and_the_same_for_any_rows():
    rng = np.random.default_rng(1)
    speakers = _speakers(rng, n_speakers=10, per=5)
    train, test = speaker_split(speakers, 0.3, seed=4)
    assert set(speakers[train]).isdisjoint(speakers[test])
    assert len(set(speakers[test])) == 3 and len(train) + len(test) == len(speakers)
    # the split depends on the speaker set and the seed only: a shuffled copy of the rows
    # (another embedder's row order) gets the same test speakers
    perm = rng.permutation(len(speakers))
    _, test2 = speaker_split(speakers[perm], 0.3, seed=4)
    assert set(speakers[perm][test2]) == set(speakers[test])
    draws = {tuple(sorted(set(speakers[speaker_split(speakers, 0.3, seed=s)[1]]))) for s in range(10)}
    assert len(draws) > 3
    with pytest.raises(ValueError, match="test speakers"):
        speaker_split(speakers, 0.05)


def test_loso_and_repeated_splits():
    rng = np.random.default_rng(2)
    speakers = _speakers(rng, n_speakers=5, per=3)
    folds = leave_one_speaker_out(speakers)
    assert len(folds) == 5
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(15))
    for train, test in folds:
        assert len(set(speakers[test])) == 1 and speakers[test[0]] not in set(speakers[train])
    repeated = evaluation_splits(speakers, "repeated", 0.4, seed=0, repeats=3)
    assert len(repeated) == 3 and all(set(speakers[a]).isdisjoint(speakers[b]) for a, b in repeated)
    with pytest.raises(ValueError, match="protocol"):
        evaluation_splits(speakers, "kfold")


def test_paper_grids_have_the_notebooks_valid_candidates():
    sizes = {c: len(ParameterGrid(param_grid(c, "paper")[1])) for c in CLASSIFIERS}
    # LR: 2 penalties x 7 C x 3 solvers = 42 in the notebook, of which l1 with newton-cg/lbfgs
    # (14) always failed; RF: 'auto' (= 'sqrt') dropped
    assert sizes == {"logistic_regression": 28, "svm": 192, "random_forest": 12}
    grid = param_grid("svm", "paper")[1][0]
    np.testing.assert_allclose(grid["clf__C"], [0.01, 0.1, 1, 10, 100, 1000])
    np.testing.assert_allclose(grid["clf__gamma"], 10.0 ** np.arange(-5, 3))


def _blobs(seed=0, n_speakers=6, per_class=4, classes=3, shift=4.0):
    rng = np.random.default_rng(seed)
    speakers, labels, rows = [], [], []
    centres = rng.normal(0, shift, (classes, 5))
    for s in range(n_speakers):
        offset = rng.normal(0, 10, 5)  # a speaker effect that standardisation removes
        for c in range(classes):
            for _ in range(per_class):
                rows.append(centres[c] + offset + rng.normal(0, 1, 5))
                labels.append(c)
                speakers.append(f"{s:02d}")
    return np.array(rows), np.array(labels), np.array(speakers)


def test_fit_and_score_matches_sklearn_macro_recall():
    x, y, speakers = _blobs()
    x = speaker_standardize(x, speakers)
    train, test = speaker_split(speakers, 0.34, seed=0)
    for clf in CLASSIFIERS:
        result = fit_and_score(clf, x, y, train, test, speakers, grid="quick", verbose=0)
        assert result.uar == pytest.approx(recall_score(result.y_true, result.y_pred, average="macro"))
        assert result.uar > 0.9, (clf, result.uar)
        assert set(result.test_speakers) == set(speakers[test])
    assert pooled_confusion([result, result], 3).sum() == 2 * len(test)


def test_grouped_inner_folds_keep_speakers_apart():
    x, y, speakers = _blobs(n_speakers=6)
    x = speaker_standardize(x, speakers)
    search = grid_search("logistic_regression", x, y, grid="quick", groups=speakers, verbose=0)
    assert isinstance(search.cv, GroupKFold)
    for tr, va in search.cv.split(x, y, speakers):
        assert set(speakers[tr]).isdisjoint(speakers[va])
    with pytest.raises(ValueError, match="training speakers"):
        grid_search("svm", x[:24], y[:24], grid="quick", groups=speakers[:24], verbose=0)


def test_paper_logistic_grid_fits_with_current_sklearn():
    """Every candidate of the paper's LR grid fits (error_score='raise')."""
    x, y, speakers = _blobs(n_speakers=4, per_class=3)
    x = speaker_standardize(x, speakers)
    search = grid_search("logistic_regression", x, y, grid="paper", cv_folds=2, verbose=0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_summary_and_markdown_table():
    x, y, speakers = _blobs()
    x = speaker_standardize(x, speakers)
    splits = evaluation_splits(speakers, "loso")
    results = [fit_and_score("svm", x, y, tr, te, speakers, grid="quick", verbose=0) for tr, te in splits[:3]]
    row = summarize("egemaps", "svm", results, "loso", 5)
    assert row["uar"] == pytest.approx(np.mean([r.uar for r in results]))
    assert row["uar_std"] == pytest.approx(np.std([r.uar for r in results]))
    table = markdown_table([row])
    assert "| egemaps |" in table and "Support Vector Machine" in table and "±" in table


def _random_problem(seed=0, n=84, dim=30, classes=4):
    """A small random problem with some class structure (heavy-tailed columns, standardised as
    the probe's are), so that candidates score differently."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.standard_t(3, (n, dim)) + rng.normal(0, 0.9, (classes, dim))[y] * (rng.random(dim) < 0.3)
    return (x - x.mean(axis=0)) / x.std(axis=0), y


def _plain_search(classifier, x, y, grid, cv_folds):
    """The probe's search before the fast one: plain GridSearchCV, sequential."""
    pipeline, spec = param_grid(classifier, grid)
    return GridSearchCV(pipeline, spec, scoring="recall_macro", cv=StratifiedKFold(cv_folds), error_score="raise").fit(x, y)


def _assert_same_search(ours, ref, x_test):
    assert ours.best_index_ == ref.best_index_ and repr(ours.best_params_) == repr(ref.best_params_)
    for key in ["mean_test_score", "std_test_score", "rank_test_score"] + [f"split{f}_test_score" for f in range(ref.n_splits_)]:
        np.testing.assert_array_equal(ours.cv_results_[key], ref.cv_results_[key], err_msg=key)
    assert ours.best_score_ == ref.best_score_
    np.testing.assert_array_equal(ours.predict(x_test), ref.predict(x_test))


def _searches(classifier, x, y, grid, cv_folds, **kwargs):
    """Ours and the plain search from the same global RNG state; also the states they leave."""
    np.random.seed(3)
    ours = grid_search(classifier, x, y, grid=grid, cv_folds=cv_folds, verbose=0, **kwargs)
    after_ours = np.random.get_state()[1].copy()
    np.random.seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = _plain_search(classifier, x, y, grid, cv_folds)
    return ours, ref, after_ours, np.random.get_state()[1].copy()


def test_svm_grid_search_equals_plain_gridsearchcv(monkeypatch):
    """Every kernel of the paper grid (precomputed kernel matrices, linear fitted once per C):
    the same fold scores, best candidate and predictions as GridSearchCV, bit for bit."""
    x, y = _random_problem(1)
    _small_paper_grids(monkeypatch, svm=lambda pipeline, spec: (
        pipeline, [{"clf__C": [0.1, 10.0], "clf__gamma": [1e-3, 0.05], "clf__kernel": ["rbf", "poly", "sigmoid", "linear"]}]))
    ours, ref, after_ours, after_ref = _searches("svm", x[:60], y[:60], "paper", 3)
    assert len(np.unique(ref.cv_results_["mean_test_score"])) > 3  # not a degenerate problem
    _assert_same_search(ours, ref, x[60:])
    np.testing.assert_array_equal(after_ours, after_ref)  # libsvm's seed draws replayed
    # where the precomputed kernels disagree with libsvm's (another BLAS), the rows are fitted
    monkeypatch.setattr("audioexp.probes.classifiers._svc_precomputed_agrees", lambda *args: False)
    _assert_same_search(_searches("svm", x[:60], y[:60], "paper", 3)[0], ref, x[60:])


def _small_paper_grids(monkeypatch, **specs):
    """param_grid with some paper grids replaced (for both searches)."""
    paper = param_grid

    def patched(classifier, grid="paper", seed=0):
        pipeline, spec = paper(classifier, grid, seed)
        return specs[classifier](pipeline, spec) if grid == "paper" and classifier in specs else (pipeline, spec)

    monkeypatch.setattr("audioexp.probes.classifiers.param_grid", patched)
    monkeypatch.setattr("tests.unit.test_probe.param_grid", patched)


def test_logistic_and_forest_grid_search_equal_plain_gridsearchcv():
    """The paper LR grid's estimators and solvers (three C) in 2 worker processes, the quick forest."""
    def three_cs(pipeline, spec):
        return pipeline, [{k: (v if k == "clf" else [0.01, 1.0, 100.0]) for k, v in sub.items()} for sub in spec]

    x, y = _random_problem(2, n=64, dim=12)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _small_paper_grids(monkeypatch, logistic_regression=three_cs)
        ours, ref, after_ours, after_ref = _searches("logistic_regression", x[:48], y[:48], "paper", 2, n_jobs=2)
    assert len(ours.cv_results_["params"]) == 12
    _assert_same_search(ours, ref, x[48:])
    np.testing.assert_array_equal(after_ours, after_ref)
    ours, ref, after_ours, after_ref = _searches("random_forest", x[:48], y[:48], "quick", 2)
    _assert_same_search(ours, ref, x[48:])
    np.testing.assert_array_equal(after_ours, after_ref)


class SeedEcho(LogisticRegression):
    """liblinear's one global-RNG seed draw per fit, and predictions that show it."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.seed_ = np.random.randint(np.iinfo("i").max)
        return self

    def predict(self, x):
        return np.random.default_rng(self.seed_).choice(self.classes_, len(x))


def test_every_fit_draws_the_seed_of_the_sequential_search(monkeypatch):
    """liblinear's l1 fits depend on the seed each fit draws from NumPy's global RNG: each fit
    (in whichever process, in whatever order) gets the state the sequential search has at it."""
    def echo(pipeline, spec):
        return Pipeline([("clf", SeedEcho(solver="liblinear"))]), [{"clf__C": [1.0, 2.0, 3.0, 4.0]}]

    _small_paper_grids(monkeypatch, logistic_regression=echo)
    x, y = _random_problem(3, n=60, dim=4)
    ours, ref, after_ours, after_ref = _searches("logistic_regression", x, y, "paper", 3)
    assert len(np.unique(ref.cv_results_["mean_test_score"])) > 1
    _assert_same_search(ours, ref, x)
    np.testing.assert_array_equal(after_ours, after_ref)


def test_fit_progress_shows_the_time_left(capsys):
    with fit_progress(40, "svm grid", enabled=True) as bar:
        bar.update(10)
        bar.update(30)
    err = capsys.readouterr().err
    assert "svm grid" in err and "40/40" in err
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", err), err  # elapsed<remaining
