"""Crash-safe runs: last.ckpt is the latest state, a run continues in its own dir and W&B run,
and a run extended with more epochs keeps a valid OneCycle schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from audioexp.__main__ import run
from tests.conftest import compose_config


def test_last_checkpoint_is_the_last_epoch_even_without_improvement(tmp_path, fm_corpus):
    # a monitored value that never improves after epoch 0 (the epoch, minimised): the best
    # checkpoint stays at epoch 0, where Lightning's save_last would have left last.ckpt too
    cfg = compose_config(["+experiment=demo", "+debug=limit", "trainer.max_epochs=3",
                          "callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=min",
                          f"data.root={fm_corpus}", "logger=none"], tmp_path)
    run(cfg)
    ckpts = tmp_path / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["epoch"] == 2
    best = json.loads((tmp_path / "run.json").read_text())["best_checkpoint"]
    assert torch.load(tmp_path / best, weights_only=True)["epoch"] == 0
    assert not (tmp_path / ".lock").exists()  # released when the run ended


def _env() -> dict[str, str]:
    """This environment for a run of its own: W&B offline, and not attached to the W&B service
    this test process may have started (``WANDB_SERVICE``), which would outlive a killed run
    and keep its run id "in use"."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}


def _cli(args: list[str], cwd, timeout: int = 400) -> subprocess.CompletedProcess:
    env = _env()
    proc = subprocess.run([sys.executable, "-m", "audioexp", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ckpt_path_last_continues_the_run_in_its_dir_and_wandb_run_with_more_epochs(tmp_path, fm_corpus):
    common = ["+experiment=demo", "+debug=limit", f"data.root={fm_corpus}", "logger=wandb",
              f"paths.log_dir={tmp_path / 'logs'}", "trainer.max_epochs=1"]
    _cli(common, tmp_path)
    runs = list((tmp_path / "logs" / "train" / "runs" / "demo").iterdir())
    assert len(runs) == 1
    run_dir = runs[0]
    first_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]
    assert first_id
    # more epochs than the OneCycle schedule was planned for
    proc = _cli([*common[:-1], "trainer.max_epochs=3", "ckpt_path=last"], tmp_path)
    assert "OneCycle schedule rebuilt" in proc.stdout + proc.stderr
    assert [p.name for p in (tmp_path / "logs" / "train" / "runs" / "demo").iterdir()] == [run_dir.name]
    assert json.loads((run_dir / "run.json").read_text())["wandb_id"] == first_id
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] >= 0
    # and with the run dir given, the same command continues it without ckpt_path (resume=auto)
    proc = _cli([*common[:-1], "trainer.max_epochs=4", f"hydra.run.dir={run_dir}"], tmp_path)
    assert "continuing that run" in proc.stdout + proc.stderr
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3


def _wandb_service_alive(parent_pid: int) -> bool:
    """Whether a wandb-core started by ``parent_pid`` (``--pid PARENT``) still runs."""
    needle = f"--pid\0{parent_pid}\0".encode()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if needle in handle.read():
                    return True
        except (FileNotFoundError, NotADirectoryError, PermissionError, ProcessLookupError):
            continue
    return False


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]
