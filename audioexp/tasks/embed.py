"""``task=embed``: embeddings of audio files from a finished run, and a pair's score.

    python -m audioexp task=embed embed.run_dir=RUN embed.files=[a.wav,b.wav]

Writes ``embeddings.npz`` (one array per file, plus ``files`` and ``skipped``) into the
output dir; with exactly two files it also returns their cosine ``score``. Each file is
checked with the run's own data checks (rate, lengths, silence, truncation): bad files stop
the task, all named, or with ``embed.skip_bad_files=true`` are left out and counted. A run dir is code-adjacent input
(weights_only checkpoint, config targets checked: :mod:`audioexp.utils.trust`): only embed
with run dirs you trust.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from audioexp.data.audio import AudioFileError
from audioexp.data.validate import BadAudioError, format_problems, probe_audio
from audioexp.inference import cosine_score, embed_file, load_run, run_checks
from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun
from audioexp.utils.files import atomic_open
from audioexp.utils.runs import load_run_config

log = logging.getLogger(__name__)


@register_task("embed")
def embed(cfg: DictConfig) -> dict[str, float]:
    opts = cfg.get("embed") or {}
    if not opts.get("run_dir") or not opts.get("files"):
        raise ValueError("task=embed needs embed.run_dir=<train run dir> and embed.files=[a.wav,...]")
    run = TaskRun(cfg)
    run.save_config()
    model = load_run(opts.run_dir, opts.get("checkpoint", "best"))
    checks = run_checks(load_run_config(opts.run_dir).data)
    files = [str(f) for f in opts.files]
    # every file's header first: all bad ones in one error, before any is embedded
    bad = {f: verdict[1] for f in files if (verdict := checks.judge(probe_audio(f))) is not None}
    if bad and not opts.get("skip_bad_files"):
        raise BadAudioError(f"{len(bad)} bad audio file(s) in embed.files:\n"
                            + format_problems([f"{p}: {m}" for p, m in bad.items()])
                            + "\n(embed.skip_bad_files=true leaves them out)")
    rows, skipped = [], []
    for f in files:
        try:
            if f in bad:
                raise AudioFileError(f, bad[f])
            rows.append(embed_file(model, f, checks))  # what a header cannot show raises here
        except AudioFileError as err:
            if not opts.get("skip_bad_files"):
                raise
            log.warning("skipping a bad audio file (embed.skip_bad_files=true): %s", err)
            skipped.append(f)
    files = [f for f in files if f not in skipped]
    if not rows:
        raise BadAudioError(f"none of the {len(skipped)} files of embed.files could be read")
    embeddings = np.stack(rows)
    out = Path(opts.get("output") or run.output_dir / "embeddings.npz")
    with atomic_open(out, mode="wb") as handle:
        np.savez(handle, embeddings=embeddings, files=np.array(files), skipped=np.array(skipped, dtype=str))
    log.info("%d embeddings of dimension %d written to %s", len(files), embeddings.shape[1], out)
    metrics: dict[str, float] = {"num_files": float(len(files)), "dim": float(embeddings.shape[1]),
                                 "skipped_files": float(len(skipped))}
    if len(files) == 2:
        metrics["score"] = cosine_score(embeddings[0], embeddings[1])
        log.info("cosine score of %s and %s: %.4f", files[0], files[1], metrics["score"])
    return run.finish(metrics)
