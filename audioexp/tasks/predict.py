"""``task=predict``: a finished run's predictions on audio files, as a Hydra task::

    python -m audioexp task=predict predict.run_dir=RUN 'predict.paths=[a.wav,clips/]'
    python -m audioexp -m task=predict predict.run_dir=RUN_A,RUN_B predict.paths=[clips/]

The rows are those of ``python -m audioexp.predict`` (:func:`audioexp.systems.predictors.load_predictor`
picks the run's predictor), written to ``predictions.csv`` (or ``predict.output``) in the output
dir; the metrics count the files and those that could not be read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from audioexp.systems.predictors import format_rows, load_predictor, predict_rows_of, rows_format
from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun
from audioexp.utils.files import atomic_write_text

log = logging.getLogger(__name__)


@register_task("predict")
def predict(cfg: DictConfig) -> dict[str, float]:
    opts = cfg.get("predict") or {}
    if not opts.get("run_dir") or not (opts.get("paths") or opts.get("trials")):
        raise ValueError("task=predict needs predict.run_dir=<run dir> and predict.paths=[a.wav,...] "
                         "(or predict.trials=<trial list> for a verification run)")
    run = TaskRun(cfg)
    run.save_config()
    predictor = load_predictor(opts.run_dir, opts.get("checkpoint", "best"), opts.get("device", "cpu"),
                               int(opts.get("batch_size", 8)), opts.get("system"), opts.get("classifier"))
    rows = predict_rows_of(predictor, opts.get("paths") or (), opts.get("trials"), opts.get("audio_root"))
    out = Path(opts.get("output") or run.output_dir / "predictions.csv")
    atomic_write_text(out, format_rows(rows, rows_format(out)))
    bad = sum(1 for r in rows if r.get("error"))
    log.info("%d rows -> %s%s", len(rows), out, f" ({bad} with an error: see its column)" if bad else "")
    return run.finish({"num_rows": float(len(rows)), "error_rows": float(bad)})
