"""Predict and export with a fitted replay countermeasure (a task=fit_gmm run) on the miniature
ASVspoof 2017: the LLRs of `python -m audioexp.predict` equal the run's own dev scores, the
decision is the dev EER threshold's, and the exported GMM scorers equal the framework's LLRs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from audioexp.__main__ import run
from audioexp.metrics.verification import equal_error_rate
from tests.conftest import compose_config

SMALL = ["backend.n_components=2", "backend.max_iter=15", "backend.max_frames=1500", "logger=none"]


@pytest.fixture(scope="module")
def fusion_run(tmp_path_factory, asvspoof_corpus):
    """The CF/CM fusion experiment (systems cf, cm, cf+cm, score(cf+cm)) with small GMMs."""
    out = tmp_path_factory.mktemp("replay_predict") / "run"
    run(compose_config(["+experiment=asvspoof17_fusion", f"data.root={asvspoof_corpus}", *SMALL], out))
    return out


def _dev_files(corpus_root):
    from audioexp.data.asvspoof2017 import ASVspoof2017

    corpus = ASVspoof2017(corpus_root)
    corpus.prepare_data(("dev",))
    return corpus.utterances("dev")


def _scores(run_dir, split, system):
    return np.loadtxt(run_dir / f"scores_{split}_{system}.txt")[:, 0]


def test_saved_systems_and_thresholds(fusion_run, asvspoof_corpus):
    meta = json.loads((fusion_run / "countermeasure" / "systems.json").read_text())
    assert set(meta["systems"]) == {"cf", "cm", "cf+cm", "score(cf+cm)"}
    assert meta["protocol"] == "dev"
    _, labels = _dev_files(asvspoof_corpus)
    for name in ("cf", "cm", "cf+cm"):
        info = meta["systems"][name]
        eer, threshold = equal_error_rate(_scores(fusion_run, "dev", name.replace("+", "_")), labels)
        assert info["trained_on"] == ["train"] and info["n_components"] == 2
        assert info["dev_eer"] == pytest.approx(eer, abs=1e-6)
        assert info["threshold"] == pytest.approx(threshold, abs=1e-5)  # scores files hold 6 decimals


@pytest.mark.parametrize("system", ["cf", "cf+cm", "score(cf+cm)"])
def test_predicted_llrs_equal_the_runs_dev_scores(fusion_run, asvspoof_corpus, system):
    import audioexp

    predictor = audioexp.load(fusion_run, system=system)
    paths, labels = _dev_files(asvspoof_corpus)
    meta = json.loads((fusion_run / "countermeasure" / "systems.json").read_text())["systems"]
    # the scores files are printed to 6 decimals: each is within 5e-7 of the run's score
    if system.startswith("score("):  # the fusion's weights on its systems' dev scores
        info = meta[system]
        expected = np.stack([_scores(fusion_run, "dev", c) for c in info["components"]], 1) @ info["weights"] + info["bias"]
        atol = 5e-7 * np.abs(info["weights"]).sum() + 1e-6
    else:
        expected, atol = _scores(fusion_run, "dev", system.replace("+", "_")), 1e-6
    got = np.array([predictor.predict(p)["llr"] for p in paths[:6]])
    np.testing.assert_allclose(got, expected[:6], rtol=0, atol=atol)
    threshold = meta[system]["threshold"]
    decisions = [predictor.predict(p)["decision"] for p in paths[:2]]
    assert decisions == ["genuine" if s >= threshold else "spoof" for s in got[:2]]


def test_cli_rows_for_a_resampled_stereo_file_a_long_file_and_a_broken_one(fusion_run, asvspoof_corpus, tmp_path):
    import librosa

    from audioexp.predict import main

    paths, _ = _dev_files(asvspoof_corpus)
    y, sr = sf.read(paths[0])
    stereo = tmp_path / "stereo_44k.wav"
    sf.write(stereo, np.stack([librosa.resample(y, orig_sr=sr, target_sr=44100)] * 2, 1), 44100)
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(y, 10), sr)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    out = tmp_path / "rows.csv"
    assert main([str(fusion_run), str(paths[0]), str(stereo), str(long), str(broken), "--out", str(out),
                 "--system", "cf"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(paths[0]), str(stereo), str(long), str(broken)]
    first, resampled, tiled, bad = rows
    assert first["error"] == resampled["error"] == tiled["error"] == "" and "broken.wav" in bad["error"]
    assert first["system"] == "cf" and first["decision"] in ("genuine", "spoof") and first["note"] == ""
    assert "resampled from 44100 Hz" in resampled["note"]
    # resampled there and back: the same utterance to the GMMs, within a fraction of the dev scores' spread
    spread = np.std(_scores(fusion_run, "dev", "cf"))
    assert abs(float(resampled["llr"]) - float(first["llr"])) < 0.25 * spread
    assert float(tiled["seconds"]) == pytest.approx(10 * float(first["seconds"]), rel=1e-3)
    assert int(tiled["frames"]) > 9 * int(first["frames"])


def test_a_lower_rate_is_refused_in_its_row(fusion_run, asvspoof_corpus, tmp_path):
    import audioexp

    paths, _ = _dev_files(asvspoof_corpus)
    y, sr = sf.read(paths[0])
    low = tmp_path / "low.wav"
    sf.write(low, y[::2], sr // 2)
    rows = audioexp.load(fusion_run, system="cf").predict_files([low], progress=False)
    assert "8000" in rows[0]["error"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_gmm_scorers_equal_the_frameworks_llrs(fusion_run, asvspoof_corpus, tmp_path, fmt):
    """On real frames of dev utterances, within 1e-6 (the issue's tolerance)."""
    import torch

    import audioexp
    from audioexp.export import main

    out_dir = tmp_path / "export"
    assert main([str(fusion_run), "--format", fmt, "--out", str(out_dir)]) == 0
    files = sorted(p.name for p in out_dir.iterdir())
    suffix = "onnx" if fmt == "onnx" else "pt"
    assert {f"cf.{suffix}", f"cm.{suffix}", f"cf_cm.{suffix}", "systems.json"} <= set(files)
    predictor = audioexp.load(fusion_run, system="cf+cm")
    sidecar = json.loads((out_dir / f"cf_cm.{suffix}.json").read_text())
    assert sidecar["threshold"] == predictor.threshold and list(sidecar["frontends"]) == ["cf", "cm"]
    assert sidecar["input"]["shape"][1] == predictor.systems["cf+cm"]["dim"]
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out_dir / "cf_cm.onnx"), providers=["CPUExecutionProvider"])

        def score(frames):
            return session.run(None, {"frames": frames})[0][0]
    else:
        module = torch.jit.load(str(out_dir / "cf_cm.pt"))

        def score(frames):
            return module(torch.from_numpy(frames)).item()
    paths, _ = _dev_files(asvspoof_corpus)
    for p in paths[:4]:
        frames = predictor.frames(predictor.waveform(p))["cf+cm"].astype(np.float64)
        assert abs(score(frames) - predictor.llr({"cf+cm": frames})) < 1e-6
