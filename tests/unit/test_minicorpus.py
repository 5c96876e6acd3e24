"""Tests for the miniature corpus writers (audioexp.minicorpus)."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audioexp import minicorpus
from audioexp.minicorpus.__main__ import main as minicorpus_main
from audioexp.minicorpus.fm_broadcast import write_fm_broadcast
from audioexp.minicorpus import synth

SR = 16000


def _wavs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    """4 clips per class in 2 recordings per class, seed 0."""
    root = tmp_path_factory.mktemp("fm_small")
    return write_fm_broadcast(root, seed=0, clips_per_class=4, recordings_per_class=2)


@pytest.fixture(scope="module")
def cue_corpus(tmp_path_factory) -> Path:
    """16 clips per class, enough for a cross-validated cue check."""
    root = tmp_path_factory.mktemp("fm_cue")
    return minicorpus.write_minicorpus("fm_broadcast", root, seed=1, clips_per_class=16)


# --------------------------------------------------------------------------
# Layout and format
# --------------------------------------------------------------------------
def test_layout_and_format(small_corpus: Path):
    root = small_corpus
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["music", "speech"]
    for label in ("speech", "music"):
        recs = sorted(p.name for p in (root / label).iterdir())
        assert recs == [f"{label}_rec00", f"{label}_rec01"]
        for rec in recs:
            names = sorted(p.name for p in (root / label / rec).iterdir())
            assert names == [f"{rec}_0000.wav", f"{rec}_0001.wav"]
    files = _wavs(root)
    assert len(files) == 8
    for path in files:
        info = sf.info(str(path))
        assert info.samplerate == SR
        assert info.channels == 1
        assert info.frames == 5 * SR  # exactly 5.0 s
        assert info.format == "WAV"
        assert info.subtype == "PCM_16"
    readme = (root / "README.txt").read_text()
    assert "GENERATED" in readme and "seed=0" in readme
    assert "python -m audioexp.minicorpus fm_broadcast" in readme
    stamp = json.loads((root / minicorpus.STAMP_NAME).read_text())
    assert stamp["kind"] == "fm_broadcast" and stamp["seed"] == 0
    assert stamp["params"]["clips_per_class"] == 4
    assert sorted(stamp["files"]) == sorted(str(p.relative_to(root)) for p in files)


def test_clips_are_not_silent_or_clipped(small_corpus: Path):
    for path in _wavs(small_corpus):
        x, _ = sf.read(str(path))
        assert 0.0 < np.max(np.abs(x)) < 1.0
        assert synth.silence_fraction(x, SR) < 0.5


def test_second_call_is_a_no_op(small_corpus: Path):
    before = {p: p.stat().st_mtime_ns for p in small_corpus.rglob("*") if p.is_file()}
    again = write_fm_broadcast(
        small_corpus, seed=0, clips_per_class=4, recordings_per_class=2
    )
    assert again == small_corpus
    after = {p: p.stat().st_mtime_ns for p in small_corpus.rglob("*") if p.is_file()}
    assert after == before


def test_incomplete_or_different_corpus_is_rewritten(tmp_path: Path):
    root = write_fm_broadcast(tmp_path, seed=0, clips_per_class=2, recordings_per_class=1)
    victim = root / "music" / "music_rec00" / "music_rec00_0001.wav"
    victim.unlink()
    write_fm_broadcast(tmp_path, seed=0, clips_per_class=2, recordings_per_class=1)
    assert victim.is_file()
    # Fewer clips: stale files of the larger corpus must not survive.
    write_fm_broadcast(tmp_path, seed=0, clips_per_class=1, recordings_per_class=1)
    assert len(_wavs(root)) == 2
    assert json.loads((root / minicorpus.STAMP_NAME).read_text())["params"]["clips_per_class"] == 1


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes(small_corpus: Path, tmp_path: Path):
    other = write_fm_broadcast(
        tmp_path / "again", seed=0, clips_per_class=4, recordings_per_class=2
    )
    a, b = _wavs(small_corpus), _wavs(other)
    assert [p.relative_to(small_corpus) for p in a] == [p.relative_to(other) for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    for name in ("README.txt", minicorpus.STAMP_NAME):
        assert (small_corpus / name).read_bytes() == (other / name).read_bytes()


def test_different_seed_gives_different_audio(small_corpus: Path, tmp_path: Path):
    other = write_fm_broadcast(
        tmp_path / "seed1", seed=1, clips_per_class=4, recordings_per_class=2
    )
    for pa, pb in zip(_wavs(small_corpus), _wavs(other)):
        assert pa.read_bytes() != pb.read_bytes(), pa.name


def test_clips_do_not_depend_on_corpus_size(small_corpus: Path, tmp_path: Path):
    # Per-clip child generators: clip 0 of each class is the same whatever
    # else gets written (same recording parameters, same clip key).
    other = write_fm_broadcast(
        tmp_path / "one", seed=0, clips_per_class=1, recordings_per_class=2
    )
    for rel in ("speech/speech_rec00/speech_rec00_0000.wav", "music/music_rec00/music_rec00_0000.wav"):
        assert (other / rel).read_bytes() == (small_corpus / rel).read_bytes()


# --------------------------------------------------------------------------
# The label is carried by the signal, not by level or silence
# --------------------------------------------------------------------------
def _load_features(root: Path):
    nuisance, spectral, labels = [], [], []
    for label_index, label in enumerate(("speech", "music")):
        for path in sorted((root / label).rglob("*.wav")):
            x, sr = sf.read(str(path))
            nuisance.append(
                [
                    synth.active_rms_dbfs(x, sr),
                    synth.silence_fraction(x, sr),
                    20 * np.log10(np.sqrt(np.mean(x**2))),
                ]
            )
            mel = librosa.power_to_db(
                librosa.feature.melspectrogram(y=x, sr=sr, n_fft=512, hop_length=256, n_mels=32)
            )
            # Drop the pauses so these features do not see silence either.
            loud = mel.max(axis=0) > mel.max() - 40
            mel = mel[:, loud] - mel[:, loud].mean()  # remove level
            flux = np.diff(mel, axis=1)
            spectral.append(np.concatenate([mel.mean(1), mel.std(1), [np.abs(flux).mean()]]))
            labels.append(label_index)
    return np.array(nuisance), np.array(spectral), np.array(labels)


def _cv_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    return float(np.mean(cross_val_score(model, features, labels, cv=cv)))


def test_level_and_silence_do_not_reveal_the_label(cue_corpus: Path):
    nuisance, spectral, labels = _load_features(cue_corpus)
    assert len(labels) == 32
    level_silence = _cv_accuracy(nuisance[:, :2], labels)
    with_overall_rms = _cv_accuracy(nuisance, labels)
    content = _cv_accuracy(spectral, labels)
    assert level_silence <= 0.7, level_silence
    assert with_overall_rms <= 0.7, with_overall_rms
    assert content >= 0.9, content
    # Stronger: the per-class distributions practically coincide (clip i of
    # each class gets the same nuisance values), so even a shift too small
    # for a 32-clip classifier to see is caught here.
    speech, music = nuisance[labels == 0], nuisance[labels == 1]
    assert np.max(np.abs(np.sort(speech[:, 0]) - np.sort(music[:, 0]))) < 0.5  # dB
    assert np.max(np.abs(np.sort(speech[:, 1]) - np.sort(music[:, 1]))) < 0.02
    lo, hi = synth.LEVEL_RANGE_DBFS
    assert speech[:, 0].min() < lo + 3 and speech[:, 0].max() > hi - 3  # spans the range


def test_recordings_share_a_voice(cue_corpus: Path):
    # Clips of one speech recording have similar pitch; recordings differ.
    medians: dict[str, list[float]] = {}
    for path in sorted((cue_corpus / "speech").rglob("*.wav")):
        x, sr = sf.read(str(path))
        f0 = librosa.yin(x, fmin=60, fmax=400, sr=sr, frame_length=1024, hop_length=512)
        voiced = librosa.feature.rms(y=x, frame_length=1024, hop_length=512)[0] > 10 ** (-40 / 20)
        medians.setdefault(path.parent.name, []).append(float(np.median(f0[voiced[: len(f0)]])))
    within = np.mean([np.std(np.log2(v)) for v in medians.values()])
    between = np.std(np.log2([np.mean(v) for v in medians.values()]))
    assert within < between


# --------------------------------------------------------------------------
# Registry and CLI
# --------------------------------------------------------------------------
def test_unknown_kind_names_known_kinds(tmp_path: Path):
    with pytest.raises(ValueError, match="fm_broadcast"):
        minicorpus.write_minicorpus("no_such_corpus", tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_writes_corpus(tmp_path: Path, capsys):
    out = tmp_path / "cli"
    assert minicorpus_main(["fm_broadcast", str(out), "--seed", "3", "--clips-per-class", "2"]) == 0
    assert len(_wavs(out)) == 4
    assert json.loads((out / minicorpus.STAMP_NAME).read_text())["seed"] == 3
    printed = capsys.readouterr().out
    assert str(out) in printed and "4" in printed


def test_cli_rejects_unknown_kind(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        minicorpus_main(["nope", str(tmp_path / "x")])
    assert exc.value.code != 0
    assert "fm_broadcast" in capsys.readouterr().err
