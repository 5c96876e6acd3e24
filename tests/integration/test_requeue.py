"""A job that gets its timeout signal is requeued and continues in its own dir from last.ckpt
(Hydra's submitit launcher; its local executor stands in for SLURM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from tests.integration.test_resume import _env



def _task_pids(sweep_dir) -> list[int]:
    """The submitit task processes of this sweep (``python -u -m submitit.core._submit FOLDER``)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmd = handle.read().split(b"\0")
        except (FileNotFoundError, NotADirectoryError, PermissionError, ProcessLookupError):
            continue
        if b"submitit.core._submit" in cmd and any(str(sweep_dir).encode() in part for part in cmd):
            pids.append(int(entry))
    return pids


def test_timeout_signal_requeues_and_the_job_resumes(tmp_path, fm_corpus):
    from submitit.local.local import LocalJobEnvironment

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "audioexp", "-m", "+experiment=demo", f"data.root={fm_corpus}", "logger=none",
           "data.batch_size=4", "trainer.max_epochs=5", "callbacks.checkpoint_every_n_steps=1",
           "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    try:
        deadline = time.time() + 300
        while True:  # wait until the job is inside its 2nd epoch
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline
            try:
                if last.exists() and torch.load(last, weights_only=False)["global_step"] >= 4:
                    break
            except Exception:  # replaced while being read
                pass
            time.sleep(0.1)
        pids = _task_pids(sweep)
        assert pids, "no submitit task process found"
        for pid in pids:  # what the executor sends shortly before the time limit
            os.kill(pid, LocalJobEnvironment._usr_sig())
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-3000:]
    job = sweep / "0"
    log = (job / "train.log").read_text()
    assert log.count("continuing that run") == 1, log[-3000:]
    assert json.loads((job / "metrics.json").read_text())["test/acc"] >= 0
    assert torch.load(last, weights_only=False)["epoch"] == 4
    submitit_logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "Requeued" in submitit_logs or "requeue" in submitit_logs.lower()
