"""``task=train``: fit, then test the best checkpoint (in the frame of :mod:`audioexp.tasks.skeleton`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, open_dict

from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun, data_metrics, scalar_metrics
from audioexp.utils.checkpoint_io import check_free_space, estimate_checkpoint_bytes
from audioexp.utils.ddp import is_global_zero
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


def resume_checkpoint(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint this run continues from, or None for a fresh start.

    ``ckpt_path=last``: ``checkpoints/last.ckpt`` of the run dir (``hydra.run.dir`` has
    already been pointed at the newest run of this experiment holding one, see
    :func:`audioexp.conf.run_dir`); ``ckpt_path=PATH``: that file; none given and
    ``resume=auto`` (the default): the run dir's own ``last.ckpt`` when it has one, so that
    starting a run again in the same dir continues it.
    """
    ckpt = cfg.get("ckpt_path")
    last = output_dir / "checkpoints" / "last.ckpt"
    if ckpt == "last":
        if not last.exists():
            raise FileNotFoundError(
                f"ckpt_path=last: no run of {cfg.get('name')!r} under {output_dir.parent} holds checkpoints/last.ckpt "
                "(give ckpt_path=RUN_DIR/checkpoints/last.ckpt, or hydra.run.dir=RUN_DIR)"
            )
        return str(last)
    if ckpt:
        if not Path(ckpt).exists():
            raise FileNotFoundError(f"ckpt_path={ckpt} does not exist")
        return str(ckpt)
    resume = cfg.get("resume", "auto")
    if resume not in ("auto", "never"):
        raise ValueError(f"resume must be 'auto' or 'never', got {resume!r}")
    if resume == "auto" and last.exists():
        log.info("%s already holds checkpoints/last.ckpt: continuing that run (resume=never starts over)", output_dir)
        return str(last)
    return None


def wandb_run_id(cfg: DictConfig, run: TaskRun, ckpt_path: str | None) -> str | None:
    """The W&B run id of this run, decided before training: the one in ``run.json`` of the
    run dir or of the run the checkpoint belongs to (a resumed run keeps its W&B run), else a
    new one when a W&B logger is configured."""
    infos = [run.output_dir / RUN_INFO]
    if ckpt_path:
        infos.append(Path(ckpt_path).resolve().parent.parent / RUN_INFO)
    for info in infos:
        known = json.loads(info.read_text()).get("wandb_id") if info.is_file() else None
        if known:
            return known
    if not any("wandb" in str(c.get("_target_", "")).lower() for c in (cfg.get("logger") or {}).values()
               if isinstance(c, DictConfig)):
        return None
    import secrets
    import string

    # W&B's own form: 8 characters of [a-z0-9]
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


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
    ckpt_path = resume_checkpoint(cfg, run.output_dir)
    wandb_id = wandb_run_id(cfg, run, ckpt_path)
    # fast_dev_run suppresses logging in Lightning; no W&B run is started for it either
    loggers = run.loggers(
        wandb_id=wandb_id,
        extra_hparams={"model/params/total": sum(p.numel() for p in model.parameters()),
                       "model/params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)},
        enabled=not cfg.trainer.get("fast_dev_run"),
    )
    run.write_info(**({"wandb_id": wandb_id} if wandb_id and loggers else {}))
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if is_global_zero() and any(isinstance(c, ModelCheckpoint) for c in callbacks):
        check_free_space(run.output_dir / "checkpoints", estimate_checkpoint_bytes(model))

    if ckpt_path:
        log.info("resuming training from %s", ckpt_path)
    trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = scalar_metrics(trainer.callback_metrics)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not any(k.startswith("val/") for k in metrics) and (best or ckpt_path):
        # resumed from a checkpoint with no epoch left to train: validate it, so that the
        # run still reports (and a sweeper still receives) its validation metrics
        trainer.validate(model=model, datamodule=datamodule, ckpt_path=best or ckpt_path, weights_only=True)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    if best:
        run.write_info(best_checkpoint=os.path.relpath(best, run.output_dir))
        log.info("best checkpoint: %s", best)
    else:
        log.warning("no checkpoint was saved (fast_dev_run or no ModelCheckpoint): testing the final weights")
    trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    metrics.update(scalar_metrics(trainer.callback_metrics))
    metrics.update(data_metrics(datamodule))  # files checked at prepare, bad ones left out
    return run.finish(metrics, log_metrics=False)  # the Trainer logged them
