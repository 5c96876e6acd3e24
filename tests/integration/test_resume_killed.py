"""Crash-safe runs: a run killed mid-epoch and started again ends as one never interrupted.

(Apart from tests/integration/test_resume.py so that the two long runs of these modules go to
different workers under `pytest -n 2 --dist loadfile`.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.integration.test_resume import _cli, _env, _wandb_service_alive, _weights


@pytest.mark.parametrize("data_format", ["files", "shards"])
def test_killed_mid_epoch_and_resumed_ends_as_an_uninterrupted_run(tmp_path, fm_corpus, data_format):
    """SIGKILL in the 2nd epoch (last.ckpt written every step), then the same command again:
    the same final weights, metrics.json and W&B run id as a run never interrupted; from files
    and from a shard stream (data.format=shards, chunk by chunk)."""
    import signal
    import time

    common = ["+experiment=demo", f"data.root={fm_corpus}", "logger=wandb", "trainer.max_epochs=3",
              "callbacks.checkpoint_every_n_steps=1", "data.num_workers=2", "data.batch_size=6"]
    if data_format == "shards":
        shards = tmp_path / "shards"
        _cli(["task=shards", "data=fm_broadcast_mini", f"data.root={fm_corpus}", f"data.shards.dir={shards}",
              "data.shards.chunk_bytes=400KB", "logger=none", f"hydra.run.dir={tmp_path / 'write'}"], tmp_path)
        common += ["data.format=shards", f"data.shards.dir={shards}", "data.shards.buffer_chunks=2"]
    whole = tmp_path / "whole"
    _cli([*common, f"hydra.run.dir={whole}"], tmp_path)
    steps_per_epoch = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] // 3

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "audioexp", *common, f"hydra.run.dir={cut}"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = cut / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    try:
        while True:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline
            if last.exists():
                try:
                    step = torch.load(last, weights_only=True)["global_step"]
                except Exception:  # replaced while being read
                    step = 0
                if step >= steps_per_epoch + 1:  # inside the 2nd epoch
                    break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # W&B's service process of the killed run notices its parent is gone within seconds; until
    # then it holds the run id, and W&B refuses a second writer ("run ID ... is in use")
    deadline = time.time() + 60
    while _wandb_service_alive(proc.pid):
        assert time.time() < deadline, "the killed run's wandb-core did not exit"
        time.sleep(0.5)
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert steps_per_epoch < killed_at < 2 * steps_per_epoch, killed_at
    assert not (cut / "metrics.json").exists()
    killed_id = json.loads((cut / "run.json").read_text())["wandb_id"]  # decided before training

    _cli([*common, f"hydra.run.dir={cut}"], tmp_path)  # the same command: continues from last.ckpt
    for key, value in _weights(whole / "checkpoints" / "last.ckpt").items():
        torch.testing.assert_close(_weights(last)[key], value, rtol=0, atol=1e-6, msg=key)
    expected = json.loads((whole / "metrics.json").read_text())
    got = json.loads((cut / "metrics.json").read_text())
    assert set(got) == set(expected)
    for key in expected:
        assert abs(got[key] - expected[key]) <= 1e-6, (key, got[key], expected[key])
    assert killed_id and json.loads((cut / "run.json").read_text())["wandb_id"] == killed_id
    assert len(list((cut / "wandb").glob(f"offline-run-*-{killed_id}"))) == 2  # one W&B run, resumed once
