"""GMM training frames capped per utterance (ours, not Wickramasinghe et al.'s), and scoring
of a long trial in bounded memory."""

from __future__ import annotations

import logging
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from audioexp.backends import GMMBackend, cap_frames_per_utterance, diagonal_gmm_log_likelihood
from audioexp.backends import gmm as gmm_module
from audioexp.systems.replay_countermeasure import GMMReplayCountermeasure


def _numbered(n: int, dim: int = 2) -> np.ndarray:
    """(n, dim) frames whose first column is the frame index."""
    return np.stack([np.arange(n, dtype=np.float64)] + [np.full(n, float(d)) for d in range(1, dim)], axis=1)


def test_cap_keeps_evenly_spaced_frames_as_computed_by_hand():
    capped, num_capped, num_dropped = cap_frames_per_utterance([_numbered(10), _numbered(7), _numbered(3)], 4)
    # n = 10, cap 4: (i * 10) // 4 = 0, 2, 5, 7;  n = 7: (i * 7) // 4 = 0, 1, 3, 5;  n = 3: untouched
    assert capped[0][:, 0].tolist() == [0, 2, 5, 7]
    assert capped[1][:, 0].tolist() == [0, 1, 3, 5]
    assert capped[2][:, 0].tolist() == [0, 1, 2]
    assert (num_capped, num_dropped) == (2, (10 - 4) + (7 - 4))
    np.testing.assert_array_equal(capped[0][:, 1], 1.0)  # whole frames kept, every column


def test_no_cap_and_bad_cap():
    feats = [_numbered(5), _numbered(9)]
    capped, num_capped, num_dropped = cap_frames_per_utterance(feats, None)
    assert all(a is b for a, b in zip(capped, feats)) and (num_capped, num_dropped) == (0, 0)
    capped, num_capped, _ = cap_frames_per_utterance(feats, 9)  # at the cap: not capped
    assert capped[1] is feats[1] and num_capped == 0
    with pytest.raises(ValueError, match="at least 1"):
        cap_frames_per_utterance(feats, 0)
    with pytest.raises(ValueError, match="max_frames_per_utterance"):
        GMMReplayCountermeasure({"x": lambda w: w}, GMMBackend, max_frames_per_utterance=0)


class _RecordingBackend:
    """A back-end that keeps what ``fit`` was given and scores zeros."""

    fitted: list[tuple[list[np.ndarray], np.ndarray]] = []

    def fit(self, features, labels):
        type(self).fitted.append((list(features), np.asarray(labels)))
        return self

    def score(self, features):
        return np.zeros(len(features))


def test_one_long_utterance_cannot_dominate_a_class(caplog):
    """Genuine: 20 utterances of 100 frames and one 50x longer (5,000). Uncapped, the long
    one is 5000 / 7000 = 71 % of the class's frames; capped at 300 frames, 300 / 2300 = 13 %."""
    rng = np.random.default_rng(0)
    genuine = [rng.standard_normal((100, 3)) for _ in range(20)] + [rng.standard_normal((5000, 3))]
    spoof = [rng.standard_normal((100, 3)) for _ in range(20)]
    feats = {"train": genuine + spoof, "dev": [rng.standard_normal((100, 3))] * 4}
    labels = {"train": np.array([1] * 21 + [0] * 20), "dev": np.array([1, 0, 1, 0])}

    _RecordingBackend.fitted = []
    system = GMMReplayCountermeasure({"x": lambda w: w}, _RecordingBackend, protocols=["dev"], max_frames_per_utterance=300)
    with caplog.at_level(logging.WARNING, logger="audioexp.systems.replay_countermeasure"):
        system._score_system(feats, labels, "x")
    (trained, trained_labels), = _RecordingBackend.fitted
    genuine_frames = [len(f) for f, y in zip(trained, trained_labels) if y == 1]
    assert max(genuine_frames) == 300
    assert max(genuine_frames) / sum(genuine_frames) == pytest.approx(300 / 2300)
    assert [len(f) for f, y in zip(trained, trained_labels) if y == 0] == [100] * 20  # short ones untouched
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one line per training set, not one per utterance
    assert "1 of 41 utterances" in warnings[0] and "4700 of 9000 frames dropped" in warnings[0]

    _RecordingBackend.fitted = []
    caplog.clear()
    uncapped = GMMReplayCountermeasure({"x": lambda w: w}, _RecordingBackend, protocols=["dev"], max_frames_per_utterance=None)
    uncapped._score_system(feats, labels, "x")
    (trained, trained_labels), = _RecordingBackend.fitted
    genuine_frames = [len(f) for f, y in zip(trained, trained_labels) if y == 1]
    assert max(genuine_frames) / sum(genuine_frames) == pytest.approx(5000 / 7000)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_default_cap_leaves_asvspoof_sized_utterances_alone():
    """The default (3,000 frames) is above any ASVspoof 2017 file (a few seconds: a few hundred frames)."""
    system = GMMReplayCountermeasure({"x": lambda w: w}, GMMBackend)
    assert system.max_frames_per_utterance == 3000
    feats = [np.zeros((n, 2)) for n in (150, 800, 1200)]  # 1.5-12 s at a 10 ms hop
    assert all(a is b for a, b in zip(system.training_frames(feats), feats))


def _fake_gmm(rng, components: int, dim: int):
    return SimpleNamespace(weights_=rng.dirichlet(np.ones(components)), means_=rng.standard_normal((components, dim)),
                           covariances_=rng.uniform(0.5, 2.0, (components, dim)))


def test_long_trial_is_scored_over_all_frames_in_blocks(monkeypatch):
    rng = np.random.default_rng(1)
    backend = GMMBackend(n_components=8)
    backend.models = {1: _fake_gmm(rng, 8, 4), 0: _fake_gmm(rng, 8, 4)}
    frames = rng.standard_normal((1000, 4))
    whole = {k: float(np.mean(diagonal_gmm_log_likelihood(frames, m.weights_, m.means_, m.covariances_)))
             for k, m in backend.models.items()}
    assert backend.log_likelihood(frames, 1) == whole[1]  # one block: the computation as before, bit for bit
    monkeypatch.setattr(gmm_module, "SCORE_BLOCK_FRAMES", 64)  # 16 blocks, the last partial
    for k in (0, 1):
        assert backend.log_likelihood(frames, k) == pytest.approx(whole[k], rel=1e-12)  # summation order only


def test_scoring_a_ten_minute_trial_has_bounded_memory():
    """60,000 frames (10 min at 10 ms) of 60 dims against 512 components. Scored at once, the
    (frames x components) float64 matrices are 246 MB each, several alive at once: 1.8 GB peak
    (measured); in blocks of 4,096 frames about 0.12 GB (measured). numpy's allocations are
    traced by tracemalloc."""
    rng = np.random.default_rng(2)
    backend = GMMBackend(n_components=512)
    backend.models = {1: _fake_gmm(rng, 512, 60), 0: _fake_gmm(rng, 512, 60)}
    frames = rng.standard_normal((60_000, 60)).astype(np.float32)
    tracemalloc.start()
    try:
        score = backend.score([frames])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(score).all()
    assert peak < 300e6, f"peak {peak / 1e6:.0f} MB"
