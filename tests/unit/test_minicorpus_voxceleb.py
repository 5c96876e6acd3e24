"""Tests for the miniature VoxCeleb1 writer (audioexp.minicorpus.voxceleb1)."""

from __future__ import annotations

import csv
import functools
import inspect
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
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audioexp import minicorpus
from audioexp.minicorpus.__main__ import main as minicorpus_main
from audioexp.minicorpus import synth
from audioexp.minicorpus.voxceleb1 import (
    LIST_FILES,
    META_HEADER,
    is_verification_test_speaker,
    speaker_ids,
    write_voxceleb1,
)
from audioexp.metrics.verification import equal_error_rate

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
    # The fixture is written in this process; this copy by two worker processes.
    other = write_voxceleb1(tmp_path / "again", seed=0, workers=2, **SMALL)
    a, b = _wavs(corpus), _wavs(other)
    assert [p.relative_to(corpus) for p in a] == [p.relative_to(other) for p in b]
    for pa, pb in zip(a, b):
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
    tiny = dict(num_speakers=3, num_test_speakers=2, videos_per_speaker=3, utterances_per_video=1,
                min_seconds=1.0, max_seconds=1.5, trials_per_speaker=4)
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
# The speaker is in the voice, consistently across videos, not in the level
# --------------------------------------------------------------------------
# Cheap proxies of what a speaker-embedding network needs to learn; the
# corpus is small (12 speakers, 4 of them test speakers, x 4 videos x 3
# utterances) to keep this fast.  Measured on it (seed 0): identification
# 1.00, EER 0.10, level-only identification 0.06 (chance 0.083); over seeds
# 0-4: identification >= 0.94, EER <= 0.11, level <= 0.11.  On the default
# corpus (20 speakers x 4 videos x 6 utterances) identification is about
# 0.97-0.99 and EER about 0.03-0.07 (seeds 0-2).
PROXY = dict(
    num_speakers=12,
    num_test_speakers=4,
    videos_per_speaker=4,
    utterances_per_video=3,
    min_seconds=2.0,
    max_seconds=4.0,
    trials_per_speaker=24,
)


@pytest.fixture(scope="module")
def proxy_features(tmp_path_factory):
    """MFCC statistics, active level, speaker and split of every utterance, and the trials."""
    root = write_voxceleb1(tmp_path_factory.mktemp("vox1_proxy"), seed=0, **PROXY)
    spectral, level, speakers, sets, rels = [], [], [], [], []
    for k, rel in _iden(root):
        x, sr = sf.read(str(root / "wav" / rel))
        mfcc = librosa.feature.mfcc(y=x, sr=sr, n_mfcc=20, n_fft=512, hop_length=160, n_mels=40)
        rms = librosa.feature.rms(y=x, frame_length=512, hop_length=160)[0][: mfcc.shape[1]]
        mfcc = mfcc[1:, rms > rms.max() * 10 ** (-30 / 20)]  # c0 and pauses out: no level cue
        spectral.append(np.concatenate([mfcc.mean(1), mfcc.std(1)]))
        level.append([synth.active_rms_dbfs(x, sr)])
        speakers.append(rel.split("/")[0])
        sets.append(k)
        rels.append(rel)
    return dict(
        root=root,
        spectral=np.array(spectral),
        level=np.array(level),
        speakers=np.array(speakers),
        sets=np.array(sets),
        index={rel: i for i, rel in enumerate(rels)},
        trials=_trials(root),
    )


def test_default_sizes_and_four_video_split(proxy_features):
    defaults = {
        name: p.default for name, p in inspect.signature(write_voxceleb1).parameters.items()
    }
    assert {k: defaults[k] for k in PROXY} == {
        "num_speakers": 20, "num_test_speakers": 6, "videos_per_speaker": 4,
        "utterances_per_video": 6, "min_seconds": 2.0, "max_seconds": 4.0,
        "trials_per_speaker": 40,
    }
    # With 4 videos: one test, one validation and two training videos per speaker.
    per_video: dict[str, dict[str, int]] = defaultdict(dict)
    for k, rel in _iden(proxy_features["root"]):
        spk, video, _ = rel.split("/")
        assert per_video[spk].setdefault(video, k) == k
    assert len(per_video) == 12
    assert all(sorted(v.values()) == [1, 1, 2, 3] for v in per_video.values())


def _identification_accuracy(features: np.ndarray, speakers: np.ndarray, sets: np.ndarray) -> float:
    """Logistic regression trained on split 1, scored on split 3 (another video)."""
    train, test = sets == 1, sets == 3
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(features[train], speakers[train])
    return float(model.score(features[test], speakers[test]))


def test_speaker_is_identifiable_across_videos(proxy_features):
    f = proxy_features
    accuracy = _identification_accuracy(f["spectral"], f["speakers"], f["sets"])
    assert accuracy >= 0.8, accuracy


def test_level_does_not_identify_the_speaker(proxy_features):
    f = proxy_features
    chance = 1.0 / len(set(f["speakers"]))
    accuracy = _identification_accuracy(f["level"], f["speakers"], f["sets"])
    assert accuracy <= 2 * chance, (accuracy, chance)


def test_unseen_speakers_are_verifiable(proxy_features):
    # LDA learnt on the dev speakers only, cosine scoring of the test speakers' trials.
    f = proxy_features
    dev = np.array([not is_verification_test_speaker(s) for s in f["speakers"]])
    assert 0 < dev.sum() < len(dev)
    scaler = StandardScaler().fit(f["spectral"][dev])
    lda = LinearDiscriminantAnalysis().fit(scaler.transform(f["spectral"][dev]), f["speakers"][dev])
    emb = lda.transform(scaler.transform(f["spectral"]))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    idx = f["index"]
    scores = np.array([emb[idx[a]] @ emb[idx[b]] for _, a, b in f["trials"]])
    labels = np.array([label for label, _, _ in f["trials"]])
    eer, _ = equal_error_rate(scores, labels)
    assert eer <= 0.2, eer


# --------------------------------------------------------------------------
# Registry and CLI
# --------------------------------------------------------------------------
def test_cli_writes_corpus(tmp_path: Path, capsys, monkeypatch):
    assert minicorpus.WRITERS["voxceleb1"] is write_voxceleb1
    # The CLI uses the writer's defaults (480 files); shrink them to keep this fast.
    tiny = dict(num_speakers=3, num_test_speakers=2, videos_per_speaker=3, utterances_per_video=1,
                min_seconds=1.0, max_seconds=1.5, trials_per_speaker=4)
    monkeypatch.setitem(minicorpus.WRITERS, "voxceleb1", functools.partial(write_voxceleb1, **tiny))
    out = tmp_path / "cli"
    assert minicorpus_main(["voxceleb1", str(out), "--seed", "2", "--clips-per-class", "5"]) == 0
    captured = capsys.readouterr()
    assert "--clips-per-class is ignored" in captured.err
    assert str(out) in captured.out and "9 audio files" in captured.out
    assert len(_wavs(out)) == 9
    assert json.loads((out / minicorpus.STAMP_NAME).read_text())["seed"] == 2


def test_module_cli_knows_voxceleb1():
    # Under ``python -m`` the module runs as __main__, a second copy; the
    # corpus modules must still be visible to it.
    done = subprocess.run(
        [sys.executable, "-m", "audioexp.minicorpus", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "voxceleb1" in done.stdout and "fm_broadcast" in done.stdout
