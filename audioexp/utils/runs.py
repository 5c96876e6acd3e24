"""Building and rebuilding runs: model from config, a finished run from its output dir.

A run dir is code-adjacent input: its config is checked before anything of it is built and
its checkpoints are read as data (:mod:`audioexp.utils.trust`). Only load run dirs you trust.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from audioexp.utils.trust import check_targets, load_checkpoint

log = logging.getLogger(__name__)

RESOLVED_CONFIG = "resolved_config.yaml"
RUN_INFO = "run.json"


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Every ``_target_`` entry of the ``callbacks`` group."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None, wandb_id: str | None = None) -> list[Logger]:
    """Every ``_target_`` entry of the ``logger`` group.

    ``wandb_id`` resumes that W&B run (training resumed from one of its checkpoints).
    """
    if not cfg:
        return []
    loggers = []
    for c in cfg.values():
        if not (isinstance(c, DictConfig) and "_target_" in c):
            continue
        is_wandb = "wandb" in c._target_.lower()
        loggers.append(hydra.utils.instantiate(c, id=wandb_id) if is_wandb and wandb_id else hydra.utils.instantiate(c))
    return loggers


def build_model(cfg: DictConfig, **overrides):
    """The system of ``cfg.model`` around the front-end of ``cfg.features``."""
    frontend = hydra.utils.instantiate(cfg.features) if cfg.get("features") else None
    kwargs = {"frontend": frontend} if frontend is not None else {}
    return hydra.utils.instantiate(cfg.model, **kwargs, **overrides)


def load_run_config(run_dir: str | Path) -> DictConfig:
    """The resolved config saved by ``task=train`` in ``run_dir``, its targets checked.

    Every consumer of a run dir reads its config here, so none builds a ``_target_`` outside
    :func:`audioexp.utils.trust.check_targets`'s allowlist (raises ``UntrustedConfigError``).
    """
    path = Path(run_dir) / RESOLVED_CONFIG
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} is not an audioexp run dir: {RESOLVED_CONFIG} is missing "
            "(give the output dir of a `task=train` run)"
        )
    cfg = OmegaConf.load(path)
    OmegaConf.resolve(cfg)  # what is checked is what gets instantiated
    check_targets(cfg, path)
    return cfg


def find_checkpoint(run_dir: str | Path, which: str = "best") -> Path:
    """``best`` (recorded in run.json), ``last`` (checkpoints/last.ckpt) or a path."""
    run_dir = Path(run_dir)
    if which == "best":
        info_path = run_dir / RUN_INFO
        if info_path.exists():
            best = json.loads(info_path.read_text()).get("best_checkpoint")
            if best and (run_dir / best).exists():
                return run_dir / best
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.exists():
            log.warning("no best checkpoint recorded in %s; using %s", run_dir, last)
            return last
        raise FileNotFoundError(f"no checkpoint in {run_dir}/checkpoints (was the run trained with checkpoints?)")
    if which == "last":
        path = run_dir / "checkpoints" / "last.ckpt"
    else:
        path = Path(which)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def without_pretrained_weights(cfg: DictConfig) -> DictConfig:
    """``cfg`` with every ``pretrained`` setting of the model and its parts set to ``none``.

    A finished run's weights come from its checkpoint: rebuilding it must not fetch ImageNet
    weights or another run's extractor again (nor fail where they are absent).
    """
    with open_dict(cfg):
        for node in (cfg.model, *(v for v in cfg.model.values() if isinstance(v, DictConfig))):
            if "pretrained" in node:
                node.pretrained = "none"
    return cfg


def load_model(run_dir: str | Path, which: str = "best", map_location: str = "cpu"):
    """Rebuild a finished run's model from its saved config and load its weights.

    The checkpoint is read with ``torch.load(weights_only=True)``
    (:func:`audioexp.utils.trust.load_checkpoint`) before the model is built.
    """
    cfg = without_pretrained_weights(load_run_config(run_dir))
    ckpt = load_checkpoint(find_checkpoint(run_dir, which), map_location=map_location)
    model = build_model(cfg)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    return model
