"""``task=train``: fit, then test the best checkpoint (in the frame of :mod:`audioexp.tasks.skeleton`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, open_dict

from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun, scalar_metrics
from audioexp.utils.runs import RUN_INFO, build_model, instantiate_callbacks

log = logging.getLogger(__name__)


def fill_classes_from_data(cfg: DictConfig, datamodule) -> None:
    """Corpora whose classes come from their files (``data.num_classes: null``) fill them in.

    The speaker count of VoxCeleb1 depends on the protocol and the release: it is read from
    the split files, and written into the config so the saved run rebuilds the same model.
    """
    if "num_classes" not in cfg.data or cfg.data.num_classes is not None:
        return
    datamodule.prepare_data()
    datamodule.setup("fit")
    with open_dict(cfg):
        cfg.data.num_classes = datamodule.num_classes
        if "class_names" in cfg.data and cfg.data.class_names is None:
            cfg.data.class_names = list(datamodule.class_names)
    log.info("%d classes read from the data", datamodule.num_classes)


def _run_info_of_checkpoint(ckpt_path: str | None) -> dict:
    """run.json of the run a checkpoint (``<run>/checkpoints/x.ckpt``) belongs to, if any."""
    if not ckpt_path:
        return {}
    path = Path(ckpt_path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    info = path.resolve().parent.parent / RUN_INFO
    return json.loads(info.read_text()) if info.exists() else {}


@register_task("train")
def train(cfg: DictConfig) -> dict[str, float]:
    run = TaskRun(cfg)
    log.info("data: %s", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data)
    fill_classes_from_data(cfg, datamodule)
    run.save_config()
    log.info("model: %s", cfg.model._target_)
    model = build_model(cfg)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    resume_info = _run_info_of_checkpoint(cfg.get("ckpt_path"))
    # fast_dev_run suppresses logging in Lightning; no W&B run is started for it either
    loggers = run.loggers(
        wandb_id=resume_info.get("wandb_id"),
        extra_hparams={"model/params/total": sum(p.numel() for p in model.parameters()),
                       "model/params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)},
        enabled=not cfg.trainer.get("fast_dev_run"),
    )
    run.write_info()
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if cfg.get("ckpt_path"):
        log.info("resuming training from %s", cfg.ckpt_path)
    trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = scalar_metrics(trainer.callback_metrics)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not any(k.startswith("val/") for k in metrics) and (best or cfg.get("ckpt_path")):
        # resumed from a checkpoint with no epoch left to train: validate it, so that the
        # run still reports (and a sweeper still receives) its validation metrics
        trainer.validate(model=model, datamodule=datamodule, ckpt_path=best or cfg.ckpt_path, weights_only=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    if best:
        run.write_info(best_checkpoint=os.path.relpath(best, run.output_dir))
        log.info("best checkpoint: %s", best)
    else:
        log.warning("no checkpoint was saved (fast_dev_run or no ModelCheckpoint): testing the final weights")
    trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
    metrics.update(scalar_metrics(trainer.callback_metrics))
    return run.finish(metrics, log_metrics=False)  # the Trainer logged them
