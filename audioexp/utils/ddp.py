"""Multi-process runs under Hydra: which process writes, and how Lightning starts the others.

With ``strategy=ddp`` on one machine Lightning starts ranks 1..N-1 by running the command
line again. Its own command (``lightning.fabric.strategies.launchers.subprocess_script.
_hydra_subprocess_cmd``) copies ``sys.argv`` and passes ``hydra.run.dir``: inside a sweep
job that re-runs the whole sweep (``-m``, ``seed=1,2``, the Optuna preset) in every child,
and sends the children to a run dir other than the job's. :func:`hydra_subprocess_command`
builds the child's command from the job itself: its own overrides (swept values included,
sweep syntax excluded), ``hydra.mode=RUN`` and the job's output dir, so every rank of a job
works in one dir, single run or sweep alike. :func:`install_hydra_subprocess_command`
puts it in Lightning's place (both launchers: Trainer and Fabric).
"""

from __future__ import annotations

import os
import sys

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
# hydra overrides the children get from us, or must not inherit
_OWN_KEYS = ("hydra.run.dir", "hydra.mode", "hydra.output_subdir", "hydra.job.name", "hydra.job_logging")
_CONFIG_OPTIONS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def is_global_zero() -> bool:
    """Whether this process is rank 0 of its job (true outside distributed runs).

    Read from the variables launchers set before any process group exists (Lightning's
    children: ``LOCAL_RANK``/``NODE_RANK``; torchrun: ``RANK``; SLURM: ``SLURM_PROCID``),
    so the run dir is written by one process from the first line on.
    """
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in _RANK_VARIABLES)


def env_global_rank(num_nodes: int | None = None) -> int:
    """This process's global rank as the launchers' variables give it before any process group
    exists: ``RANK`` (torchrun); else, where Lightning's variables are set (its children, a
    node started by hand with ``NODE_RANK`` and ``WORLD_SIZE``), ``NODE_RANK * (WORLD_SIZE //
    num_nodes) + LOCAL_RANK`` (at least 1 on a node other than 0 when ``num_nodes`` or
    ``WORLD_SIZE`` is unknown); else ``SLURM_PROCID`` (srun); 0 outside distributed runs."""
    env = os.environ
    if env.get("RANK"):
        return int(env["RANK"])
    if any(env.get(name) for name in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK")):
        node = int(env.get("NODE_RANK") or env.get("GROUP_RANK") or 0)
        local = int(env.get("LOCAL_RANK") or 0)
        world = int(env.get("WORLD_SIZE") or 0)
        per_node = world // num_nodes if num_nodes and world else 0
        return node * max(per_node, local + 1) + local
    return int(env.get("SLURM_PROCID") or 0)


def align_rank_zero_only(num_nodes: int | None = None) -> None:
    """Make Lightning's ``rank_zero_only`` agree with :func:`is_global_zero` from the start.

    Lightning reads its rank at import from ``RANK``, ``LOCAL_RANK`` or ``SLURM_PROCID`` and
    corrects it only when a Trainer sets its strategy up. A process started by hand on a
    second node (``NODE_RANK=1``; ``LOCAL_RANK`` unset, or 0) counted as rank 0 until then, so
    what runs before the Trainer exists (the loggers' hyper-parameters: a second W&B run, a
    second ``csv/version_N``) ran on that node too.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if not is_global_zero() and getattr(rank_zero_only, "rank", 0) == 0:
        rank_zero_only.rank = max(1, env_global_rank(num_nodes))


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _config_options(argv: list[str]) -> list[str]:
    """``--config-dir DIR`` and the like from the command line (they are not overrides)."""
    kept = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in _CONFIG_OPTIONS:
            if "=" in arg:
                kept.append(arg)
            elif i + 1 < len(argv):
                kept += [arg, argv[i + 1]]
                i += 1
        i += 1
    return kept


def hydra_subprocess_command(local_rank: int) -> tuple[list[str], str]:
    """The command and working dir of DDP rank ``local_rank`` of the running Hydra job."""
    import __main__
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    if __main__.__spec__ is None:  # a console script or a path: run the same file
        command = [sys.executable, os.path.abspath(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += _config_options(sys.argv[1:])
    command += [str(o) for o in hydra_cfg.overrides.task]
    command += [str(o) for o in hydra_cfg.overrides.hydra if not str(o).lstrip("+~").startswith(_OWN_KEYS)]
    output_dir = str(hydra_cfg.runtime.output_dir)
    log_name = f"ddp_rank{local_rank}.log"
    command += [
        "hydra.mode=RUN",
        f"hydra.run.dir={_quote(output_dir)}",
        "hydra.output_subdir=null",  # rank 0 wrote .hydra/ already
        f"hydra.job.name=ddp_rank{local_rank}",
        f"hydra.job_logging.handlers.file.filename={_quote(os.path.join(output_dir, log_name))}",
    ]
    return command, str(hydra_cfg.runtime.cwd)


def install_hydra_subprocess_command() -> None:
    """Make Lightning's DDP launchers start their children with :func:`hydra_subprocess_command`."""
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

    for module in (fabric_launcher, trainer_launcher):
        if not hasattr(module, "_hydra_subprocess_cmd"):  # pragma: no cover - guarded by a test on the pinned version
            raise RuntimeError(f"{module.__name__} has no _hydra_subprocess_cmd: Lightning changed; "
                               "update audioexp.utils.ddp")
        module._hydra_subprocess_cmd = hydra_subprocess_command
