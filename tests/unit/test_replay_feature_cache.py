"""The ASVspoof feature cache cannot go stale, and a file that fails only when read is skipped
and counted (data.skip_bad_files) or stops the run naming it."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from audioexp.data.asvspoof2017 import ASVspoof2017
from audioexp.data.audio import AudioFileError
from audioexp.minicorpus import write_minicorpus
from audioexp.systems.replay_countermeasure import extract_features


class FrameEnergy:
    """A cheap front-end: log energy of 10-ms frames, (frames, 1)."""

    def __init__(self):
        self.calls = 0

    def settings(self):
        return {"class": "FrameEnergy", "frame": 160}

    def __call__(self, waveform):
        self.calls += 1
        n = len(waveform) // 160
        return np.log(np.square(waveform[: n * 160].reshape(n, 160)).mean(axis=1) + 1e-10)[:, None]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return write_minicorpus("asvspoof2017", tmp_path_factory.mktemp("asv") / "asv", seed=2,
                            utterances_per_class={"train": 3, "dev": 2, "eval": 2}, seconds=(0.5, 0.6))


def test_a_changed_file_is_not_served_from_the_cache_and_a_corrupt_cache_is_rebuilt(mini, tmp_path, caplog):
    root = tmp_path / "asv"
    shutil.copytree(mini, root)
    corpus = ASVspoof2017(root, cache_dir=tmp_path / "cache")
    corpus.prepare_data(("train",))
    frontend = FrameEnergy()
    first, labels = extract_features(corpus, frontend, "train", tmp_path / "features")
    assert frontend.calls == 6
    again, _ = extract_features(corpus, frontend, "train", tmp_path / "features")
    assert frontend.calls == 6 and all(np.array_equal(a, b) for a, b in zip(first, again))
    paths, _ = corpus.utterances("train")
    data, sr = sf.read(paths[1])
    sf.write(paths[1], 0.5 * data, sr, subtype="PCM_16")  # same length, other samples
    changed, _ = extract_features(corpus, frontend, "train", tmp_path / "features")
    assert frontend.calls == 12
    assert not np.allclose(changed[1], first[1]) and np.array_equal(changed[0], first[0])
    for cache in (tmp_path / "features").glob("*.npz"):
        cache.write_bytes(cache.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        rebuilt, _ = extract_features(corpus, frontend, "train", tmp_path / "features")
    assert "unreadable" in caplog.text and frontend.calls == 18
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt, changed))


def test_a_file_bad_only_when_read_is_skipped_and_counted_or_named(mini, tmp_path):
    root = tmp_path / "asv"
    shutil.copytree(mini, root)
    corpus = ASVspoof2017(root, cache_dir=tmp_path / "cache", skip_bad_files=True)
    corpus.prepare_data(("train",))
    paths, labels = corpus.utterances("train")
    sf.write(paths[2], np.zeros(8000, np.float32), 16000, subtype="PCM_16")  # digital silence: the header is fine
    feats, kept = extract_features(corpus, FrameEnergy(), "train", None)
    assert len(feats) == 5 and corpus.read_skipped == {"train": 1}
    assert np.array_equal(kept, np.delete(labels, 2))
    strict = ASVspoof2017(root, cache_dir=tmp_path / "cache")
    strict.prepare_data(("train",))
    with pytest.raises(AudioFileError, match=str(paths[2]) + ": is digitally silent"):
        extract_features(strict, FrameEnergy(), "train", None)


def test_silence_trimming_cuts_the_silent_ends_and_keys_the_cache(mini, tmp_path):
    """data.trim_silence_db: the silent ends of a file are cut (to within a 10 ms hop of where
    the tone starts and stops), and trimmed features never come from an untrimmed cache."""
    from audioexp.data.asvspoof2017 import trim_silence

    sr = 16000
    rng = np.random.default_rng(0)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    x = np.concatenate([1e-4 * rng.standard_normal(sr // 2), tone, 1e-4 * rng.standard_normal(sr // 4)])
    y = trim_silence(x, sr, 40.0)
    start = int(np.flatnonzero(np.isin(x, y[:50]))[0])  # where the kept part begins in x
    assert abs(start - sr // 2) <= 400 and abs(len(y) - sr) <= 800
    assert np.array_equal(trim_silence(x, sr, 40.0, min_seconds=2.0), x)  # too short after trimming: whole
    with pytest.raises(ValueError, match="trim_silence_db"):
        ASVspoof2017(mini, trim_silence_db=-3)
    plain = ASVspoof2017(mini, cache_dir=tmp_path / "cache")
    trimmed = ASVspoof2017(mini, cache_dir=tmp_path / "cache", trim_silence_db=30.0)
    for corpus in (plain, trimmed):
        corpus.prepare_data(("train",))
    frontend = FrameEnergy()
    a, _ = extract_features(plain, frontend, "train", tmp_path / "features")
    b, _ = extract_features(trimmed, frontend, "train", tmp_path / "features")
    assert frontend.calls == 12  # the trimmed run did not reuse the untrimmed cache
    paths, _ = trimmed.utterances("train")
    assert len(b[0]) == len(trimmed.load(paths[0])) // 160 and len(b[0]) <= len(a[0])
