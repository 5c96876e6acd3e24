"""``task=train``: fit, then test the best checkpoint."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from audioexp.tasks.registry import register_task
from audioexp.utils.ddp import is_global_zero
from audioexp.utils.files import atomic_write_json, atomic_write_text
from audioexp.utils.runs import RESOLVED_CONFIG, RUN_INFO, build_model, instantiate_callbacks, instantiate_loggers

log = logging.getLogger(__name__)


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config with every interpolation resolved (Hydra's own node left out)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def log_hyperparameters(cfg: DictConfig, loggers, model) -> None:
    """Send the resolved config and parameter counts to every logger."""
    hparams = resolved_config(cfg)
    hparams["model/params/total"] = sum(p.numel() for p in model.parameters())
    hparams["model/params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for logger in loggers:
        logger.log_hyperparams(hparams)


def scalar_metrics(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


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


def _write_run_info(output_dir: Path, cfg: DictConfig, loggers, **extra) -> None:
    """run.json: what rebuilds and resumes the run (W&B run id, best checkpoint); rank 0 writes it."""
    if not is_global_zero():
        return
    info = {"experiment": cfg.get("name"), "monitor": cfg.get("monitor"), "task": cfg.get("task")}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            info["wandb_id"] = logger.version
    path = output_dir / RUN_INFO
    if path.exists():
        info = {**json.loads(path.read_text()), **info}
    atomic_write_json(path, {**info, **extra})


@register_task("train")
def train(cfg: DictConfig) -> dict[str, float]:
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)

    log.info("data: %s", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data)
    fill_classes_from_data(cfg, datamodule)
    if is_global_zero():
        atomic_write_text(output_dir / RESOLVED_CONFIG, OmegaConf.to_yaml(resolved_config(cfg)))
    log.info("model: %s", cfg.model._target_)
    model = build_model(cfg)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    resume_info = _run_info_of_checkpoint(cfg.get("ckpt_path"))
    # fast_dev_run suppresses logging in Lightning; no W&B run is started for it either
    fast_dev_run = bool(cfg.trainer.get("fast_dev_run"))
    loggers = [] if fast_dev_run else instantiate_loggers(cfg.get("logger"), wandb_id=resume_info.get("wandb_id"))
    _write_run_info(output_dir, cfg, loggers)
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_hyperparameters(cfg, loggers, model)

    if cfg.get("ckpt_path"):
        log.info("resuming training from %s", cfg.ckpt_path)
    trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = scalar_metrics(trainer.callback_metrics)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        _write_run_info(output_dir, cfg, loggers, best_checkpoint=os.path.relpath(best, output_dir))
        log.info("best checkpoint: %s", best)
    else:
        log.warning("no checkpoint was saved (fast_dev_run or no ModelCheckpoint): testing the final weights")
    trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
    metrics.update(scalar_metrics(trainer.callback_metrics))
    return metrics
