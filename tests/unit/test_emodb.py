"""EmoDB: file names, layout errors, the count check, the miniature corpus and the DataModule."""

from __future__ import annotations

import functools

import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from audioexp.data.audio import load_audio
from audioexp.data.emodb import (
    CLASS_NAMES,
    EMOTIONS,
    EmoDBDataModule,
    EmoDBNameError,
    check_counts,
    count_differences,
    list_emodb,
    parse_emodb_name,
)
from audioexp.data.manifest import CorpusNotFoundError
from audioexp.minicorpus import prepare, write_minicorpus


def test_parse_names():
    u = parse_emodb_name("16b10Wb.wav")
    assert (u.speaker, u.text, u.emotion, u.version) == ("16", "b10", "W", "b")
    assert CLASS_NAMES[u.label] == "anger"
    assert [CLASS_NAMES[parse_emodb_name(f"03a01{e}a.wav").label] for e in EMOTIONS] == list(EMOTIONS.values())


@pytest.mark.parametrize("name", ["3a01Fa.wav", "03a01Fa.flac", "03a01fa.wav", "03a01F.wav", "03a1Fa.wav", "README.wav"])
def test_malformed_names_are_refused(name):
    with pytest.raises(EmoDBNameError, match="not an EmoDB file name"):
        parse_emodb_name(name)


def test_unknown_emotion_letter_is_named():
    with pytest.raises(EmoDBNameError, match="unknown emotion letter 'X'"):
        parse_emodb_name("03a01Xa.wav")


def test_missing_root_and_empty_wav_say_the_layout(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="(?s)no wav/ folder.*03a01Fa.wav"):
        list_emodb(tmp_path / "nowhere")
    (tmp_path / "wav").mkdir()
    with pytest.raises(CorpusNotFoundError, match="no .wav files"):
        list_emodb(tmp_path)


def test_bad_file_name_in_wav_is_reported_with_its_path(tmp_path, emodb_corpus):
    root = tmp_path / "emodb"
    shutil.copytree(emodb_corpus / "wav", root / "wav")
    shutil.copy(emodb_corpus / "wav" / "03a01Wa.wav", root / "wav" / "03a01Wa copy.wav")
    with pytest.raises(EmoDBNameError, match=r"wav/03a01Wa copy\.wav"):
        list_emodb(root)


def test_count_check_warns_unless_turned_off(tmp_path, emodb_corpus, caplog):
    utterances = list_emodb(emodb_corpus)
    differences = count_differences(utterances)
    assert differences[0] == f"{len(utterances)} files instead of 535"
    with caplog.at_level(logging.WARNING, logger="audioexp.data.emodb"):
        EmoDBDataModule(str(emodb_corpus), check_counts=False).setup()  # as the miniature config sets it
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="audioexp.data.emodb"):
        assert check_counts(emodb_corpus, utterances) == differences
    assert "differs from the released corpus" in caplog.text and "anger (W)" in caplog.text


def test_released_counts_pass_the_check():
    names = []
    counts = {"W": 127, "L": 81, "E": 46, "A": 69, "F": 71, "T": 62, "N": 79}
    speakers = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    i = 0
    for letter, n in counts.items():
        for k in range(n):
            names.append(parse_emodb_name(f"{speakers[i % 10]}a{k % 100:02d}{letter}{'abcdefghij'[k // 100]}.wav"))
            i += 1
    assert count_differences(names) == []


def test_minicorpus_layout_and_determinism(tmp_path, emodb_corpus):
    files = sorted(p.name for p in (emodb_corpus / "wav").iterdir())
    assert len(files) == 10 * 7 * 2
    utterances = [parse_emodb_name(f) for f in files]
    assert sorted({u.speaker for u in utterances}) == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert {u.emotion for u in utterances} == set(EMOTIONS)
    info = sf.info(str(emodb_corpus / "wav" / files[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert 0.6 <= info.duration <= 0.9 + 1e-3
    a = write_minicorpus("emodb", tmp_path / "a", seed=1, num_speakers=2, texts_per_emotion=1, min_seconds=0.3, max_seconds=0.4)
    b = write_minicorpus("emodb", tmp_path / "b", seed=1, num_speakers=2, texts_per_emotion=1, min_seconds=0.3, max_seconds=0.4)
    for name in sorted(p.name for p in (a / "wav").iterdir()):
        assert (a / "wav" / name).read_bytes() == (b / "wav" / name).read_bytes()


def test_minicorpus_emotions_carry_their_prosody(emodb_corpus):
    """Anger is louder than sadness for every speaker (the synthetic acting, not level noise)."""
    rms = {}
    for u in list_emodb(emodb_corpus):
        x = load_audio(emodb_corpus / "wav" / u.name, 16000).numpy()
        frames = x[: len(x) // 320 * 320].reshape(-1, 320)
        e = np.sqrt((frames**2).mean(axis=1))
        rms.setdefault((u.speaker, u.emotion), []).append(20 * np.log10(np.sqrt(np.mean(e[e > 10 ** (-50 / 20)] ** 2))))
    for speaker in {s for s, _ in rms}:
        assert np.mean(rms[speaker, "W"]) > np.mean(rms[speaker, "T"]) + 4.0


def test_datamodule_serves_every_clip_in_order(emodb_corpus):
    dm = EmoDBDataModule(str(emodb_corpus), batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert dm.num_classes == 7 and dm.files[0] == "wav/03a01Aa.wav"
    seen = []
    for batch in dm.predict_dataloader():
        seen.extend(batch["index"].tolist())
        for i, n, label in zip(batch["index"], batch["length"], batch["label"]):
            ref = load_audio(emodb_corpus / dm.files[int(i)], 16000)
            assert int(n) == len(ref) and int(label) == dm.labels[int(i)]
    assert seen == list(range(len(dm.files)))
    assert list(dm.speakers[:2]) == ["03", "03"]


def test_datamodule_writes_the_minicorpus_and_refuses_wrong_classes(tmp_path):
    mini = functools.partial(prepare, kind="emodb", num_speakers=2, texts_per_emotion=1, min_seconds=0.2, max_seconds=0.3)
    dm = EmoDBDataModule(str(tmp_path / "mini"), prepare=mini, check_counts=False)
    dm.prepare_data()
    dm.setup()
    assert len(dm.files) == 14
    with pytest.raises(ValueError, match="7 emotions"):
        EmoDBDataModule(str(tmp_path), num_classes=4)
    with pytest.raises(CorpusNotFoundError, match="does not exist"):
        EmoDBDataModule(str(tmp_path / "none")).prepare_data()
