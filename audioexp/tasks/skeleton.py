"""The frame every task runs in: what happens before and after its own work.

Start (:class:`TaskRun`): the output dir, the seed, the resolved config
(``resolved_config.yaml``), the loggers (instantiated once, with the resolved config as
hyper-parameters) and ``run.json``. Finish (:meth:`TaskRun.finish`): the metrics to every
logger (tables and figures to W&B) and the W&B run summary, then the loggers finalised.
``audioexp.__main__.run`` writes ``metrics.json`` and returns ``optimized_metric``. Only the
global-zero process of a distributed run writes files.

A task is ``fn(cfg) -> metrics`` registered with
:func:`audioexp.tasks.registry.register_task`::

    @register_task("my_task")
    def my_task(cfg):
        run = TaskRun(cfg)
        run.save_config()
        metrics = {...}  # the task's own work
        return run.finish(metrics)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from audioexp.utils.ddp import is_global_zero
from audioexp.utils.files import atomic_write_json, atomic_write_text
from audioexp.utils.lock import RunDirLock
from audioexp.utils.runs import RESOLVED_CONFIG, RUN_INFO, instantiate_loggers

log = logging.getLogger(__name__)

__all__ = ["TaskRun", "data_metrics", "resolved_config", "scalar_metrics"]


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config with every interpolation resolved (Hydra's own node left out)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of a metrics mapping (tensors or floats) as floats."""
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def data_metrics(datamodule: Any, read_skipped: Mapping[str, int] | None = None) -> dict[str, float]:
    """What the corpus check at prepare counted, as metrics: ``data/<split>/files`` and
    ``data/<split>/skipped_files`` (bad files left out with ``data.skip_bad_files``; plus
    ``read_skipped``, files that failed only when read, per split)."""
    check = getattr(datamodule, "check_summary", None)
    summary = dict(check()["summary"]) if callable(check) else {}
    for split, n in (read_skipped or {}).items():
        key = f"{split}/skipped_files"
        summary[key] = summary.get(key, 0) + n
    return {f"data/{k}": float(v) for k, v in summary.items()}


class TaskRun:
    """One task's run: its output dir, seed, config, loggers and run info.

    Parameters
    ----------
    cfg : DictConfig
        The composed config (``cfg.paths.output_dir``, ``cfg.seed``, ``cfg.logger``).
    seed : bool
        Seed Python, NumPy and torch (and dataloader workers) with ``cfg.seed``.

    The global-zero process locks the output dir (:class:`audioexp.utils.lock.RunDirLock`)
    for as long as the task runs (``audioexp.__main__.run`` releases it): a second run into
    the same dir stops with an error instead of overwriting this one's checkpoints.
    """

    def __init__(self, cfg: DictConfig, seed: bool = True) -> None:
        self.cfg = cfg
        self.output_dir = Path(cfg.paths.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if is_global_zero():
            RunDirLock(self.output_dir).acquire()
        self._loggers: list | None = None
        if seed:
            import lightning as L

            L.seed_everything(cfg.seed, workers=True)

    # --- start ------------------------------------------------------------------------
    def save_config(self) -> None:
        """``resolved_config.yaml``: what rebuilds the run (call once the task filled in
        what it reads from the data, e.g. the number of speakers)."""
        if is_global_zero():
            atomic_write_text(self.output_dir / RESOLVED_CONFIG, OmegaConf.to_yaml(resolved_config(self.cfg)))

    def loggers(self, wandb_id: str | None = None, extra_hparams: Mapping[str, Any] | None = None,
                enabled: bool = True) -> list:
        """The config's loggers, instantiated on first call, each given the resolved config.

        ``wandb_id`` resumes that W&B run; ``extra_hparams`` are logged with the config
        (parameter counts, say); ``enabled=False`` on the first call: no loggers for this run
        (Lightning's fast_dev_run logs nothing either).
        """
        if self._loggers is None:
            self._loggers = instantiate_loggers(self.cfg.get("logger"), wandb_id=wandb_id) if enabled else []
            hparams = {**resolved_config(self.cfg), **dict(extra_hparams or {})}
            for logger in self._loggers:
                logger.log_hyperparams(hparams)
        return self._loggers

    def read_info(self) -> dict[str, Any]:
        """``run.json`` of the output dir (empty for a new run)."""
        path = self.output_dir / RUN_INFO
        return json.loads(path.read_text()) if path.exists() else {}

    def write_info(self, **fields: Any) -> None:
        """Merge ``fields`` into ``run.json`` (experiment, task, W&B run id, best checkpoint, ...)."""
        if not is_global_zero():
            return
        info = self.read_info()
        info.update({"experiment": self.cfg.get("name"), "task": self.cfg.get("task")})
        if "monitor" in self.cfg:
            info["monitor"] = self.cfg.monitor
        for logger in self._loggers or []:
            if type(logger).__name__ == "WandbLogger" and getattr(logger, "_id", None):
                info["wandb_id"] = logger._id  # decided before the W&B run starts
        atomic_write_json(self.output_dir / RUN_INFO, {**info, **fields})

    # --- finish -----------------------------------------------------------------------
    def finish(
        self,
        metrics: Mapping[str, float],
        *,
        log_metrics: bool = True,
        tables: Mapping[str, tuple[list[str], list[list[Any]]]] | None = None,
        figures: Mapping[str, Any] | None = None,
    ) -> dict[str, float]:
        """Send ``metrics`` (unless a Trainer logged them already), ``tables`` (name ->
        (columns, rows)) and ``figures`` (name -> figure or image path) to the loggers, put
        the metrics in the W&B run summary, finalise the loggers; return the metrics."""
        metrics = scalar_metrics(metrics)
        for logger in self.loggers():
            if log_metrics:
                logger.log_metrics(metrics)
            if type(logger).__name__ == "WandbLogger" and is_global_zero():
                for name, (columns, rows) in (tables or {}).items():
                    logger.log_table(name, columns=list(columns), data=[list(r) for r in rows])
                for name, figure in (figures or {}).items():
                    logger.log_image(name, [str(figure) if isinstance(figure, Path) else figure])
                logger.experiment.summary.update(metrics)
            logger.finalize("success")
        return metrics
