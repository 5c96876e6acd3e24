"""Multi-node training (docs/multinode.md).

Two "nodes" of one process each on this machine (``trainer=ddp_cpu trainer.num_nodes=2
trainer.devices=1``), each started by hand the way Lightning's ``LightningEnvironment``
reads a cluster it does not manage (``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``,
``WORLD_SIZE``; Lightning sets ``LOCAL_RANK`` itself), train and evaluate exactly what the
two processes of one node do (``trainer=ddp_cpu``, the settings of tests/integration/test_ddp.py):
global rank 1 on node 1 is not taken for rank 0, both nodes work in one run dir, only rank 0
writes it, and every rank trains on its own half of each epoch. The SLURM launcher asks for
the resources the Trainer expects (one task per GPU, ``trainer.num_nodes`` nodes).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from tests.conftest import ROOT, compose_config
from tests.integration.test_resume import _env


class SeenTrainingItems(Callback):
    """Writes ``OUT/rank<global rank>_epoch<epoch>.json``: the training items (corpus indices)
    this rank's sampler (``audioexp.data.resumable.EpochSampler``) gave it in the epoch."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        loader = trainer.train_dataloader
        sampler = loader.sampler
        # the same (seed, epoch) order the epoch's iterator yielded; the batches it ran
        items = [int(index) for index, _ in sampler][: int(trainer.num_training_batches) * loader.batch_size]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"world_size": trainer.world_size, "num_items": sampler.num_items, "items": items}
        (self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json").write_text(json.dumps(record))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_ranks(env: dict[str, str]) -> dict[str, str]:
    """``env`` without any rank or SLURM variable this test may run under."""
    return {k: v for k, v in env.items()
            if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
            and not k.startswith("SLURM_")}


def _pythonpath() -> str:
    """The repository first (the runs import :class:`SeenTrainingItems` from here)."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def _node_env(node_rank: int, port: int) -> dict[str, str]:
    """One node's environment as Lightning's LightningEnvironment reads it."""
    return {**_without_ranks(_env()), "PYTHONPATH": _pythonpath(), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "NODE_RANK": str(node_rank), "WORLD_SIZE": "2"}


def _rank_overrides(run_dir: Path, rank: int) -> list[str]:
    """What a process of global rank > 0 adds to the command (docs/multinode.md): rank 0's run
    dir, no ``.hydra/`` of its own, its log in ``ddp_rank<N>.log``: what audioexp gives the
    processes Lightning starts (``audioexp.utils.ddp.hydra_subprocess_command``)."""
    return ["hydra.output_subdir=null", f"hydra.job.name=ddp_rank{rank}",
            f"hydra.job_logging.handlers.file.filename={run_dir / f'ddp_rank{rank}.log'}"]


def _run_two_nodes(common: list[str], run_dir: Path, cwd: Path, timeout: int = 300) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "audioexp", *common, f"hydra.run.dir={run_dir}"]
    procs = [subprocess.Popen(command + (_rank_overrides(run_dir, rank) if rank else []), cwd=cwd,
                              env=_node_env(rank, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"node {rank} exited {p.returncode}:\n{out[-3000:]}"


def _seen(out_dir: Path) -> dict[tuple[int, int], dict]:
    return {(int(p.stem.split("_")[0][4:]), int(p.stem.split("_epoch")[1])): json.loads(p.read_text())
            for p in out_dir.glob("rank*_epoch*.json")}


#: the metrics (test/acc, val and test loss, ...) agree to this (measured: equal to the last bit, 0.0, in float64;
#: both runs are the same computation: same global ranks, same shards, same gloo all-reduces)
TOLERANCE = 1e-9


def test_two_nodes_train_and_evaluate_as_two_processes_on_one_node(tmp_path, fm_corpus):
    # test_ddp.py's settings (float64, no dropout, data.batch_size per rank), whole epochs: 14
    # training items, 7 per rank, one batch of 7 (the loader drops an incomplete last batch,
    # so a batch size that divides the share accounts for every item of an epoch)
    common = ["+experiment=demo", "+debug=limit", f"data.root={fm_corpus}", "logger=csv", "trainer.max_epochs=2",
              "trainer.limit_train_batches=1.0", "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0",
              "trainer.precision=64-true", "model.head.dropout=0.0", "data.batch_size=7", "data.clip_seconds=2.0",
              "trainer=ddp_cpu",
              "+callbacks.seen._target_=tests.integration.test_multinode.SeenTrainingItems"]
    one_node, two_nodes = tmp_path / "one_node", tmp_path / "two_nodes"
    one_env = {**_without_ranks(_env()), "PYTHONPATH": _pythonpath()}
    proc = subprocess.run([sys.executable, "-m", "audioexp", *common, f"+callbacks.seen.out_dir={tmp_path / 'seen_one'}",
                           f"hydra.run.dir={one_node}"], cwd=tmp_path, env=one_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _run_two_nodes([*common, "trainer.num_nodes=2", "trainer.devices=1",
                    f"+callbacks.seen.out_dir={tmp_path / 'seen_two'}"], two_nodes, tmp_path)

    # one run dir, written by rank 0; rank 1 logged beside it
    assert [p.name for p in tmp_path.iterdir() if (p / "metrics.json").exists() or (p / ".hydra").exists()] \
        in (["one_node", "two_nodes"], ["two_nodes", "one_node"])
    assert len(list(two_nodes.glob("**/metrics.json"))) == 1
    assert (two_nodes / "ddp_rank1.log").exists() and (two_nodes / "train.log").exists()
    assert "ddp_rank1" not in (two_nodes / ".hydra" / "hydra.yaml").read_text()  # rank 0's, not overwritten
    assert (two_nodes / "checkpoints" / "last.ckpt").exists() and not (two_nodes / ".lock").exists()
    # one CSV log: node 1's process was not rank 0 before its Trainer existed either (it made a
    # csv/version_0 of its own, hyper-parameters only, before audioexp.utils.ddp.align_rank_zero_only)
    assert sorted(p.name for p in (two_nodes / "csv").iterdir()) == ["version_0"]
    assert (two_nodes / "csv" / "version_0" / "metrics.csv").exists()
    assert not (tmp_path / "logs" / "train" / "runs").exists()  # no run dir of its own for node 1

    one = json.loads((one_node / "metrics.json").read_text())
    two = json.loads((two_nodes / "metrics.json").read_text())
    assert {"test/acc", "test/loss", "val/loss", "val/acc_best", "train/loss"} <= set(one) == set(two), sorted(one)
    for key in one:  # every metric, training's included
        assert two[key] == pytest.approx(one[key], abs=TOLERANCE, rel=0), (key, two[key], one[key])

    # each rank trained on its own half of every epoch, the same half as on one node
    seen_one, seen_two = _seen(tmp_path / "seen_one"), _seen(tmp_path / "seen_two")
    assert sorted(seen_two) == sorted(seen_one) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for epoch in (0, 1):
        ranks = [seen_two[(rank, epoch)] for rank in (0, 1)]
        assert all(r["world_size"] == 2 for r in ranks)
        num_items = ranks[0]["num_items"]
        assert num_items % 2 == 0  # (an odd count would repeat one item to pad the shards)
        assert len(ranks[0]["items"]) == len(ranks[1]["items"]) == num_items // 2
        assert sorted(ranks[0]["items"] + ranks[1]["items"]) == list(range(num_items))  # disjoint, no gap
        for rank in (0, 1):
            assert seen_two[(rank, epoch)]["items"] == seen_one[(rank, epoch)]["items"]
    assert seen_two[(0, 0)]["items"] != seen_two[(0, 1)]["items"]  # reshuffled per epoch


@pytest.mark.parametrize(("num_nodes", "devices"), [(2, 4), (4, 8), (1, 2)])
def test_slurm_launcher_follows_the_trainer(num_nodes, devices, tmp_path):
    cfg = compose_config(["+experiment=demo", "trainer=ddp", f"trainer.num_nodes={num_nodes}",
                          f"trainer.devices={devices}", "+launcher=slurm"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    # sbatch --nodes=N --ntasks-per-node=G --gpus-per-node=G: one task per GPU, srun starts them all
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (num_nodes, devices, devices)
    assert cfg.trainer.num_nodes == num_nodes and cfg.trainer.devices == devices
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu"
    # Lightning reads the ranks from SLURM (SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID) and starts
    # no processes of its own; submitit, not Lightning, requeues
    plugins = {p["_target_"]: p for p in cfg.trainer.plugins}
    slurm = plugins["lightning.pytorch.plugins.environments.SLURMEnvironment"]
    assert slurm.auto_requeue is False
    assert "audioexp.utils.checkpoint_io.AtomicCheckpointIO" in plugins
    assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0


@pytest.mark.parametrize(("env", "rank"), [
    ({"NODE_RANK": "1", "WORLD_SIZE": "2"}, 1),                      # a node started by hand, before Lightning
    ({"NODE_RANK": "1", "LOCAL_RANK": "0", "WORLD_SIZE": "8"}, 4),   # ... of 2 x 4, LOCAL_RANK given
    ({"NODE_RANK": "1", "LOCAL_RANK": "3", "WORLD_SIZE": "8"}, 7),   # Lightning's child on that node
    ({"NODE_RANK": "2"}, 2),                                         # WORLD_SIZE unknown: not zero at least
    ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, 1),                   # Lightning's child inside an allocation
    ({"SLURM_PROCID": "5"}, 5),                                      # srun
    ({"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1"}, 3),        # torchrun
])
def test_a_process_of_a_second_node_is_not_rank_zero_before_its_trainer(env, rank, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from audioexp.utils.ddp import align_rank_zero_only, env_global_rank, is_global_zero

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert env_global_rank(num_nodes=2) == rank and not is_global_zero()
    monkeypatch.setattr(rank_zero_only, "rank", 0)  # what Lightning read at import where LOCAL_RANK is 0 or unset
    align_rank_zero_only(num_nodes=2)
    assert rank_zero_only.rank >= 1
    for name in env:
        monkeypatch.delenv(name)
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    align_rank_zero_only(num_nodes=2)  # one process, or rank 0: unchanged
    assert rank_zero_only.rank == 0 and env_global_rank() == 0 and is_global_zero()


def test_slurm_environment_reads_the_global_rank_of_a_second_node(monkeypatch):
    """Under srun, task 5 of 2 nodes x 4 GPUs is node 1, local rank 1, global rank 5: neither
    Lightning nor audioexp takes it for rank 0; task 0 of node 0 is."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from audioexp.utils.ddp import is_global_zero

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    slurm = {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_JOB_NAME": "demo", "SLURM_NODELIST": "gpu[01-02]",
             "SLURM_JOB_ID": "123"}
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    for procid, localid, nodeid, zero in (("5", "1", "1", False), ("4", "0", "1", False), ("0", "0", "0", True)):
        monkeypatch.setenv("SLURM_PROCID", procid)
        monkeypatch.setenv("SLURM_LOCALID", localid)
        monkeypatch.setenv("SLURM_NODEID", nodeid)
        env = SLURMEnvironment(auto_requeue=False)
        assert (env.global_rank(), env.local_rank(), env.node_rank(), env.world_size()) == \
            (int(procid), int(localid), int(nodeid), 8)
        assert env.creates_processes_externally
        assert is_global_zero() is zero
