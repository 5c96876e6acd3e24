"""`python -m audioexp.export` for the speaker and emotion networks: the VGG center-loss network
of Yadav & Rai (2018) on log-power spectrograms (an identification run: logits; a verification
run: embeddings) and the ADResNet of Xi et al. (2022) on VAD-packed log filterbanks (logits).

The run dirs are built without training, as ``task=train`` leaves them (resolved config,
``run.json``, a checkpoint), from the real experiment configs, so what is exported is the
network a user's run rebuilds; its weights are random (BatchNorm statistics included), which
is all an equivalence test needs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import audioexp.export
from audioexp.export import WaveformScores, export_run
from audioexp.inference import Predictor
from tests.conftest import compose_config

SAMPLE_RATE = 16000
SPEAKERS = ["id10001", "id10002", "id10003", "id10004", "id10005"]
#: name: (experiment overrides, output name, class names in the sidecar, front-end class)
RUNS = {
    "vgg_identification": (["+experiment=voxceleb_centerloss", f"data.num_classes={len(SPEAKERS)}",
                            f"data.class_names=[{','.join(SPEAKERS)}]"], "logits", SPEAKERS, "LogPowerSpectrogram"),
    "vgg_verification": (["+experiment=voxceleb_centerloss_verification", f"data.num_classes={len(SPEAKERS)}",
                          f"data.class_names=[{','.join(SPEAKERS)}]"], "embedding", None, "LogPowerSpectrogram"),
    "adresnet": (["+experiment=iemocap_adresnet", "model.pretrained=none"], "logits",
                 ["neutral", "happy", "angry", "sad"], "LogFilterbank"),
}
#: Lengths (seconds) of the random audio the exported files are compared on, batch 2.
SECONDS = (1.0, 3.7, 7.3)
TOLERANCE = 1e-4  # absolute, on logits and embeddings


def write_untrained_run(name: str, run_dir):
    """A run dir as ``task=train`` leaves one (``resolved_config.yaml``, ``run.json`` naming the
    best checkpoint, the checkpoint), holding the experiment's network with random weights and
    random BatchNorm statistics (so eval-mode BatchNorm is not the identity)."""
    from audioexp.tasks.skeleton import resolved_config
    from audioexp.utils.runs import RESOLVED_CONFIG, RUN_INFO, build_model

    cfg = compose_config(RUNS[name][0], run_dir)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(0.2 * torch.randn(module.running_mean.shape, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
    saved = resolved_config(cfg)
    if name == "adresnet":  # a fine-tuned run names its speaker run; rebuilding it must not need it
        saved["model"].update(pretrained="run", pretrained_run=str(run_dir / "no_such_speaker_run"))
    (run_dir / "checkpoints").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(saved), run_dir / RESOLVED_CONFIG)
    torch.save({"state_dict": model.state_dict()}, run_dir / "checkpoints" / "epoch_000.ckpt")
    (run_dir / RUN_INFO).write_text(json.dumps({"experiment": cfg.name, "task": "train",
                                                "best_checkpoint": "checkpoints/epoch_000.ckpt"}))
    return run_dir


def check_audio(seconds: float, gen: torch.Generator) -> torch.Tensor:
    """Random audio (batch 2) with a stretch 60 dB down in each item (the first quarter of one,
    the middle third of the other), which the ADResNet's VAD drops: the items keep different
    numbers of speech frames, both fewer than the input's frames, so the packed length is
    neither the input's nor the same per item."""
    n = int(seconds * SAMPLE_RATE)
    x = 0.1 * torch.randn(2, n, generator=gen)
    x[0, : n // 4] *= 1e-3
    x[1, n // 3 : 2 * n // 3] *= 1e-3
    return x


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (run dir, [(audio, PyTorch's output)] for each of :data:`SECONDS`), built once."""
    built = {}
    for name in RUNS:
        run_dir = write_untrained_run(name, tmp_path_factory.mktemp("export_speaker") / name)
        predictor = Predictor.from_run(run_dir)
        net = WaveformScores(predictor.model, predictor.kind).eval()
        gen = torch.Generator().manual_seed(5)
        cases = []
        for seconds in SECONDS:
            x = check_audio(seconds, gen)
            with torch.no_grad():
                cases.append((x, net(x).numpy()))
        built[name] = (run_dir, predictor, cases)
    return built


def exported_runner(path, fmt):
    """The exported file as a function of a (batch, time) waveform, in onnxruntime or TorchScript."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"waveform": x.numpy()})[0]
    module = torch.jit.load(str(path))
    return lambda x: module(x).detach().numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", list(RUNS))
def test_export_equals_pytorch_on_random_audio_of_three_lengths(runs, name, fmt, tmp_path, monkeypatch):
    """The exported file (onnxruntime / torch.jit.load) gives the network's logits or embeddings
    within 1e-4 (absolute) of PyTorch on random audio of 1.0, 3.7 and 7.3 s, batch 2; the
    sidecar names the rate, the classes (None for embeddings), the output and the front-end."""
    run_dir, predictor, cases = runs[name]
    _, output, class_names, frontend = RUNS[name]
    # export_run's own check on one length (the three are compared below), to save time
    monkeypatch.setattr(audioexp.export, "CHECK_SECONDS", (1.0,))
    out = export_run(run_dir, fmt, tmp_path / f"model.{fmt}", tolerance=TOLERANCE)
    side = json.loads(out.with_suffix(out.suffix + ".json").read_text())
    assert side["input"]["sample_rate"] == SAMPLE_RATE and side["input"]["name"] == "waveform"
    assert side["output"]["name"] == output and side["class_names"] == class_names
    assert side["frontend"]["_target_"].endswith(frontend)
    assert side["model_target"] == predictor.cfg.model._target_
    assert side["clip_seconds"] is None  # whole utterances, not fixed-length clips
    assert list(side["max_abs_difference_from_pytorch"]) == ["1.0"]
    assert side["max_abs_difference_from_pytorch"]["1.0"] <= TOLERANCE
    exported = exported_runner(out, fmt)
    width = 128 if output == "embedding" else len(class_names)
    for (x, expected), seconds in zip(cases, SECONDS):
        got = exported(x)
        assert got.shape == expected.shape == (2, width)
        diff = float(np.abs(got - expected).max())
        print(f"{name} {fmt} {seconds} s: max abs difference {diff:.3g} (outputs up to {np.abs(expected).max():.3g})")
        assert diff <= TOLERANCE, f"{name} {fmt} {seconds} s: {diff:.3g}"
    if name == "adresnet":  # the check audio does exercise the VAD (see check_audio)
        for x, _ in cases:
            counts = predictor.model.frontend.speech_mask(x).sum(dim=1).tolist()
            frames = predictor.model.frontend.num_frames(x.shape[-1])
            assert counts[0] != counts[1] and max(counts) <= 0.8 * frames, (counts, frames)
