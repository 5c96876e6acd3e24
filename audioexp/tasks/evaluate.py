"""``task=evaluate``: a finished run's checkpoint on a chosen split.

    python -m audioexp task=evaluate eval.run_dir=logs/train/runs/demo/DATE eval.split=test

A run dir is code-adjacent input: its config's targets are checked before anything is built
(:func:`audioexp.utils.runs.load_run_config`) and its checkpoint is loaded with
``weights_only=True``, but only evaluate run dirs you trust.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, open_dict

from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun, data_metrics, scalar_metrics
from audioexp.utils.runs import build_model, find_checkpoint, load_run_config, without_pretrained_weights

log = logging.getLogger(__name__)


@register_task("evaluate")
def evaluate(cfg: DictConfig) -> dict[str, float]:
    if not cfg.eval.get("run_dir"):
        raise ValueError("task=evaluate needs eval.run_dir=<output dir of a train run>")
    split = cfg.eval.get("split", "test")
    if split not in ("val", "test"):
        raise ValueError(f"eval.split must be 'val' or 'test', got {split!r}")
    run = TaskRun(cfg)
    run.save_config()
    run_cfg = without_pretrained_weights(load_run_config(cfg.eval.run_dir))
    ckpt = find_checkpoint(cfg.eval.run_dir, cfg.eval.get("checkpoint", "best"))
    with open_dict(run_cfg):
        if cfg.eval.get("data_root"):
            run_cfg.data.root = cfg.eval.data_root
        for key in ("skip_bad_files", "validate"):  # the run's data checks, unless overridden
            if cfg.eval.get(key) is not None:
                run_cfg.data[key] = cfg.eval[key]
    log.info("evaluating %s on the %s split of %s", ckpt, split, run_cfg.data.root)
    datamodule = hydra.utils.instantiate(run_cfg.data)
    model = build_model(run_cfg)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=run.loggers() or False)
    if split == "val":
        trainer.validate(model=model, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=True)
    else:
        trainer.test(model=model, datamodule=datamodule, ckpt_path=str(ckpt), weights_only=True)
    metrics = {**scalar_metrics(trainer.callback_metrics), **data_metrics(datamodule)}
    return run.finish(metrics, log_metrics=False)  # the Trainer logged its metrics
