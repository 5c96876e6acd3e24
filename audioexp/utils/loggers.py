"""Experiment loggers: W&B online when credentials exist, offline otherwise."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def wandb_credentials_available() -> bool:
    """True when an API key is in ``WANDB_API_KEY`` or in ``~/.netrc`` (``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC") or None)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    return rc.authenticators(host) is not None


def sweep_run_name(experiment: str | None = None) -> str | None:
    """``"<experiment>#<job> key=value ..."`` for a job of a Hydra sweep, None outside sweeps.

    The values are the job's own overrides (what the sweep chose: ``seed=2``,
    ``model.lr=0.0021``), without config-file selections added with ``+``, Hydra's own
    settings and paths, so that runs of one sweep are told apart in W&B at a glance.
    """
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover - hydra is a dependency
        return None
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    values = []
    for override in hydra_cfg.overrides.task:
        key, _, value = str(override).partition("=")
        if key.startswith(("+", "~", "hydra")) or "/" in value:
            continue
        values.append(f"{key}={value}")
    head = f"{experiment or hydra_cfg.job.name}#{hydra_cfg.job.num}"
    return " ".join([head, *values])


def wandb_logger(
    project: str = "audioexp",
    save_dir: str = ".",
    group: str | None = None,
    tags: list[str] | None = None,
    entity: str | None = None,
    name: str | None = None,
    offline: bool | None = None,
    log_model: bool = False,
    id: str | None = None,
) -> WandbLogger:
    """A :class:`WandbLogger` writing under ``save_dir/wandb``.

    ``offline=None`` chooses: online if an API key is configured, else offline, so a run
    never blocks on a login prompt. ``WANDB_MODE`` in the environment wins over both.
    Each job gets its own ``save_dir`` (its Hydra output dir), hence its own W&B run dir.
    In a sweep, ``name=None`` names the run after its job and swept values
    (:func:`sweep_run_name`, with ``group`` as the experiment).
    """
    if name is None:
        name = sweep_run_name(group)
    if offline is None:
        offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or (
            os.environ.get("WANDB_MODE", "").lower() != "online" and not wandb_credentials_available()
        )
        if offline:
            log.info("W&B: no API key found, logging offline (sync later with `wandb sync %s/wandb`)", save_dir)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        project=project,
        save_dir=save_dir,
        group=group,
        tags=list(tags) if tags else None,
        entity=entity,
        name=name,
        offline=offline,
        log_model=log_model,
        id=id,
        resume="allow" if id else None,
    )
