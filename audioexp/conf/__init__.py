"""The package's Hydra configs (found as ``pkg://audioexp.conf``, so they travel with the wheel),
and the one resolver they use: ``${audioexp.run_dir:...}``, where a resumed run writes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["resumed_run_dir", "run_dir"]


def resumed_run_dir(ckpt_path: str | None, runs_dir: str) -> Path | None:
    """The run dir a ``ckpt_path`` continues, or None for a fresh run dir.

    ``last``: the run under ``runs_dir`` whose ``checkpoints/last.ckpt`` was written most
    recently; a path ``RUN/checkpoints/x.ckpt`` of an audioexp run (``RUN`` holds
    ``resolved_config.yaml``): ``RUN``; any other checkpoint: None.
    """
    if not ckpt_path:
        return None
    if str(ckpt_path) == "last":
        candidates = list(Path(runs_dir).glob("*/checkpoints/last.ckpt")) if Path(runs_dir).is_dir() else []
        if not candidates:
            return None
        return max(candidates, key=lambda p: p.stat().st_mtime).parent.parent
    path = Path(ckpt_path)
    if path.parent.name == "checkpoints" and (path.parent.parent / "resolved_config.yaml").is_file():
        return path.parent.parent
    return None


def run_dir(ckpt_path: str | None, runs_dir: str, stamp: str) -> str:
    """``hydra.run.dir``: the run a ``ckpt_path`` continues, else ``runs_dir/stamp``."""
    resumed = resumed_run_dir(ckpt_path, runs_dir)
    return str(resumed) if resumed is not None else f"{runs_dir}/{stamp}"


OmegaConf.register_new_resolver("audioexp.run_dir", run_dir, replace=True)
