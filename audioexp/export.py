"""Export a finished run's network with its front-end: waveform in, scores out.

    python -m audioexp.export RUN_DIR --format onnx|torchscript [--out FILE]

The exported graph takes a float32 waveform batch ``(batch, time)`` at the run's sample rate,
of any length (dynamic batch and time), and gives a classifier's logits ``(batch, classes)``
or a verification run's embeddings ``(batch, ndims)``. Beside it, ``FILE.json`` records the
sample rate, class names, what the output is, the front-end's settings, the run's metrics, the
git commit of the exporting code, and the largest difference from PyTorch measured on random audio of
three lengths at export (the export fails above ``--tolerance``).

ONNX goes through ``torch.onnx.export(dynamo=True)`` (opset 18: the STFT of the front-end is a
complex op that only the dynamo exporter translates) and is checked with ``onnxruntime``;
TorchScript is a trace (``torch.jit.trace``). Both need ``pip install audioexp[export]``
(``make install`` includes it) for ONNX. What the graph leaves to the caller: resampling and
down-mixing (:class:`audioexp.inference.Predictor` does them), and the windowing of very long
inputs (the graph holds the network's path for one window; the systems' own windowing beyond
``model.eval_window_seconds`` is Python control flow that a trace cannot keep).

A replay countermeasure run (``task=fit_gmm``) exports each GMM system's scoring module
(:class:`audioexp.backends.gmm_torch.GMMLikelihoodRatio`): an utterance's frames ``(frames,
dim)`` float64 in, its LLR ``(1,)`` out, one file per system (``RUN_DIR/export/<system>.onnx|pt``)
beside the GMM parameters it holds, with a sidecar naming the front-end (its config and
settings: the frames are the caller's to compute, e.g. with audioexp's front-end) and the dev
EER threshold; ``systems.json`` is copied beside them for the score fusions' weights. The
check compares it with the framework's own scoring on random frames of three lengths.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "WaveformScores", "export_run", "main"]

FORMATS = ("onnx", "torchscript")
#: Lengths (seconds) of the random audio the exported graph is checked on against PyTorch.
CHECK_SECONDS = (1.0, 3.7, 7.3)


class WaveformScores(nn.Module):
    """A run's network as a plain module: ``(batch, time)`` waveform -> logits or embeddings."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        if kind not in ("classifier", "embedding"):
            raise ValueError(f"kind must be 'classifier' or 'embedding', got {kind!r}")
        self.model = model
        self.kind = kind

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.model.embed(waveform) if self.kind == "embedding" else self.model(waveform)


@contextlib.contextmanager
def _traceable(model: nn.Module):
    """A LightningModule's ``trainer`` property raises outside a Trainer; tracing probes every
    attribute, so say that we are scripting (what Lightning's own ``to_torchscript`` does)."""
    old = getattr(model, "_jit_is_scripting", None)
    if old is not None:
        model._jit_is_scripting = True
    try:
        yield
    finally:
        if old is not None:
            model._jit_is_scripting = old


def _git_commit() -> str | None:
    """The commit of the code that exports (and rebuilt the network), or None outside a checkout."""
    import subprocess

    try:
        proc = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def export_run(run_dir, fmt: str, out=None, checkpoint: str = "best", tolerance: float | None = None,
               seed: int = 0) -> Path:
    """Write the run's network (``fmt``: onnx | torchscript) and its JSON sidecar; returns the file
    (a fit_gmm run: :func:`export_countermeasure`, the first system's file). ``tolerance``:
    1e-3 for a network, 1e-6 for a GMM scorer unless given.

    Raises
    ------
    ValueError
        Unknown format, or the exported graph differs from PyTorch by more than ``tolerance``
        on the check audio.
    """
    from omegaconf import OmegaConf

    from audioexp.inference import Predictor
    from audioexp.systems.replay_countermeasure import COUNTERMEASURE_DIR
    from audioexp.utils.files import atomic_write_json

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    run_dir = Path(run_dir)
    if (run_dir / COUNTERMEASURE_DIR / "systems.json").is_file():
        return export_countermeasure(run_dir, fmt, Path(out) if out else None, tolerance or 1e-6, seed)[0]
    tolerance = 1e-3 if tolerance is None else tolerance
    predictor = Predictor.from_run(run_dir, checkpoint)
    net = WaveformScores(predictor.model, predictor.kind).eval()
    sr = predictor.sample_rate
    out = Path(out) if out else run_dir / "export" / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    example = 0.1 * torch.randn(1, int(3 * sr), generator=gen)
    with torch.no_grad(), _traceable(predictor.model):
        dynamic = {0: torch.export.Dim("batch", min=1, max=1024),
                   1: torch.export.Dim("time", min=int(0.5 * sr), max=int(3600 * sr))}
        run = _export_module(net, example, fmt, out, "waveform",
                             "logits" if predictor.kind == "classifier" else "embedding", dynamic)
        diffs = {}
        for seconds in CHECK_SECONDS:
            x = 0.1 * torch.randn(2, int(seconds * sr), generator=gen)
            diffs[seconds] = float(np.abs(run(x.numpy()) - net(x).numpy()).max())
    worst = max(diffs.values())
    if worst > tolerance:
        out.unlink(missing_ok=True)
        raise ValueError(f"the {fmt} export of {run_dir} differs from PyTorch by {worst:.2e} (> {tolerance:g}) "
                         f"on random audio of {CHECK_SECONDS} s")
    metrics_path = run_dir / "metrics.json"
    cfg = predictor.cfg
    sidecar = {
        "format": fmt,
        "file": out.name,
        "input": {"name": "waveform", "shape": ["batch", "time"], "dtype": "float32", "sample_rate": sr,
                  "channels": 1},
        "output": {"name": "logits" if predictor.kind == "classifier" else "embedding",
                   "meaning": "class logits (softmax for probabilities)" if predictor.kind == "classifier"
                   else "speaker embedding (compare with cosine similarity)"},
        "class_names": predictor.class_names if predictor.kind == "classifier" else None,
        "clip_seconds": predictor.window_seconds,
        "frontend": OmegaConf.to_container(cfg.get("features") or cfg.model.get("frontend") or {}, resolve=False),
        "model_target": cfg.model.get("_target_"),
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.exists() else {},
        "run_dir": str(run_dir.resolve()),
        "git_commit": _git_commit(),  # of the exporting code
        "max_abs_difference_from_pytorch": {str(k): v for k, v in diffs.items()},
    }
    atomic_write_json(out.with_suffix(out.suffix + ".json"), sidecar)
    log.info("%s written (largest difference from PyTorch %.2e)", out, worst)
    return out


#: Frames of the random inputs a GMM scorer export is checked on.
CHECK_FRAMES = (7, 300, 4500)


def _export_module(module: nn.Module, example: torch.Tensor, fmt: str, out: Path, input_name: str, output_name: str,
                   dynamic: dict[int, object]):
    """Write ``module`` (one input) as ONNX or TorchScript at ``out``; returns a numpy runner of the file."""
    if fmt == "torchscript":
        from audioexp.utils.files import atomic_open

        traced = torch.jit.trace(module, example, check_trace=False)
        with atomic_open(out, mode="wb") as handle:
            torch.jit.save(traced, handle)
        runner = torch.jit.load(str(out))
        return lambda x: runner(torch.from_numpy(x)).numpy()
    import onnxruntime as ort

    tmp = out.with_name(out.name + ".partial")
    # oneDNN off for the export only: a data-dependent length (ADResNet's voiced frames) makes
    # the fake convolution ask oneDNN's size rule about an unknown size, which export refuses
    with torch.backends.mkldnn.flags(enabled=False):
        torch.onnx.export(module, (example,), str(tmp), input_names=[input_name], output_names=[output_name],
                          dynamic_shapes={input_name: dynamic}, opset_version=18, dynamo=True, external_data=False)
    tmp.replace(out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {input_name: x})[0]


def export_countermeasure(run_dir: Path, fmt: str, out_dir: Path | None = None, tolerance: float = 1e-6,
                          seed: int = 0) -> list[Path]:
    """Export every GMM system of a fit_gmm run as its scoring module (frames -> LLR), each
    checked against :meth:`audioexp.backends.gmm.GMMBackend.score` on random frames of
    :data:`CHECK_FRAMES` lengths (the export fails above ``tolerance``); returns the files."""
    import shutil

    from omegaconf import OmegaConf

    from audioexp.backends.gmm import GMMBackend
    from audioexp.backends.gmm_torch import GMMLikelihoodRatio
    from audioexp.systems.replay_countermeasure import COUNTERMEASURE_DIR, system_file_name
    from audioexp.utils.files import atomic_write_json
    from audioexp.utils.runs import load_run_config

    folder = run_dir / COUNTERMEASURE_DIR
    meta = json.loads((folder / "systems.json").read_text())
    cfg = load_run_config(run_dir)
    out_dir = out_dir if out_dir is not None and out_dir.suffix == "" else (out_dir.parent if out_dir else run_dir / "export")
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    written = []
    for name, info in meta["systems"].items():
        if info["kind"] != "gmm":
            continue  # a score fusion: its weights are in systems.json, its systems are exported
        with np.load(folder / info["parameters"], allow_pickle=False) as data:
            params = dict(data)
        backend, scorer = GMMBackend.from_parameters(params), GMMLikelihoodRatio(params).eval()
        dim = int(params["genuine_means"].shape[1])
        # frames around the GMMs' own means and spreads, so the LLRs are of the size real ones are
        centre = torch.from_numpy(params["genuine_means"].mean(0))
        spread = torch.from_numpy(np.sqrt(params["genuine_variances"].mean(0)))
        example = centre + spread * torch.randn(50, dim, generator=gen, dtype=torch.float64)
        out = out_dir / f"{system_file_name(name)}.{'onnx' if fmt == 'onnx' else 'pt'}"
        with torch.no_grad():
            run = _export_module(scorer, example, fmt, out, "frames", "llr",
                                 {0: torch.export.Dim("frames", min=2, max=10_000_000)})
            diffs = {}
            for n in CHECK_FRAMES:
                x = (centre + spread * torch.randn(n, dim, generator=gen, dtype=torch.float64)).numpy()
                diffs[n] = float(abs(run(x)[0] - backend.score([x])[0]))
        worst = max(diffs.values())
        if worst > tolerance:
            out.unlink(missing_ok=True)
            raise ValueError(f"the {fmt} export of system {name} of {run_dir} differs from the framework's LLR by "
                             f"{worst:.2e} (> {tolerance:g}) on random frames of {CHECK_FRAMES}")
        frontends = {fe: OmegaConf.to_container(cfg.frontends[fe], resolve=True) for fe in info["frontends"]}
        atomic_write_json(out.with_suffix(out.suffix + ".json"), {
            "format": fmt, "file": out.name, "system": name,
            "input": {"name": "frames", "shape": ["frames", dim], "dtype": "float64",
                      "what": "one utterance's frames from the front-end(s) below, side by side in this order"},
            "output": {"name": "llr", "shape": [1], "meaning": "frame-averaged log-likelihood ratio, genuine vs spoof"},
            "decision": meta.get("decision"), "threshold": info.get("threshold"), "dev_eer": info.get("dev_eer"),
            "frontends": frontends, "sample_rate": int(cfg.data.sample_rate),
            "trim_silence_db": cfg.data.get("trim_silence_db"), "n_components": info.get("n_components"),
            "run_dir": str(run_dir.resolve()), "git_commit": _git_commit(),
            "max_abs_difference_from_framework": {str(k): v for k, v in diffs.items()},
        })
        log.info("%s written (largest difference from the framework's LLR %.2e)", out, worst)
        written.append(out)
    shutil.copyfile(folder / "systems.json", out_dir / "systems.json")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audioexp.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="output dir of a finished train run")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--out", help="file to write (default RUN_DIR/export/model.onnx|pt)")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest difference from PyTorch accepted (default 1e-3; GMM scorers 1e-6)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from audioexp.systems.replay_countermeasure import COUNTERMEASURE_DIR

    if (Path(args.run_dir) / COUNTERMEASURE_DIR / "systems.json").is_file():
        for path in export_countermeasure(Path(args.run_dir), args.format, Path(args.out) if args.out else None,
                                          1e-6 if args.tolerance is None else args.tolerance):
            print(path)
        return 0
    path = export_run(args.run_dir, args.format, args.out, args.checkpoint,
                      1e-3 if args.tolerance is None else args.tolerance)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
