"""``task=aggregate``: mean and standard deviation of every metric over a multirun's jobs.

    python -m audioexp -m +experiment=iemocap_adresnet data.fold=0,1,2,3,4 model.pretrained_run=RUN
    python -m audioexp task=aggregate aggregate.sweep_dir=logs/train/multiruns/iemocap_adresnet/DATE

Reads ``<sweep_dir>/<job>/metrics.json`` of every job (Hydra's numbered sub-dirs), writes
``aggregate.json`` (per metric: mean, sample standard deviation, n, the per-job values) and
``aggregate.md`` (a table, one row per job with its overrides) into the output dir (or
``aggregate.output``), and returns ``<metric>/mean`` and ``<metric>/std``. A job without
metrics.json (failed or still running) stops the task unless ``aggregate.allow_missing``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun
from audioexp.utils.files import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["aggregate", "aggregate_metrics", "read_sweep"]


def read_sweep(sweep_dir: str | Path, allow_missing: bool = False) -> list[tuple[str, dict[str, float]]]:
    """``(job dir name, metrics)`` of every job dir (a sub-dir with ``.hydra/`` or ``metrics.json``).

    Raises
    ------
    FileNotFoundError
        No such dir, no job in it, or (without ``allow_missing``) a job without metrics.json.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"aggregate.sweep_dir={sweep_dir} does not exist (give the dir of a multirun)")
    jobs = sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and ((p / "metrics.json").exists() or (p / ".hydra").is_dir())),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name),
    )
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir} has no job dirs with metrics.json (is it a multirun's sweep dir?)")
    missing = [p for p in jobs if not (p / "metrics.json").exists()]
    if missing:
        message = f"{len(missing)} of {len(jobs)} jobs of {sweep_dir} have no metrics.json (failed or unfinished): {[p.name for p in missing]}"
        if not allow_missing:
            raise FileNotFoundError(message + "; set aggregate.allow_missing=true to aggregate the rest")
        log.warning(message)
    out = []
    for p in jobs:
        if (p / "metrics.json").exists():
            out.append((p.name, json.loads((p / "metrics.json").read_text())))
    if not out:
        raise FileNotFoundError(f"no job of {sweep_dir} has metrics.json")
    return out


def aggregate_metrics(runs: list[dict[str, float]]) -> dict[str, dict]:
    """Per metric: ``mean``, ``std`` (sample, ddof=1; 0 for one run), ``n`` and ``values``.

    Non-finite values (an error rate of a class absent from a fold) are left out of that
    metric's statistics; ``n`` counts the finite ones.

    >>> aggregate_metrics([{"test/acc": 0.5}, {"test/acc": 0.7}])["test/acc"]["mean"]
    0.6
    """
    keys = sorted({k for r in runs for k in r})
    stats = {}
    for k in keys:
        values = [float(r[k]) for r in runs if k in r and isinstance(r[k], (int, float))]
        finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
        mean = float(finite.mean()) if len(finite) else float("nan")
        std = float(finite.std(ddof=1)) if len(finite) > 1 else (0.0 if len(finite) == 1 else float("nan"))
        stats[k] = {"mean": round(mean, 12), "std": std, "n": int(len(finite)), "values": values}
    return stats


def _job_overrides(sweep_dir: Path, job: str) -> str:
    path = sweep_dir / job / ".hydra" / "overrides.yaml"
    if not path.exists():
        return ""
    return " ".join(str(o) for o in OmegaConf.load(path) if not str(o).startswith(("+experiment", "hydra")))


@register_task("aggregate")
def aggregate(cfg: DictConfig) -> dict[str, float]:
    opts = cfg.get("aggregate") or {}
    if not opts.get("sweep_dir"):
        raise ValueError("task=aggregate needs aggregate.sweep_dir=<the dir of a multirun> (e.g. logs/train/multiruns/NAME/DATE)")
    run = TaskRun(cfg, seed=False)
    run.save_config()
    sweep_dir = Path(opts.sweep_dir)
    jobs = read_sweep(sweep_dir, bool(opts.get("allow_missing", False)))
    stats = aggregate_metrics([m for _, m in jobs])
    out_dir = Path(opts.get("output") or run.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "aggregate.json", {"sweep_dir": str(sweep_dir), "jobs": [j for j, _ in jobs], "metrics": stats})
    shown = [k for k in stats if k.startswith("test/") and not k.startswith("test/err_")] or list(stats)
    lines = [f"# {sweep_dir}", "", "| job | overrides | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for job, m in jobs:
        lines.append(f"| {job} | {_job_overrides(sweep_dir, job)} | " + " | ".join(f"{m.get(k, float('nan')):.4f}" for k in shown) + " |")
    lines.append("| **mean +- std** | | " + " | ".join(f"{stats[k]['mean']:.4f} +- {stats[k]['std']:.4f}" for k in shown) + " |")
    atomic_write_text(out_dir / "aggregate.md", "\n".join(lines) + "\n")
    for k in shown:
        log.info("%s: %.4f +- %.4f over %d jobs", k, stats[k]["mean"], stats[k]["std"], stats[k]["n"])
    metrics: dict[str, float] = {"num_jobs": float(len(jobs))}
    for k, s in stats.items():
        metrics[f"{k}/mean"] = s["mean"]
        metrics[f"{k}/std"] = s["std"]
    return run.finish(metrics)
