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


def export_run(run_dir, fmt: str, out=None, checkpoint: str = "best", tolerance: float = 1e-3, seed: int = 0) -> Path:
    """Write the run's network (``fmt``: onnx | torchscript) and its JSON sidecar; returns the file.

    Raises
    ------
    ValueError
        Unknown format, or the exported graph differs from PyTorch by more than ``tolerance``
        on the check audio.
    """
    from omegaconf import OmegaConf

    from audioexp.inference import Predictor
    from audioexp.utils.files import atomic_open, atomic_write_json

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    run_dir = Path(run_dir)
    predictor = Predictor.from_run(run_dir, checkpoint)
    net = WaveformScores(predictor.model, predictor.kind).eval()
    sr = predictor.sample_rate
    out = Path(out) if out else run_dir / "export" / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    example = 0.1 * torch.randn(1, int(3 * sr), generator=gen)
    tmp = out.with_name(out.name + ".partial")
    with torch.no_grad(), _traceable(predictor.model):
        if fmt == "torchscript":
            traced = torch.jit.trace(net, example, check_trace=False)
            with atomic_open(out, mode="wb") as handle:
                torch.jit.save(traced, handle)
            runner = torch.jit.load(str(out))

            def run(x: np.ndarray) -> np.ndarray:
                return runner(torch.from_numpy(x)).numpy()
        else:
            import onnxruntime as ort

            batch = torch.export.Dim("batch", min=1, max=1024)
            time = torch.export.Dim("time", min=int(0.5 * sr), max=int(3600 * sr))
            torch.onnx.export(net, (example,), str(tmp), input_names=["waveform"],
                              output_names=["logits" if predictor.kind == "classifier" else "embedding"],
                              dynamic_shapes={"waveform": {0: batch, 1: time}}, opset_version=18, dynamo=True,
                              external_data=False)
            tmp.replace(out)
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])

            def run(x: np.ndarray) -> np.ndarray:
                return session.run(None, {"waveform": x})[0]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audioexp.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="output dir of a finished train run")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--out", help="file to write (default RUN_DIR/export/model.onnx|pt)")
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest difference from PyTorch accepted")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = export_run(args.run_dir, args.format, args.out, args.checkpoint, args.tolerance)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
