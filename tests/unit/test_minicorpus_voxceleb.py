"""Tests for the miniature VoxCeleb1 writer (audioexp.data.minicorpus_voxceleb)."""

from __future__ import annotations

import csv
import functools
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audioexp.data import minicorpus, synth
from audioexp.data.minicorpus_voxceleb import (
    LIST_FILES,
    META_HEADER,
    is_verification_test_speaker,
    speaker_ids,
    write_voxceleb1,
)

SR = 16000
SMALL = dict(
    num_speakers=8,
    num_test_speakers=3,
    videos_per_speaker=3,
    utterances_per_video=2,
    min_seconds=2.0,
    max_seconds=4.0,
    trials_per_speaker=16,
)


def _wavs(root: Path) -> list[Path]:
    return sorted((root / "wav").rglob("*.wav"))


def _iden(root: Path) -> list[tuple[int, str]]:
    lines = (root / "iden_split.txt").read_text().splitlines()
    return [(int(k), rel) for k, rel in (line.split(" ") for line in lines)]


def _trials(root: Path, name: str = "veri_test.txt") -> list[tuple[int, str, str]]:
    lines = (root / name).read_text().splitlines()
    return [(int(lab), a, b) for lab, a, b in (line.split(" ") for line in lines)]


def _meta(root: Path) -> list[list[str]]:
    with open(root / "vox1_meta.csv", newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """8 speakers (3 test) x 3 videos x 2 utterances, seed 0."""
    root = tmp_path_factory.mktemp("vox1_small")
    return minicorpus.write_minicorpus("voxceleb1", root, seed=0, **SMALL)


# --------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------
def test_speaker_ids_fall_in_the_real_ranges():
    dev, test = speaker_ids(340, 40)
    assert test[0] == "id10270" and test[-1] == "id10309"
    assert dev[0] == "id10001" and dev[268] == "id10269" and dev[269] == "id10310"
    assert all(is_verification_test_speaker(s) for s in test)
    assert not any(is_verification_test_speaker(s) for s in dev)
    with pytest.raises(ValueError):
        speaker_ids(50, 41)
    with pytest.raises(ValueError):
        speaker_ids(1252, 40)


def test_invalid_sizes_raise(tmp_path: Path):
    with pytest.raises(ValueError, match="videos_per_speaker"):
        write_voxceleb1(tmp_path, videos_per_speaker=2)
    with pytest.raises(ValueError, match="num_test_speakers"):
        write_voxceleb1(tmp_path, num_speakers=4, num_test_speakers=1)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------
# Layout and format
# --------------------------------------------------------------------------
def test_layout_and_format(corpus: Path):
    root = corpus
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["wav", "README.txt", minicorpus.STAMP_NAME, *LIST_FILES]
    )
    dev, test = speaker_ids(8, 3)
    assert sorted(p.name for p in (root / "wav").iterdir()) == dev + test
    for spk_dir in (root / "wav").iterdir():
        videos = sorted(spk_dir.iterdir())
        assert len(videos) == 3
        for video in videos:
            assert re.fullmatch(r"[A-Za-z0-9_-]{11}", video.name), video.name
            assert sorted(p.name for p in video.iterdir()) == ["00001.wav", "00002.wav"]
    files = _wavs(root)
    assert len(files) == 8 * 3 * 2
    for path in files:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (SR, 1, "WAV", "PCM_16")
        assert 2.0 * SR <= info.frames <= 4.0 * SR
        x, _ = sf.read(str(path))
        assert 0.0 < np.max(np.abs(x)) < 1.0
    durations = [sf.info(str(p)).duration for p in files]
    assert np.ptp(durations) > 0.5  # durations vary
    readme = (root / "README.txt").read_text()
    assert "GENERATED" in readme and "seed=0" in readme and "voxceleb1" in readme
    stamp = json.loads((root / minicorpus.STAMP_NAME).read_text())
    assert stamp["kind"] == "voxceleb1" and stamp["params"]["num_speakers"] == 8
    assert sorted(stamp["files"]) == sorted(
        [str(p.relative_to(root)) for p in files] + list(LIST_FILES)
    )


def test_iden_split_follows_the_protocol(corpus: Path):
    iden = _iden(corpus)
    wav = corpus / "wav"
    assert sorted(rel for _, rel in iden) == sorted(str(p.relative_to(wav)) for p in _wavs(corpus))
    assert all((wav / rel).is_file() for _, rel in iden)
    assert {k for k, _ in iden} == {1, 2, 3}
    sets_of_video: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for k, rel in iden:
        spk, video, _ = rel.split("/")
        sets_of_video[spk][video].add(k)
    assert sorted(sets_of_video) == sorted(sum(speaker_ids(8, 3), []))  # everybody, test speakers too
    for spk, videos in sets_of_video.items():
        # All utterances of a video share a set; one test and one val video per speaker.
        assert all(len(s) == 1 for s in videos.values()), spk
        per_video = sorted(next(iter(s)) for s in videos.values())
        assert per_video == [1, 2, 3], spk


def test_verification_trials(corpus: Path):
    trials = _trials(corpus)
    assert len(trials) > 20
    pairs = set()
    for label, a, b in trials:
        assert (corpus / "wav" / a).is_file() and (corpus / "wav" / b).is_file()
        spk_a, video_a, _ = a.split("/")
        spk_b, video_b, _ = b.split("/")
        assert 10270 <= int(spk_a[2:]) <= 10309 and 10270 <= int(spk_b[2:]) <= 10309
        assert label == int(spk_a == spk_b)
        if label == 1:
            assert video_a != video_b
        pairs.add(frozenset((a, b)))
    assert len(pairs) == len(trials)  # no trial twice
    n_target = sum(label for label, _, _ in trials)
    assert abs(n_target - (len(trials) - n_target)) <= 0.1 * len(trials)
    assert {a.split("/")[0] for _, a, _ in trials} == set(speaker_ids(8, 3)[1])
    # Grouped by enrolment utterance, as in the real list.
    enrol = [a for _, a, _ in trials]
    assert enrol == sorted(enrol)

    cleaned = _trials(corpus, "veri_test2.txt")
    assert 0 < len(trials) - len(cleaned) <= 3
    assert set(cleaned) <= set(trials)
    order = {t: i for i, t in enumerate(trials)}
    assert [order[t] for t in cleaned] == sorted(order[t] for t in cleaned)


def test_meta(corpus: Path):
    rows = _meta(corpus)
    assert tuple(rows[0]) == META_HEADER == (
        "VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set"
    )
    body = rows[1:]
    assert [r[0] for r in body] == sorted(sum(speaker_ids(8, 3), []))
    assert len({r[1] for r in body}) == len(body)  # unique names
    for spk, name, gender, nationality, split in body:
        assert nationality and gender in ("m", "f")
        assert re.fullmatch(r"[A-Za-z.]+_[A-Za-z.]+", name), name
        if is_verification_test_speaker(spk):
            assert split == "test" and name.startswith("E")
        else:
            assert split == "dev" and not name.startswith("E")
    dev_names = [r[1] for r in body if r[4] == "dev"]
    assert dev_names == sorted(dev_names)  # alphabetical in id order, as in the real file
    assert {r[2] for r in body} == {"m", "f"}


def test_gender_agrees_with_pitch(corpus: Path):
    gender = {r[0]: r[2] for r in _meta(corpus)[1:]}
    f0: dict[str, list[float]] = defaultdict(list)
    for path in _wavs(corpus):
        x, sr = sf.read(str(path))
        track = librosa.yin(x, fmin=60, fmax=400, sr=sr, frame_length=1024, hop_length=512)
        loud = librosa.feature.rms(y=x, frame_length=1024, hop_length=512)[0][: len(track)]
        f0[path.parts[-3]].append(float(np.median(track[loud > loud.max() * 0.1])))
    median = {spk: float(np.median(v)) for spk, v in f0.items()}
    male = [median[s] for s in median if gender[s] == "m"]
    female = [median[s] for s in median if gender[s] == "f"]
    assert max(male) < min(female), (male, female)


# --------------------------------------------------------------------------
# Determinism and idempotence
# --------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes(corpus: Path, tmp_path: Path):
    other = write_voxceleb1(tmp_path / "again", seed=0, **SMALL)
    a, b = _wavs(corpus), _wavs(other)
    assert [p.relative_to(corpus) for p in a] == [p.relative_to(other) for p in b]
    for pa, pb in list(zip(a, b))[::5]:
        assert pa.read_bytes() == pb.read_bytes(), pa
    for name in (*LIST_FILES, "README.txt", minicorpus.STAMP_NAME):
        assert (corpus / name).read_bytes() == (other / name).read_bytes(), name


def test_different_seed_gives_a_different_corpus(corpus: Path, tmp_path: Path):
    small = {**SMALL, "num_speakers": 4, "num_test_speakers": 2, "utterances_per_video": 1}
    a = write_voxceleb1(tmp_path / "s0", seed=0, **small)
    b = write_voxceleb1(tmp_path / "s1", seed=1, **small)
    assert (a / "iden_split.txt").read_text() != (b / "iden_split.txt").read_text()
    assert _wavs(a)[0].read_bytes() != _wavs(b)[0].read_bytes()


def test_second_call_is_a_no_op(corpus: Path):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    assert write_voxceleb1(corpus, seed=0, **SMALL) == corpus
    after = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    assert after == before


def test_incomplete_or_different_corpus_is_rewritten(tmp_path: Path):
    tiny = dict(num_speakers=3, num_test_speakers=2, utterances_per_video=1, min_seconds=1.0,
                max_seconds=1.5, trials_per_speaker=4)
    root = write_voxceleb1(tmp_path, seed=0, **tiny)
    victim = _wavs(root)[-1]
    victim.unlink()
    write_voxceleb1(tmp_path, seed=0, **tiny)
    assert victim.is_file()
    (root / "veri_test.txt").unlink()
    write_voxceleb1(tmp_path, seed=0, **tiny)
    assert (root / "veri_test.txt").is_file()
    # Fewer speakers: stale speaker folders must not survive.
    write_voxceleb1(tmp_path, seed=0, **{**tiny, "num_speakers": 2})
    assert sorted(p.name for p in (root / "wav").iterdir()) == ["id10270", "id10271"]
    assert len(_wavs(root)) == 6


# --------------------------------------------------------------------------
# The speaker is in the voice, not in the level
# --------------------------------------------------------------------------
def _features(root: Path):
    spectral, level, speakers, sets = [], [], [], []
    for k, rel in _iden(root):
        x, sr = sf.read(str(root / "wav" / rel))
        mfcc = librosa.feature.mfcc(y=x, sr=sr, n_mfcc=20, n_fft=512, hop_length=160, n_mels=40)
        rms = librosa.feature.rms(y=x, frame_length=512, hop_length=160)[0][: mfcc.shape[1]]
        mfcc = mfcc[1:, rms > rms.max() * 10 ** (-30 / 20)]  # c0 and pauses out: no level cue
        spectral.append(np.concatenate([mfcc.mean(1), mfcc.std(1)]))
        level.append([20 * np.log10(np.sqrt(np.mean(x**2))), synth.active_rms_dbfs(x, sr)])
        speakers.append(rel.split("/")[0])
        sets.append(k)
    return np.array(spectral), np.array(level), np.array(speakers), np.array(sets)


def test_speaker_is_identifiable_across_videos_but_not_from_level(corpus: Path):
    spectral, level, speakers, sets = _features(corpus)
    chance = 1.0 / len(set(speakers))
    # Train on the train and validation videos, test on each speaker's test video.
    train, test = sets != 3, sets == 3

    def accuracy(features: np.ndarray) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        model.fit(features[train], speakers[train])
        return float(model.score(features[test], speakers[test]))

    voice, loudness = accuracy(spectral), accuracy(level)
    assert voice >= 3 * chance, voice
    assert loudness <= 2 * chance, loudness


# --------------------------------------------------------------------------
# Registry and CLI
# --------------------------------------------------------------------------
def test_cli_writes_corpus(tmp_path: Path, capsys, monkeypatch):
    assert minicorpus.WRITERS["voxceleb1"] is write_voxceleb1
    # The CLI uses the writer's defaults (288 files); shrink them to keep this fast.
    tiny = dict(num_speakers=3, num_test_speakers=2, utterances_per_video=1, min_seconds=1.0,
                max_seconds=1.5, trials_per_speaker=4)
    monkeypatch.setitem(minicorpus.WRITERS, "voxceleb1", functools.partial(write_voxceleb1, **tiny))
    out = tmp_path / "cli"
    assert minicorpus.main(["voxceleb1", str(out), "--seed", "2", "--clips-per-class", "5"]) == 0
    captured = capsys.readouterr()
    assert "--clips-per-class is ignored" in captured.err
    assert str(out) in captured.out and "9 audio files" in captured.out
    assert len(_wavs(out)) == 9
    assert json.loads((out / minicorpus.STAMP_NAME).read_text())["seed"] == 2


def test_module_cli_knows_voxceleb1():
    # Under ``python -m`` the module runs as __main__, a second copy; the
    # corpus modules must still be visible to it.
    done = subprocess.run(
        [sys.executable, "-m", "audioexp.data.minicorpus", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "voxceleb1" in done.stdout and "fm_broadcast" in done.stdout
