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
    """
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
