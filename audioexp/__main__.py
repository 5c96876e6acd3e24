"""Hydra entry point: ``python -m audioexp +experiment=NAME [overrides]`` (or ``audioexp ...``).

Composes the package's ``conf/`` (plus any ``--config-dir``), prints the config tree, runs
``cfg.task`` from the task registry, writes the task's metrics to ``metrics.json`` in the
run's output dir and returns ``cfg.optimized_metric`` to sweepers.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

import audioexp.conf  # noqa: F401  (registers ${audioexp.run_dir:...}, used by hydra.run.dir)

log = logging.getLogger("audioexp")


def run(cfg: DictConfig) -> float | None:
    """Run one job; always closes the W&B run so multirun jobs get runs of their own."""
    from audioexp.tasks import get_task
    from audioexp.tasks.dev_run import apply_dev_run
    from audioexp.utils.config_tree import print_config_tree
    from audioexp.utils.ddp import align_rank_zero_only, install_hydra_subprocess_command, is_global_zero
    from audioexp.utils.files import atomic_write_json
    from audioexp.utils.lock import RunDirLock
    from audioexp.utils.logging import route_library_logs_to_root

    route_library_logs_to_root()
    install_hydra_subprocess_command()
    align_rank_zero_only((cfg.get("trainer") or {}).get("num_nodes"))  # a second node's rank 0 is not global rank 0
    task = get_task(cfg.task)
    apply_dev_run(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if is_global_zero():
        print_config_tree(cfg, save_to=output_dir / "config_tree.log")
    try:
        try:
            metrics = task(cfg)
        finally:
            _finish_wandb()
        if not is_global_zero():  # rank 0 writes the run's files
            return None
        out = output_dir / "metrics.json"
        atomic_write_json(out, metrics)
        log.info("metrics written to %s", out)
    finally:
        RunDirLock(output_dir).release()  # taken by the task (tasks.skeleton.TaskRun)
    for key in sorted(k for k in metrics if k.startswith("test/")):
        log.info("%s = %.4f", key, metrics[key])
    return optimized_value(metrics, cfg.get("optimized_metric"))


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value a sweeper optimises: ``metrics[name]``, None when ``name`` is unset or the
    value is not finite (the sweeper then records a failed trial). A name the task does not
    report is a configuration error: a sweep would optimise nothing."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} is not among the metrics this task reported "
                       f"(metrics.json has them): {sorted(metrics)}")
    value = float(metrics[name])
    return value if math.isfinite(value) else None


def _finish_wandb() -> None:
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        wandb.finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run(cfg)


def main() -> None:
    """The ``audioexp`` console script and ``python -m audioexp``.

    ``AUDIOEXP_ROOT`` (where ``data/`` and ``logs/`` go unless ``AUDIOEXP_DATA_DIR`` /
    ``AUDIOEXP_LOG_DIR`` say otherwise) defaults to the directory the command starts in;
    set here, before Hydra composes the sweep dir, and inherited by every job and rank.
    """
    os.environ.setdefault("AUDIOEXP_ROOT", os.getcwd())
    _hydra_main()


if __name__ == "__main__":
    main()
