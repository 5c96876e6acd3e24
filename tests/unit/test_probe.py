"""Probe functions: per-speaker standardisation, speaker splits, grids, scoring, tables."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import recall_score
from sklearn.model_selection import GroupKFold, ParameterGrid
from sklearn.preprocessing import StandardScaler

from audioexp.probes.classifiers import CLASSIFIERS, fit_and_score, grid_search, param_grid, pooled_confusion
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
