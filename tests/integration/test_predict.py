"""From a trained run to an answer: `python -m audioexp.predict` and `audioexp.load(run).predict`."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import audioexp
from audioexp.__main__ import run
from audioexp.inference import expand_paths
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, fm_corpus):
    run_dir = tmp_path_factory.mktemp("predict") / "demo"
    run(compose_config(["+experiment=demo", "+debug=limit", f"data.root={fm_corpus}", "logger=none"], run_dir))
    return run_dir


def test_classifier_predicts_as_evaluation_does_on_the_test_split(demo_run):
    """Per file, predict's probabilities equal the network's on the items the test loader makes
    (1e-5), and its accuracy over the test split is the run's test/acc (best checkpoint)."""
    import hydra

    predictor = audioexp.load(demo_run)
    assert predictor.kind == "classifier" and predictor.class_names == ["speech", "music"]
    dm = hydra.utils.instantiate(predictor.cfg.data)
    dm.prepare_data()
    dm.setup("test")
    test = dm._dataset("test")
    correct = []
    for i in range(len(test)):
        item = test[i]
        path = test.manifest.resolve(int(item["index"]))
        with torch.no_grad():
            expected = predictor.model(item["waveform"][None]).softmax(dim=1)[0].numpy()
        got = predictor.predict(path)
        assert got["windows"] == 1
        np.testing.assert_allclose([got["probs"][c] for c in predictor.class_names], expected, atol=1e-5)
        correct.append(predictor.class_names.index(got["top_class"]) == item["label"])
    trained = json.loads((demo_run / "metrics.json").read_text())
    assert np.mean(correct) == pytest.approx(trained["test/acc"], abs=1e-6)


def test_cli_rows_for_a_resampled_stereo_file_a_long_file_and_a_broken_one(demo_run, fm_corpus, tmp_path):
    """Three files (one at 44.1 kHz stereo, one 10x the 5-s training clip) and a corrupt one,
    given as a folder and a list file: one row per file with the documented fields; the long
    file is cut into 10 windows; the corrupt one is named in its row and does not stop the rest."""
    clips = sorted((fm_corpus / "music").rglob("*.wav"))[:10]
    x, sr = sf.read(clips[0])
    audio = tmp_path / "audio"
    audio.mkdir()
    import torchaudio.functional as AF

    stereo = AF.resample(torch.from_numpy(x).float(), sr, 44100).numpy()
    sf.write(audio / "stereo44k.wav", np.stack([stereo, stereo], axis=1), 44100)
    sf.write(audio / "long.wav", np.concatenate([sf.read(c)[0] for c in clips]), sr)
    (audio / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing here")
    listing = tmp_path / "files.txt"
    listing.write_text(f"# one more\n{clips[1]}\n")
    assert [p.name for p in expand_paths([audio, listing])] == ["broken.wav", "long.wav", "stereo44k.wav", clips[1].name]

    out = tmp_path / "pred.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOEXP_")}
    proc = subprocess.run([sys.executable, "-m", "audioexp.predict", str(demo_run), str(audio), str(listing),
                           "--out", str(out), "--batch-size", "3"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 could not be read" in proc.stderr
    rows = {os.path.basename(r["path"]): r for r in csv.DictReader(out.open())}
    assert set(rows) == {"broken.wav", "long.wav", "stereo44k.wav", clips[1].name}
    assert rows["broken.wav"]["error"] and "broken.wav" in rows["broken.wav"]["error"]
    predictor = audioexp.load(demo_run)
    for name in ("long.wav", "stereo44k.wav", clips[1].name):
        r = rows[name]
        assert r["error"] == "" and r["top_class"] in ("speech", "music")
        probs = [float(r["prob_speech"]), float(r["prob_music"])]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5) and float(r["top_prob"]) == pytest.approx(max(probs), abs=1e-6)
    assert rows["long.wav"]["windows"] == "10" and float(rows["long.wav"]["seconds"]) == pytest.approx(50.0, abs=0.01)
    # the long file's probabilities are the mean of its 10 clips' (the windows tile it exactly)
    per_clip = np.array([[predictor.predict(c)["probs"][k] for k in ("speech", "music")] for c in clips])
    np.testing.assert_allclose([float(rows["long.wav"]["prob_speech"]), float(rows["long.wav"]["prob_music"])],
                               per_clip.mean(axis=0), atol=1e-5)
    # the 44.1 kHz stereo copy is converted back to the run's rate and mono: the same answer
    same = predictor.predict(clips[0])
    assert float(rows["stereo44k.wav"]["prob_music"]) == pytest.approx(same["probs"]["music"], abs=0.02)
    # a waveform from Python, at its own rate and channel count
    assert predictor.predict(np.stack([stereo, stereo]), 44100)["top_class"] == rows["stereo44k.wav"]["top_class"]
    with pytest.raises(ValueError, match="verification run"):
        predictor.score(clips[0], clips[1])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_equals_pytorch_on_random_audio_of_three_lengths(demo_run, tmp_path, fmt):
    """`python -m audioexp.export RUN --format onnx|torchscript`: the file (run with onnxruntime or
    torch.jit.load) gives PyTorch's logits within 1e-4 (of their scale) on random audio of 3 lengths, batch 2; the
    sidecar names the rate, the classes, the front-end and the run's metrics."""
    from audioexp.export import export_run

    out = export_run(demo_run, fmt, tmp_path / f"m.{fmt}")
    side = json.loads(out.with_suffix(out.suffix + ".json").read_text())
    assert side["input"]["sample_rate"] == 16000 and side["class_names"] == ["speech", "music"]
    assert side["frontend"]["_target_"].endswith("LogMelSpectrogram") and "test/acc" in side["metrics"]
    predictor = audioexp.load(demo_run)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])

        def exported(x):
            return session.run(None, {"waveform": x.numpy()})[0]
    else:
        module = torch.jit.load(str(out))

        def exported(x):
            return module(x).detach().numpy()
    gen = torch.Generator().manual_seed(5)
    for seconds in (0.8, 5.0, 11.1):
        x = 0.2 * torch.randn(2, int(seconds * 16000), generator=gen)
        with torch.no_grad():
            expected = predictor.model(x).numpy()
        # 1e-4 absolute for logits of order 1; float32 keeps 7 digits, so logits of order 100 (this
        # briefly trained model on random audio) are held to 1e-4 of their largest magnitude
        np.testing.assert_allclose(exported(x), expected, atol=1e-4 * max(1.0, float(np.abs(expected).max())), rtol=0)
