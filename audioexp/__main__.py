"""Hydra entry point: ``python -m audioexp +experiment=NAME [overrides]``.

Composes ``conf/``, runs ``cfg.task`` from the task registry, writes the task's metrics
to ``metrics.json`` in the run's output dir and returns ``cfg.optimized_metric`` for
sweepers.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger("audioexp")


def run(cfg: DictConfig) -> float | None:
    """Run one job; always closes the W&B run so multirun jobs get runs of their own."""
    from audioexp.tasks import get_task
    from audioexp.utils.files import atomic_write_json

    task = get_task(cfg.task)
    try:
        metrics = task(cfg)
    finally:
        _finish_wandb()
    out = Path(cfg.paths.output_dir) / "metrics.json"
    atomic_write_json(out, metrics)
    log.info("metrics written to %s", out)
    for key in sorted(k for k in metrics if k.startswith("test/")):
        log.info("%s = %.4f", key, metrics[key])
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        log.warning("optimized_metric %r is not among the task's metrics %s", name, sorted(metrics))
        return None
    value = float(metrics[name])
    return value if math.isfinite(value) else None


def _finish_wandb() -> None:
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        wandb.finish()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
