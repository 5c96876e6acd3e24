"""The probe a task=probe run saves (probe/), used through ProbePredictor on the miniature EmoDB.

Measured here (eGeMAPS, quick grids, the miniature EmoDB of tests/conftest.py, split 0's 42
test files): re-embedding a test file and classifying it with the saved split-0 estimator gives
the run's prediction for every file and classifier, exactly. A 44.1 kHz stereo copy goes
through a resampling round trip that changes some eGeMAPS functionals a lot (the
``stddevNorm`` of MFCC 3/4, a standard deviation over a mean near 0, moves by up to 44 of the
speaker's standard deviations in the 20 files inspected): with the random forest, the
probabilities of a 16-bit stereo copy moved by at most 0.10 and 41 of 42 classes were kept
(the changed one had a margin of 0.04); logistic regression, linear in those functionals,
kept 35 of 42 (probabilities moved by up to 0.81). The test holds the random forest to a
tolerance of 0.2 (twice the measured change).
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from sklearn.metrics import recall_score
from sklearn.preprocessing import StandardScaler

from audioexp.__main__ import run
from audioexp.data.audio import load_audio
from audioexp.systems.embedding_probe import ProbePredictor
from tests.conftest import compose_config

CLASSIFIERS = ("logistic_regression", "svm", "random_forest")
#: Largest change of a random-forest class probability by the 44.1 kHz stereo round trip
#: (measured: 0.10 over split 0's 42 test files), doubled.
RESAMPLED_PROB_TOLERANCE = 0.2


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, emodb_corpus):
    out = tmp_path_factory.mktemp("probe_run")
    cfg = compose_config(["+experiment=emodb_probe", "embedder=egemaps", "probe=quick", f"data.root={emodb_corpus}",
                          "logger=none"], out)
    run(cfg)
    return out


def _test_rows(run_dir):
    with open(run_dir / "probe" / "test_predictions.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def predicted(probe_run, emodb_corpus):
    """Per classifier: its predictor and its rows for split 0's test files (predicted once)."""
    rows = _test_rows(probe_run)
    out = {}
    for clf in CLASSIFIERS:
        predictor = ProbePredictor.from_run(probe_run, classifier=clf)
        out[clf] = predictor, predictor.predict_files([emodb_corpus / r["file"] for r in rows], progress=False)
    return out


def test_saved_probe_predicts_what_the_run_scored(probe_run, predicted):
    info = json.loads((probe_run / "probe" / "probe.json").read_text())
    metrics = json.loads((probe_run / "metrics.json").read_text())
    rows = _test_rows(probe_run)
    assert set(info["classifiers"]) == set(CLASSIFIERS) and len(rows) == 42
    assert info["best"] == max(CLASSIFIERS, key=lambda c: metrics[f"test/{c}/uar"])
    assert sorted({r["speaker"] for r in rows}) == info["split0_test_speakers"]
    assert info["speaker_normalization"] and info["sample_rate"] == 16000 and info["embedder"]["config"]["feature_set"] == "eGeMAPSv02"
    for clf in CLASSIFIERS:
        predictor, got = predicted[clf]
        assert predictor.kind == "probe" and predictor.classifier == clf and predictor.sample_rate == 16000
        assert [g["error"] for g in got] == [""] * len(rows)
        assert {g["normalization"] for g in got} == {"corpus"}
        assert [g["top_class"] for g in got] == [r[f"pred_{clf}"] for r in rows], clf
        uar = recall_score([r["true_class"] for r in rows], [g["top_class"] for g in got], average="macro")
        assert uar == pytest.approx(metrics[f"test/{clf}/uar"], abs=1e-12)
        assert info["classifiers"][clf]["test_uar"] == pytest.approx(metrics[f"test/{clf}/uar"])
        if clf == "svm":  # SVC without probability=True: the class only
            assert got[0]["top_prob"] is None and "prob_anger" not in got[0]
        else:
            assert sum(got[0][f"prob_{c}"] for c in predictor.class_names) == pytest.approx(1.0, abs=1e-5)
    assert ProbePredictor.from_run(probe_run).classifier == info["best"]


def test_other_rates_long_corrupt_files_and_speakers(probe_run, predicted, emodb_corpus, tmp_path):
    rows = _test_rows(probe_run)
    predictor, original = predicted["random_forest"]
    # every second test file (21, all three test speakers) as a 44.1 kHz stereo PCM copy,
    # speakers given by a list file
    copies = tmp_path / "copies"
    copies.mkdir()
    lines = []
    for r in rows[::2]:
        wave, rate = sf.read(emodb_corpus / r["file"], dtype="float32")
        up = AF.resample(torch.from_numpy(wave), rate, 44100).numpy()
        name = r["file"].split("/")[-1].replace(".wav", "_44k.wav")
        sf.write(copies / name, np.stack([up, up], axis=1), 44100, subtype="PCM_16")
        lines.append(f"copies/{name} {r['speaker']}")
    (tmp_path / "copies.txt").write_text("\n".join(lines) + "\n")
    resampled = predictor.predict_files([tmp_path / "copies.txt"], progress=False)
    kept = 0
    for a, b in zip(original[::2], resampled):
        assert b["error"] == "" and b["normalization"] == "corpus"
        probs_a = np.array([a[f"prob_{c}"] for c in predictor.class_names])
        probs_b = np.array([b[f"prob_{c}"] for c in predictor.class_names])
        assert np.abs(probs_a - probs_b).max() <= RESAMPLED_PROB_TOLERANCE, (a["path"], probs_a, probs_b)
        margin = np.diff(np.sort(probs_a)[-2:])[0]
        if margin > 2 * RESAMPLED_PROB_TOLERANCE:
            assert a["top_class"] == b["top_class"], a["path"]
        kept += a["top_class"] == b["top_class"]
    assert kept >= 0.9 * len(resampled)  # measured: 41 of all 42

    # one file read in memory as 44.1 kHz stereo (channels, time): the class of the original
    first = emodb_corpus / rows[0]["file"]
    wave, rate = sf.read(first, dtype="float32")
    up = AF.resample(torch.from_numpy(wave), rate, 44100).numpy()
    alone = predictor.predict(np.stack([up, up]), 44100, speaker=rows[0]["speaker"])
    assert alone["normalization"] == "corpus" and alone["speaker"] == rows[0]["speaker"]
    assert abs(alone["seconds"] - len(wave) / rate) < 1e-3
    assert abs(alone["probs"][original[0]["top_class"]] - original[0][f"prob_{original[0]['top_class']}"]) <= RESAMPLED_PROB_TOLERANCE

    # a 10x longer file, a corrupt one, one file of an unknown speaker, two of a new speaker
    files = tmp_path / "mixed"
    files.mkdir()
    sf.write(files / "long.wav", np.tile(wave, 10), rate)
    (files / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    shutil.copy(emodb_corpus / rows[1]["file"], files / "stranger.wav")
    shutil.copy(emodb_corpus / rows[1]["file"], files / "solo.wav")
    shutil.copy(emodb_corpus / rows[2]["file"], files / "new_a.wav")
    shutil.copy(emodb_corpus / rows[3]["file"], files / "new_b.wav")
    (files / "list.txt").write_text(f"long.wav {rows[0]['speaker']}\ncorrupt.wav 12\nstranger.wav\nsolo.wav 77\n"
                                    "# a new speaker, two files\nnew_a.wav 99\nnew_b.wav 99\n")
    got = {r["path"].split("/")[-1]: r for r in predictor.predict_files([files / "list.txt"], progress=False)}
    assert list(got) == ["long.wav", "corrupt.wav", "stranger.wav", "solo.wav", "new_a.wav", "new_b.wav"]
    assert got["long.wav"]["error"] == "" and got["long.wav"]["top_class"] in predictor.class_names
    assert got["long.wav"]["seconds"] == pytest.approx(10 * len(wave) / rate, abs=1e-3)
    assert "corrupt.wav" in got["corrupt.wav"]["error"] and got["corrupt.wav"]["top_class"] == ""
    for name in ("stranger.wav", "solo.wav"):  # unknown speaker; a new speaker's only file
        assert "path speaker" in got[name]["error"] and got[name]["top_class"] == "" and got[name]["normalization"] == ""
    for name in ("new_a.wav", "new_b.wav"):
        assert got[name]["error"] == "" and got[name]["normalization"] == "files" and got[name]["speaker"] == "99"
    with pytest.raises(ValueError, match="path speaker"):
        predictor.predict(files / "stranger.wav")


def test_speaker_stats_equal_standard_scaler_on_raw_embeddings(probe_run, predicted, emodb_corpus):
    predictor = predicted["svm"][0]
    with np.load(probe_run / "probe" / "speaker_stats.npz", allow_pickle=False) as data:
        stats = {k: data[k] for k in data.files}
    assert list(stats["speakers"]) == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert stats["count"].tolist() == [14] * 10
    for k, speaker in [(0, "03"), (6, "13")]:  # a training and a test speaker of split 0
        paths = sorted((emodb_corpus / "wav").glob(f"{speaker}*.wav"))
        raw = np.stack([predictor.embedder.embed_waveform(load_audio(p, 16000).numpy(), 16000) for p in paths])
        scaler = StandardScaler().fit(raw)
        np.testing.assert_allclose(stats["mean"][k], scaler.mean_, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(stats["scale"][k], scaler.scale_, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(stats["std"][k], raw.std(axis=0), rtol=1e-10, atol=1e-10)


def test_byols_dataset_normalisation_is_saved_and_fixed_at_predict(tmp_path):
    """BYOL-S (random weights) with normalization=dataset: the corpus's log-mel statistics are
    saved, the predictor embeds with them fixed and predicts what the run scored (a smaller
    corpus: 4 speakers x 7 emotions, 2 inner folds)."""
    from audioexp.embedders.byols import ByolsCvT
    from audioexp.minicorpus import write_minicorpus

    corpus = write_minicorpus("emodb", tmp_path / "emodb", seed=3, num_speakers=4, texts_per_emotion=1,
                              min_seconds=0.3, max_seconds=0.5)
    torch.manual_seed(0)
    torch.save(ByolsCvT().state_dict(), tmp_path / "byols.pth")
    out = tmp_path / "run"
    cfg = compose_config(["+experiment=emodb_probe", "embedder=byols", f"embedder.checkpoint={tmp_path / 'byols.pth'}",
                          "probe=quick", "probe.classifiers=[svm]", "probe.cv_folds=2", f"data.root={corpus}",
                          "data.check_counts=false", "logger=none"], out)
    run(cfg)
    info = json.loads((out / "probe" / "probe.json").read_text())
    assert info["embedder"]["settings"]["normalization"] == "dataset"
    mean, std = info["embedder"]["log_mel_mean"], info["embedder"]["log_mel_std"]
    predictor = ProbePredictor.from_run(out)
    assert (predictor.embedder.normalization, predictor.embedder.mean, predictor.embedder.std) == ("fixed", mean, std)
    rows = _test_rows(out)
    assert len(rows) == 7
    got = predictor.predict_files([corpus / r["file"] for r in rows], progress=False)
    assert [g["top_class"] for g in got] == [r["pred_svm"] for r in rows]
