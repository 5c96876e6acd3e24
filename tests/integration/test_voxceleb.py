"""VoxCeleb recipes: embeddings from a finished run, batched = per-item, sweeps, real sample files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from audioexp.__main__ import run
from audioexp.data.voxceleb1 import read_iden_split
from audioexp.inference import embed_file, load_run, score_pair
from tests.conftest import ROOT, SHARED_DATA, compose_config

SMALL = ["model.backbone.width=0.125", "data.crop_seconds=1.0"]  # a small VGG so CPU tests stay quick


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, voxceleb_corpus):
    out = tmp_path_factory.mktemp("vox_run")
    cfg = compose_config(
        ["+experiment=voxceleb_centerloss", "+debug=limit", f"data.root={voxceleb_corpus}", "logger=none",
         "trainer.max_epochs=1", *SMALL], out)
    run(cfg)
    return out


def test_embed_task_and_python_api_agree(trained_run, voxceleb_corpus, tmp_path):
    files = [voxceleb_corpus / "wav" / p for _, p in read_iden_split(voxceleb_corpus / "iden_split.txt")[:2]]
    cfg = compose_config(
        ["task=embed", f"embed.run_dir={trained_run}", f"embed.files=[{files[0]},{files[1]}]", "logger=none"], tmp_path
    )
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    saved = np.load(tmp_path / "embeddings.npz")
    assert saved["embeddings"].shape == (2, 128) and metrics["dim"] == 128
    model = load_run(trained_run)
    np.testing.assert_allclose(embed_file(model, files[0]), saved["embeddings"][0], rtol=1e-5, atol=1e-6)
    assert metrics["score"] == pytest.approx(score_pair(model, files[0], files[1]), abs=1e-6)
    assert -1.0 <= metrics["score"] <= 1.0


def test_embed_names_every_bad_file_or_skips_and_counts_them(trained_run, voxceleb_corpus, tmp_path):
    import soundfile as sf

    good = [voxceleb_corpus / "wav" / p for _, p in read_iden_split(voxceleb_corpus / "iden_split.txt")[:2]]
    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    sf.write(short, np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.1, 16000)
    files = f"embed.files=[{good[0]},{silent},{short},{good[1]}]"
    with pytest.raises(ValueError, match=rf"(?s)1 bad audio file.*{short}: is 0.100 s long"):
        run(compose_config(["task=embed", f"embed.run_dir={trained_run}", files, "logger=none"], tmp_path / "a"))
    # the silent file passes the header check and is refused when read, naming it
    with pytest.raises(RuntimeError, match=rf"{silent}: is digitally silent"):
        run(compose_config(["task=embed", f"embed.run_dir={trained_run}", f"embed.files=[{good[0]},{silent}]",
                            "logger=none"], tmp_path / "b"))
    run(compose_config(["task=embed", f"embed.run_dir={trained_run}", files, "embed.skip_bad_files=true", "logger=none"],
                       tmp_path / "c"))
    saved = np.load(tmp_path / "c" / "embeddings.npz")
    assert list(saved["files"]) == [str(good[0]), str(good[1])] and sorted(saved["skipped"]) == sorted([str(silent), str(short)])
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["skipped_files"] == 2


def test_evaluate_checks_the_corpus_and_records_skips(trained_run, voxceleb_corpus, tmp_path):
    import shutil

    import soundfile as sf

    root = tmp_path / "vox"
    shutil.copytree(voxceleb_corpus, root, ignore=shutil.ignore_patterns(".audioexp"))
    test_file = next(p for s, p in read_iden_split(root / "iden_split.txt") if s == 3)
    sf.write(root / "wav" / test_file, np.zeros(100, np.float32), 16000)  # too short
    base = ["task=evaluate", f"eval.run_dir={trained_run}", f"eval.data_root={root}", "logger=none"]
    with pytest.raises(ValueError, match=rf"(?s)bad audio file.*{test_file}: is 0.006 s long"):
        run(compose_config(base, tmp_path / "a"))
    run(compose_config([*base, "eval.skip_bad_files=true"], tmp_path / "b"))
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["data/test/skipped_files"] == 1 and metrics["data/train/skipped_files"] == 0
    assert "test/acc" in metrics


def test_batched_embeddings_equal_per_item(trained_run, voxceleb_corpus):
    model = load_run(trained_run)
    from audioexp.data.audio import load_audio

    paths = [voxceleb_corpus / "wav" / p for _, p in read_iden_split(voxceleb_corpus / "iden_split.txt")[:4]]
    waves = [load_audio(p, 16000) for p in paths]
    lengths = torch.tensor([len(w) for w in waves])
    assert len(set(lengths.tolist())) > 1, "the test needs utterances of different lengths"
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    with torch.no_grad():
        batched = model.embed(batch, lengths)
        single = torch.cat([model.embed(w[None]) for w in waves])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def test_sweep_over_network_and_lambda(tmp_path, voxceleb_corpus):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "audioexp", "-m", "+experiment=voxceleb_centerloss", "model.backbone.config=A,B",
           "model.center_loss_weight=0,5", "+debug=fdr", "logger=none", f"data.root={voxceleb_corpus}", *SMALL,
           f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = set()
    for job in range(4):
        cfg = (sweep / str(job) / "resolved_config.yaml").read_text()
        network = "A" if "config: A" in cfg else "B"
        weight = "0.0" if "center_loss_weight: 0" in cfg else "5"
        seen.add((network, weight))
        assert "test/acc" in json.loads((sweep / str(job) / "metrics.json").read_text())
    assert seen == {("A", "0.0"), ("A", "5"), ("B", "0.0"), ("B", "5")}


REAL_SAMPLE = SHARED_DATA / "voxceleb1-sample"


@pytest.mark.skipif(not REAL_SAMPLE.exists(), reason="../shared/data/voxceleb1-sample is not present")
@pytest.mark.parametrize("experiment", ["voxceleb_centerloss", "voxceleb_softmax"])
def test_identification_runs_on_the_real_sample_files(experiment, tmp_path):
    # two speakers, one utterance per split each, no trial list: identification only; each
    # speaker has one video, so validation is held out by utterance (by video: an error)
    cfg = compose_config([f"+experiment={experiment}", "+debug=fdr", f"data.root={REAL_SAMPLE}", "logger=none",
                          f"data.cache_dir={tmp_path / 'cache'}", "data.iden_val_by=utterance", *SMALL], tmp_path)
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and cfg.data.num_classes == 2


def test_predict_on_whole_utterances_as_evaluation(trained_run, voxceleb_corpus):
    """`audioexp.load(run).predict`: a speaker-identification run gives its speakers'
    probabilities from the whole utterance (the network's own forward, 1e-5), top class first."""
    import audioexp

    predictor = audioexp.load(trained_run)
    assert predictor.kind == "classifier" and predictor.window_seconds is None
    path = voxceleb_corpus / "wav" / read_iden_split(voxceleb_corpus / "iden_split.txt")[0][1]
    from audioexp.data.audio import load_audio

    with torch.no_grad():
        expected = predictor.model(load_audio(path, 16000)[None]).softmax(dim=1)[0].numpy()
    got = predictor.predict(path)
    assert got["windows"] == 1
    np.testing.assert_allclose([got["probs"][c] for c in predictor.class_names], expected, atol=1e-5)
    assert got["top_class"] == predictor.class_names[int(np.argmax(expected))]


@pytest.fixture(scope="module")
def verification_run(tmp_path_factory, voxceleb_corpus):
    out = tmp_path_factory.mktemp("vox_veri_run")
    cfg = compose_config(
        ["+experiment=voxceleb_centerloss_verification", "+debug=limit", f"data.root={voxceleb_corpus}",
         "logger=none", "trainer.max_epochs=1", "trainer.limit_test_batches=1.0", *SMALL], out)
    run(cfg)
    return out


def test_verification_predict_gives_embeddings_and_scores_the_trial_list_as_evaluation(verification_run,
                                                                                         voxceleb_corpus, tmp_path):
    """A verification run: predict (task=predict) gives each file's embedding, 44.1 kHz stereo,
    10x long and corrupt files included; score(a, b) is the cosine of the embeddings; the trial
    list scored by predict has the run's test EER."""
    import csv

    import librosa
    import soundfile as sf

    import audioexp
    from audioexp.data.voxceleb1 import read_trial_list
    from audioexp.metrics.verification import equal_error_rate

    predictor = audioexp.load(verification_run)
    assert predictor.kind == "embedding"
    trials = read_trial_list(voxceleb_corpus / "veri_test.txt")
    a, b = (voxceleb_corpus / "wav" / p for p in trials[0][1:])
    model = load_run(verification_run)
    assert predictor.score(a, b) == pytest.approx(score_pair(model, a, b), abs=1e-5)

    y, sr = sf.read(a)
    stereo, long, broken = tmp_path / "stereo_44k.wav", tmp_path / "long.wav", tmp_path / "broken.wav"
    sf.write(stereo, np.stack([librosa.resample(y, orig_sr=sr, target_sr=44100)] * 2, 1), 44100)
    sf.write(long, np.tile(y, 10), sr)
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    out = tmp_path / "predict"
    run(compose_config(["task=predict", f"predict.run_dir={verification_run}",
                        f"predict.paths=[{a},{stereo},{long},{broken}]", "logger=none"], out))
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["path"] for r in rows] == [str(a), str(stereo), str(long), str(broken)]
    assert all(r["error"] == "" for r in rows[:3]) and "broken.wav" in rows[3]["error"]
    vectors = [np.array(r["embedding"].split(), dtype=float) for r in rows[:3]]
    assert all(v.shape == (128,) for v in vectors)
    np.testing.assert_allclose(vectors[0], embed_file(model, a), rtol=1e-4, atol=1e-5)  # printed to 6 digits
    from audioexp.inference import cosine_score

    assert cosine_score(vectors[0], vectors[1]) > 0.9  # the same utterance through 44.1 kHz stereo
    assert json.loads((out / "metrics.json").read_text())["error_rows"] == 1

    from audioexp.predict import main

    scored = tmp_path / "trials.csv"
    assert main([str(verification_run), "--trials", str(voxceleb_corpus / "veri_test.txt"), "--out", str(scored)]) == 0
    table = list(csv.DictReader(scored.open()))
    assert len(table) == len(trials) and all(r["error"] == "" for r in table)
    eer, _ = equal_error_rate(np.array([float(r["score"]) for r in table]), np.array([int(r["label"]) for r in table]))
    assert eer == pytest.approx(json.loads((verification_run / "metrics.json").read_text())["test/eer"], abs=1e-6)
