"""IEMOCAP: EmoEvaluation parsing, folds, the DataModule on the miniature corpus."""

from __future__ import annotations

import functools

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audioexp.data.iemocap import (
    EmoEvaluationError,
    IEMOCAPDataModule,
    all_speakers,
    fold_speakers,
    read_emo_evaluation,
    read_iemocap,
    select_utterances,
    speaker_of,
)
from audioexp.data.manifest import CorpusNotFoundError
from audioexp.minicorpus import STAMP_NAME, prepare, read_stamp, write_minicorpus
from audioexp.minicorpus.iemocap import DESIGN_VERSION
from audioexp.features.fbank import LogFilterbank

GOOD = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M001\texc\t[3.5000, 3.5000, 3.0000]
C-E2:\tExcited;\t()
"""


def write(tmp_path, text, name="Ses01F_impro01.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_emo_evaluation(tmp_path):
    utts = read_emo_evaluation(write(tmp_path, GOOD), session=1)
    assert [(u.utterance_id, u.speaker, u.emotion, u.start, u.end) for u in utts] == [
        ("Ses01F_impro01_F000", "Ses01F", "neu", 6.2901, 8.2357),
        ("Ses01F_impro01_M001", "Ses01M", "exc", 10.01, 11.3925),
    ]
    assert utts[1].path == "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M001.wav"
    assert utts[0].improvised


@pytest.mark.parametrize(
    "line,lineno,message",
    [
        ("[6.29 - 8.23]\tSes01F_impro01_F002 neu\t[2.5, 2.5, 2.5]", 3, "expected '\\[start - end\\]"),
        ("[6.29 - 8.23]\tSes01F_impro01_F002\tjoy\t[2.5, 2.5, 2.5]", 3, "unknown emotion label 'joy'"),
        ("[6.29 - 8.23]\tSes01F_impro02_F002\tneu\t[2.5, 2.5, 2.5]", 3, ".*does not belong to dialog"),
        ("[8.29 - 6.23]\tSes01F_impro01_F002\tneu\t[2.5, 2.5, 2.5]", 3, ".*is not after start"),
        ("[6.29 - 8.23]\tSes01F_impro01_X002\tneu\t[2.5, 2.5, 2.5]", 3, "not an IEMOCAP utterance id"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, lineno, message):
    path = write(tmp_path, f"% header\n\n{line}\nC-E2:\tNeutral;\t()\n")
    with pytest.raises(EmoEvaluationError, match=rf"Ses01F_impro01\.txt:{lineno}: {message}"):
        read_emo_evaluation(path)


def test_session_mismatch_and_empty_file(tmp_path):
    with pytest.raises(EmoEvaluationError, match=r"Ses01F_impro01\.txt:3: .*filed under Session2"):
        read_emo_evaluation(write(tmp_path, GOOD), session=2)
    with pytest.raises(EmoEvaluationError, match="no utterance lines"):
        read_emo_evaluation(write(tmp_path, "% header only\n"))


def test_speaker_is_session_plus_the_utterance_letter():
    assert speaker_of("Ses01F_impro01_M005") == "Ses01M"
    assert speaker_of("Ses03M_impro05a_F010") == "Ses03F"
    with pytest.raises(ValueError, match="not an IEMOCAP utterance id"):
        speaker_of("Ses06F_impro01_F000")


@pytest.mark.parametrize("protocol,folds", [("leave_one_speaker_out", 10), ("leave_one_session_out", 5)])
def test_folds_disjoint_and_each_speaker_tested_once(protocol, folds):
    tested = Counter()
    for k in range(folds):
        train, val, test = fold_speakers(protocol, k)
        assert len(train) == 8 and not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
        assert sorted(train + val + test) == sorted(all_speakers())
        tested.update(test)
        if protocol == "leave_one_speaker_out":
            # the session partner validates
            assert val[0][:5] == test[0][:5] and val[0] != test[0]
    assert tested == Counter(all_speakers())
    # the paper's 5 folds (0-4) hold out each session once
    sessions = [fold_speakers(protocol, k)[2][0][:5] for k in range(5)]
    assert sorted(sessions) == [f"Ses0{s}" for s in range(1, 6)]
    with pytest.raises(ValueError, match=f"folds 0-{folds - 1}"):
        fold_speakers(protocol, folds)


def dm(root, **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("batch_size", 4)
    kw.setdefault("crop_seconds", 0.5)
    return IEMOCAPDataModule(root=str(root), **kw)


def test_datamodule_folds_on_miniature_corpus(iemocap_corpus):
    utts = read_iemocap(iemocap_corpus)
    impro = select_utterances(utts)
    assert len(impro) == 10 * 4 * 2  # 2 per actor and class; exc, fru and scripted left out
    assert len(select_utterances(utts, merge_excited=True)) == 10 * 4 * 2 + 10  # one exc per actor
    assert len(select_utterances(utts, include_scripted=True)) == 10 * 4 * 2 + 10
    speaker_test_count = Counter()
    for fold in range(10):
        d = dm(iemocap_corpus, fold=fold)
        d.setup()
        spk = {k: {d.speakers[i] for i in s.speaker_ids} for k, s in d.splits.items()}
        assert not spk["train"] & spk["val"] and not spk["train"] & spk["test"] and not spk["val"] & spk["test"]
        assert len(spk["train"]) == 8 and len(spk["test"]) == 1 and len(spk["val"]) == 1
        speaker_test_count.update(spk["test"])
        assert (d.splits["train"].speakers >= 0).all() and (d.splits["test"].speakers == -1).all()
        assert [d.train_speakers[i] for i in d.splits["train"].speakers] == [d.speakers[i] for i in d.splits["train"].speaker_ids]
        assert sum(len(s.paths) for s in d.splits.values()) == len(impro)
    assert speaker_test_count == Counter(all_speakers())


def test_leave_one_session_out_holds_out_validation_utterances(iemocap_corpus):
    d = dm(iemocap_corpus, protocol="leave_one_session_out", fold=2, val_fraction=0.5)
    d.setup()
    test_spk = {d.speakers[i] for i in d.splits["test"].speaker_ids}
    assert test_spk == {"Ses03F", "Ses03M"}
    train, val = d.splits["train"], d.splits["val"]
    assert set(train.paths).isdisjoint(val.paths)
    # one of the two utterances per training speaker and class
    assert len(val.paths) == 8 * 4 and len(train.paths) == 8 * 4
    assert (val.speakers >= 0).all()


def test_loader_batches_carry_speakers_and_crops(iemocap_corpus):
    d = dm(iemocap_corpus, fold=3)
    d.setup()
    batch = next(iter(d.train_dataloader()))
    assert batch["waveform"].shape == (4, 8000)
    assert set(batch) >= {"waveform", "label", "speaker", "speaker_id", "length", "index"}
    i = int(batch["index"][0])
    assert batch["label"][0] == d.splits["train"].labels[i]
    ev = next(iter(d.test_dataloader()))
    path = iemocap_corpus / d.splits["test"].paths[int(ev["index"][0])]
    assert ev["waveform"].shape[1] == sf.info(str(path)).frames  # whole utterance


def test_shuffled_labels_keep_counts(iemocap_corpus):
    a, b = dm(iemocap_corpus), dm(iemocap_corpus, shuffle_labels=True)
    a.setup(), b.setup()
    assert sorted(a.splits["train"].labels) == sorted(b.splits["train"].labels)
    assert (a.splits["train"].labels != b.splits["train"].labels).any()
    np.testing.assert_array_equal(a.splits["test"].labels, b.splits["test"].labels)


def test_count_check_warns_unless_turned_off(iemocap_corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="audioexp.data.iemocap"):
        dm(iemocap_corpus, check_counts=False).setup()  # as the miniature config sets it
    assert "full release has" not in caplog.text
    real = tmp_path / "iemocap_copy"
    shutil.copytree(iemocap_corpus, real, ignore=shutil.ignore_patterns(".minicorpus.json"))
    with caplog.at_level(logging.WARNING, logger="audioexp.data.iemocap"):
        dm(real).setup()
    assert "80 utterances of the four classes" in caplog.text and "the full release has 2280" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="audioexp.data.iemocap"):
        dm(real, merge_excited=True).setup()
    assert "has 2943" in caplog.text
    # a labelled utterance without its WAV
    next(real.glob("Session2/sentences/wav/*_impro*/*.wav")).unlink()
    with pytest.raises(CorpusNotFoundError, match="have no WAV file"):
        dm(real).setup()


def test_missing_root_and_bad_options_say_what_is_expected(tmp_path):
    with pytest.raises(CorpusNotFoundError, match=r"(?s)expected the IEMOCAP layout:.*EmoEvaluation"):
        dm(tmp_path / "nowhere").prepare_data()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusNotFoundError, match="Session1/dialog/EmoEvaluation is missing"):
        dm(tmp_path / "empty").setup()
    with pytest.raises(ValueError, match="folds 0-4"):
        dm(tmp_path, protocol="leave_one_session_out", fold=7)
    with pytest.raises(ValueError, match="protocol must be one of"):
        dm(tmp_path, protocol="random")
    with pytest.raises(ValueError, match="4 classes"):
        dm(tmp_path, num_classes=6)

FBANK41 = Path(__file__).resolve().parents[2] / "audioexp" / "conf" / "features" / "fbank41.yaml"  # the recipes' front-end


def _dynamics(feats: torch.Tensor) -> np.ndarray:
    """Utterance statistics that survive the recipe's per-filter normalisation: mean absolute
    frame-to-frame change, autocorrelation at 3 and 10 frames per filter, and the correlation of
    neighbouring filters."""
    x = feats[0, 0].double().numpy()
    lag = lambda k: (x[:, k:] * x[:, :-k]).mean(1)  # noqa: E731
    return np.r_[np.abs(np.diff(x, axis=1)).mean(1), lag(3), lag(10), np.diag(np.corrcoef(x), 1)]


def _loso_weighted_f1(X, y, speakers):
    scores = {}
    for s in np.unique(speakers):
        held = speakers == s
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)).fit(X[~held], y[~held])
        scores[s] = f1_score(y[held], clf.predict(X[held]), average="weighted")
    return scores


def test_miniature_corpus_carries_the_emotion_for_every_held_out_speaker(tmp_path_factory):
    """The generated emotions are learnable across actors from the model's own input (41 log
    filterbanks, VAD, per-utterance normalisation): a logistic regression, leave one speaker out,
    is well above chance for every actor; with labels shuffled within each actor it is at chance."""
    root = write_minicorpus("iemocap", tmp_path_factory.mktemp("emotion") / "iemocap", seed=3, utterances_per_emotion=10,
                            scripted_per_actor=0, extra_labels=(), min_seconds=1.0, max_seconds=1.5)
    recipe = OmegaConf.merge({"data": {"sample_rate": 16000}}, {"fbank": OmegaConf.load(FBANK41)}).fbank
    fbank = LogFilterbank(**{k: v for k, v in recipe.items() if k != "_target_"})  # at the corpus rate
    X, y, speakers = [], [], []
    with torch.no_grad():
        for u, c in select_utterances(read_iemocap(root)):
            audio, _ = sf.read(str(root / u.path), dtype="float32")
            X.append(_dynamics(fbank(torch.from_numpy(audio)[None])))
            y.append(c), speakers.append(u.speaker)
    X, y, speakers = np.array(X), np.array(y), np.array(speakers)
    assert len(y) == 10 * 4 * 10
    scores = _loso_weighted_f1(X, y, speakers)
    assert min(scores.values()) >= 0.6, scores  # chance: 0.25; design 1 gave 0.52
    assert np.mean(list(scores.values())) >= 0.8, scores  # design 1: 0.72
    rng = np.random.default_rng(0)
    shuffled = y.copy()
    for s in np.unique(speakers):
        i = np.flatnonzero(speakers == s)
        shuffled[i] = y[rng.permutation(i)]
    assert np.mean(list(_loso_weighted_f1(X, shuffled, speakers).values())) <= 0.4


def test_older_miniature_design_is_rewritten_with_its_parameters(tmp_path, caplog):
    root = write_minicorpus("iemocap", tmp_path / "iemocap", seed=1, utterances_per_emotion=1, scripted_per_actor=0,
                            extra_labels=(), min_seconds=0.5, max_seconds=0.5)
    stamp = read_stamp(root)
    assert stamp["design_version"] == DESIGN_VERSION
    before = sf.read(str(root / select_utterances(read_iemocap(root))[0][0].path))[0]
    (root / STAMP_NAME).write_text(json.dumps({**stamp, "design_version": DESIGN_VERSION - 1}))
    with caplog.at_level(logging.WARNING, logger="audioexp.minicorpus"):
        dm(root, prepare=functools.partial(prepare, kind="iemocap")).prepare_data()
    assert "older design" in caplog.text
    assert read_stamp(root) == stamp  # same seed and parameters, current design
    np.testing.assert_array_equal(sf.read(str(root / select_utterances(read_iemocap(root))[0][0].path))[0], before)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="audioexp.minicorpus"):
        dm(root, prepare=functools.partial(prepare, kind="iemocap")).prepare_data()  # current: left alone
    assert "older design" not in caplog.text
