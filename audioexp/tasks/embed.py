"""``task=embed``: embeddings of audio files from a finished run, and a pair's score.

    python -m audioexp task=embed embed.run_dir=RUN embed.files=[a.wav,b.wav]

Writes ``embeddings.npz`` (one array per file, plus ``files``) into the output dir; with
exactly two files it also returns their cosine ``score``. A run dir is code-adjacent input
(weights_only checkpoint, config targets checked: :mod:`audioexp.utils.trust`): only embed
with run dirs you trust.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from audioexp.inference import cosine_score, embed_file, load_run
from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun
from audioexp.utils.files import atomic_open

log = logging.getLogger(__name__)


@register_task("embed")
def embed(cfg: DictConfig) -> dict[str, float]:
    opts = cfg.get("embed") or {}
    if not opts.get("run_dir") or not opts.get("files"):
        raise ValueError("task=embed needs embed.run_dir=<train run dir> and embed.files=[a.wav,...]")
    run = TaskRun(cfg)
    run.save_config()
    model = load_run(opts.run_dir, opts.get("checkpoint", "best"))
    files = [str(f) for f in opts.files]
    embeddings = np.stack([embed_file(model, f) for f in files])
    out = Path(opts.get("output") or run.output_dir / "embeddings.npz")
    with atomic_open(out, mode="wb") as handle:
        np.savez(handle, embeddings=embeddings, files=np.array(files))
    log.info("%d embeddings of dimension %d written to %s", len(files), embeddings.shape[1], out)
    metrics: dict[str, float] = {"num_files": float(len(files)), "dim": float(embeddings.shape[1])}
    if len(files) == 2:
        metrics["score"] = cosine_score(embeddings[0], embeddings[1])
        log.info("cosine score of %s and %s: %.4f", files[0], files[1], metrics["score"])
    return run.finish(metrics)
