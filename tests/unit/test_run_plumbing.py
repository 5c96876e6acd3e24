"""The plumbing of a run: debug presets on every task, DDP children, sweep names, config tree."""

from __future__ import annotations

import logging
import sys

import pytest
from omegaconf import OmegaConf

from audioexp.data.splits import first_per_group
from audioexp.tasks.dev_run import apply_dev_run


def test_first_per_group_keeps_order_and_counts():
    rng = __import__("numpy").random.default_rng(0)
    groups = rng.integers(0, 4, size=200).tolist()
    keep = first_per_group(groups, 3)
    assert keep.tolist() == sorted(keep.tolist())
    kept = [groups[i] for i in keep]
    for g in set(groups):
        assert kept.count(g) == min(3, groups.count(g))
        # the first three of each group, not any three
        assert [i for i in keep if groups[i] == g] == [i for i, x in enumerate(groups) if x == g][:3]
    assert first_per_group(groups, None).tolist() == list(range(200))
    with pytest.raises(ValueError, match="at least 1"):
        first_per_group(groups, 0)


def test_dev_run_sets_only_keys_the_parts_have():
    cfg = OmegaConf.create({
        "data": {"root": "x", "batch_size": 32, "max_files_per_class": None},
        "backend": {"n_components": 512},
        "dev_run": {"data": {"batch_size": 4, "num_workers": 0, "max_files_per_class": 2},
                    "backend": {"n_components": 2, "max_iter": 3}, "probe": {"grid": "quick"}},
    })
    OmegaConf.set_struct(cfg, True)
    applied = apply_dev_run(cfg)
    assert cfg.data == {"root": "x", "batch_size": 4, "max_files_per_class": 2}
    assert cfg.backend == {"n_components": 2}
    assert "probe" not in cfg
    assert sorted(applied) == ["backend.n_components=2", "data.batch_size=4", "data.max_files_per_class=2"]
    assert apply_dev_run(OmegaConf.create({"dev_run": None, "data": {"batch_size": 3}})) == []


class _FakeHydraConfig:
    """What HydraConfig.get() holds inside job 1 of a sweep."""

    def __init__(self, tmp_path):
        self.cfg = OmegaConf.create({
            "overrides": {"task": ["+experiment=demo", "seed=2", "trainer=ddp_cpu", "data.root='/a b/c'"],
                          "hydra": ["hydra/launcher=submitit_local", "hydra.sweep.dir=/s", "hydra.run.dir=/x"]},
            "runtime": {"output_dir": str(tmp_path / "job 1"), "cwd": str(tmp_path)},
            "job": {"name": "__main__", "num": 1},
        })

    def get(self):
        return self.cfg


def test_ddp_children_run_the_job_not_the_sweep(tmp_path, monkeypatch):
    import __main__

    from hydra.core import hydra_config

    from audioexp.utils import ddp

    monkeypatch.setattr(hydra_config.HydraConfig, "get", staticmethod(_FakeHydraConfig(tmp_path).get))
    monkeypatch.setattr(sys, "argv", ["/x/audioexp/__main__.py", "-m", "--config-dir", "mine", "+experiment=demo",
                                      "seed=1,2", "trainer=ddp_cpu"])
    monkeypatch.setattr(__main__, "__spec__", type("Spec", (), {"name": "audioexp"})())
    command, cwd = ddp.hydra_subprocess_command(local_rank=1)
    assert command[:3] == [sys.executable, "-m", "audioexp"]
    assert command[3:5] == ["--config-dir", "mine"]
    assert "-m" not in command[3:] and "seed=1,2" not in command
    assert {"+experiment=demo", "seed=2", "trainer=ddp_cpu", "data.root='/a b/c'", "hydra/launcher=submitit_local",
            "hydra.sweep.dir=/s", "hydra.mode=RUN", "hydra.output_subdir=null"} <= set(command)
    assert "hydra.run.dir=/x" not in command  # replaced by the job's own dir
    assert f'hydra.run.dir="{tmp_path / "job 1"}"' in command
    assert cwd == str(tmp_path)


def test_ddp_patch_targets_exist_in_pinned_lightning():
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as trainer_launcher

    from audioexp.utils.ddp import hydra_subprocess_command, install_hydra_subprocess_command

    install_hydra_subprocess_command()
    assert fabric_launcher._hydra_subprocess_cmd is hydra_subprocess_command
    assert trainer_launcher._hydra_subprocess_cmd is hydra_subprocess_command


@pytest.mark.parametrize("variables,zero", [({}, True), ({"LOCAL_RANK": "1"}, False), ({"SLURM_PROCID": "3"}, False),
                                            ({"RANK": "0", "LOCAL_RANK": "0"}, True), ({"NODE_RANK": "1"}, False)])
def test_is_global_zero(variables, zero, monkeypatch):
    from audioexp.utils.ddp import _RANK_VARIABLES, is_global_zero

    for name in _RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert is_global_zero() is zero


def test_sweep_run_name(monkeypatch):
    from hydra.core import hydra_config
    from hydra.types import RunMode

    from audioexp.utils.loggers import sweep_run_name

    cfg = OmegaConf.create({"mode": RunMode.MULTIRUN, "job": {"num": 3, "name": "__main__"},
                            "overrides": {"task": ["+experiment=demo", "seed=2", "model.lr=0.0021",
                                                   "data.root=/corpora/fm", "embedder=compare"]}})
    monkeypatch.setattr(hydra_config.HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(hydra_config.HydraConfig, "get", staticmethod(lambda: cfg))
    assert sweep_run_name("demo") == "demo#3 seed=2 model.lr=0.0021 embedder=compare"
    cfg.mode = RunMode.RUN
    assert sweep_run_name("demo") is None


def test_lightning_logs_printed_once(capsys):
    from audioexp.utils.logging import route_library_logs_to_root

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    root.addHandler(handler)
    try:
        route_library_logs_to_root()
        logging.getLogger("lightning.pytorch.utilities.rank_zero").warning("only once")
    finally:
        root.removeHandler(handler)
    out = capsys.readouterr()
    assert (out.out + out.err).count("only once") == 1


def test_config_tree_resolves_and_saves(tmp_path):
    from audioexp.utils.config_tree import print_config_tree

    cfg = OmegaConf.create({"task": "train", "seed": 3, "tags": ["a"], "trainer": {"max_epochs": 2},
                            "data": {"root": "${paths.data_dir}/x"}, "paths": {"data_dir": "/d"}})
    print_config_tree(cfg, save_to=tmp_path / "tree.log")
    text = (tmp_path / "tree.log").read_text()
    assert text.index("data") < text.index("trainer") < text.index("paths")
    assert "root: /d/x" in text and "seed: 3" in text
    assert all(line == line.rstrip() for line in text.splitlines())
    bad = OmegaConf.create({"data": {"root": "${paths.missing}"}, "paths": {}})
    with pytest.raises(Exception, match="missing"):
        print_config_tree(bad)


def test_optimized_metric_must_be_reported():
    from audioexp.__main__ import optimized_value

    assert optimized_value({"val/acc_best": 0.75}, "val/acc_best") == 0.75
    assert optimized_value({"val/acc_best": float("nan")}, "val/acc_best") is None  # a failed trial
    assert optimized_value({"val/acc_best": 0.75}, None) is None
    with pytest.raises(KeyError, match=r"optimized_metric='val/acc_bset'.*val/acc_best"):
        optimized_value({"val/acc_best": 0.75}, "val/acc_bset")
