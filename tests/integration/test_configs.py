"""Every option of every config group composes, and instantiates where the hardware allows."""

from __future__ import annotations

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from audioexp.tasks import TASKS
from audioexp.tasks.skeleton import resolved_config
from audioexp.tasks.train import fill_classes_from_data
from audioexp.utils.runs import build_model, instantiate_callbacks, instantiate_loggers
from tests.conftest import CONF_DIR, compose_config

# groups chosen with `+group=option` because they are not in the primary defaults list
APPENDED_GROUPS = {"experiment", "hparams_search", "launcher", "debug"}
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "local")
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF_DIR / g).glob("*.yaml"))]


def override(group: str, option: str) -> str:
    return f"+{group}={option}" if group in APPENDED_GROUPS else f"{group}={option}"


def _experiment_defaults() -> dict[str, dict[str, str]]:
    """experiment -> {group: option} from its ``override /group: option`` lines."""
    chosen = {}
    for path in sorted((CONF_DIR / "experiment").glob("*.yaml")):
        picks = {}
        for item in OmegaConf.load(path).get("defaults", []):
            if OmegaConf.is_dict(item):
                for key, value in item.items():
                    if str(key).startswith("override /"):
                        picks[str(key)[len("override /"):]] = str(value)
        chosen[path.stem] = picks
    return chosen


def _task_groups() -> dict[str, set[str]]:
    """task -> the config groups its ``conf/task/<task>.yaml`` brings."""
    out = {}
    for path in sorted((CONF_DIR / "task").glob("*.yaml")):
        groups = set()
        for item in OmegaConf.load(path).get("defaults", []):
            if OmegaConf.is_dict(item):
                groups |= {str(k).lstrip("/") for k in item}
        out[path.stem] = groups
    return out


def context_for(group: str, option: str) -> list[str]:
    """Overrides that put ``group=option`` among parts it is meant to work with.

    Options of data, features and model only make sense together (a VoxCeleb model on
    FM broadcast clips does not): compose each inside an experiment that picks it, or the
    experiment whose data family it belongs to; a group that only some tasks use (backend,
    embedder, probe) inside an experiment of such a task; a task on its own.
    """
    if group in ("experiment", "task"):
        return [override(group, option)]
    experiments = _experiment_defaults()
    for name, picks in experiments.items():
        if picks.get(group) == option:
            return [f"+experiment={name}", override(group, option)]
    family = option.split("_")[0]
    for name, picks in experiments.items():
        if group == "data" and picks.get("data", "").split("_")[0] == family:
            return [f"+experiment={name}", override(group, option)]
    tasks = _task_groups()
    for name, picks in experiments.items():
        if group in tasks.get(picks.get("task", "train"), ()):
            return [f"+experiment={name}", override(group, option)]
    return ["+experiment=demo", override(group, option)]


def test_groups_exist():
    required = {"data", "model", "features", "trainer", "logger", "callbacks", "paths", "hydra", "experiment", "debug"}
    assert required <= set(GROUPS)
    assert {"cpu", "gpu", "ddp", "ddp_cpu"} <= {o for g, o in OPTIONS if g == "trainer"}
    assert {"wandb", "csv", "none"} <= {o for g, o in OPTIONS if g == "logger"}


def test_experiment_not_in_primary_defaults():
    primary = OmegaConf.load(CONF_DIR / "config.yaml").defaults
    names = {next(iter(d)) if isinstance(d, dict) or OmegaConf.is_dict(d) else d for d in primary}
    assert not names & APPENDED_GROUPS


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_resolves(group, option, tmp_path):
    if group in APPENDED_GROUPS or group in ("task", "logger", "paths", "hydra") or group in _task_groups()["train"]:
        cfg = compose_config([override(group, option)], tmp_path)  # on its own, in the default task
        assert OmegaConf.select(cfg, "task") in TASKS
    cfg = compose_config(context_for(group, option), tmp_path)
    # every interpolation resolves (hydra's own node aside), and the task is a registered one
    resolved = resolved_config(cfg)
    assert resolved["task"] in TASKS


def _needs_gpus(cfg) -> int:
    if cfg.trainer.get("accelerator") in ("gpu", "cuda"):
        return int(cfg.trainer.get("devices", 1)) if str(cfg.trainer.get("devices", 1)).isdigit() else 1
    return 0


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_instantiates(group, option, tmp_path, imagenet_hub_cache, corpora):
    if group in ("hydra", "paths", "hparams_search", "launcher"):
        pytest.skip(f"{group} holds no _target_ of its own; composing and resolving it is the test")
    overrides = context_for(group, option)
    cfg = compose_config(overrides, tmp_path)
    if "data" in cfg:
        cfg = compose_config([*overrides, f"data.root={corpora[cfg.data._target_]}"], tmp_path)
    if cfg.task != "train":  # probe, fit_gmm, ...: their parts here; their tests run them whole
        extra = {"probe": {"seed": 0}, "backend": {"_partial_": True}}
        for node in ("data", "backend", "probe"):
            if cfg.get(node) is not None:
                assert hydra.utils.instantiate(cfg[node], **extra.get(node, {})) is not None
        return
    gpus = _needs_gpus(cfg)
    if gpus > torch.cuda.device_count():
        pytest.skip(f"{group}={option} needs {gpus} CUDA device(s); this machine has {torch.cuda.device_count()}")
    datamodule = hydra.utils.instantiate(cfg.data)
    fill_classes_from_data(cfg, datamodule)
    assert datamodule.num_classes == cfg.data.num_classes
    model = build_model(cfg).eval()
    out = model(torch.randn(2, 16000))
    assert out.shape == (2, cfg.data.num_classes)
    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    assert trainer is not None
    if group == "logger":
        assert len(loggers) == (0 if option == "none" else 1)
    for logger in loggers:
        if hasattr(logger, "experiment") and logger.__class__.__name__ == "WandbLogger":
            import wandb

            wandb.finish()


def test_trainer_and_early_stopping_overrides_need_no_plus(tmp_path, corpora):
    """Precision, accumulation, strategy, nodes and early stopping are plain overrides."""
    from lightning.pytorch.callbacks import EarlyStopping

    overrides = ["+experiment=demo", "trainer.precision=bf16-mixed", "trainer.accumulate_grad_batches=3",
                 "trainer.strategy=ddp", "trainer.num_nodes=1", "trainer.gradient_clip_val=1.0",
                 "callbacks.early_stopping.patience=4", "logger=none"]
    cfg = compose_config(overrides, tmp_path)
    callbacks = instantiate_callbacks(cfg.callbacks)
    (stopper,) = [c for c in callbacks if isinstance(c, EarlyStopping)]
    assert stopper.patience == 4 and stopper.monitor == cfg.monitor
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    assert trainer.accumulate_grad_batches == 3 and trainer.gradient_clip_val == 1.0
    assert trainer.precision == "bf16-mixed"
    assert type(trainer.strategy).__name__ == "DDPStrategy"


def test_ddp_presets(tmp_path):
    cpu = compose_config(["+experiment=demo", "trainer=ddp_cpu"], tmp_path)
    assert cpu.trainer.devices == 2 and cpu.trainer.accelerator == "cpu"
    assert cpu.trainer.strategy.process_group_backend == "gloo"
    gpu = compose_config(["+experiment=demo", "trainer=ddp", "trainer.num_nodes=4", "+launcher=slurm"], tmp_path)
    assert gpu.trainer.num_nodes == 4
    # the SLURM launcher asks for one task per GPU on as many nodes as the Trainer expects
    assert gpu.hydra.launcher.nodes == 4 and gpu.hydra.launcher.tasks_per_node == gpu.trainer.devices


def test_backbone_and_head_swap_by_config_alone(tmp_path):
    """Parts are injected: another network or head is a config choice, not a code edit."""
    from audioexp.networks.adresnet import VGG5, TableOneResNet
    from audioexp.networks.heads import FastaiClassifierHead, LinearClassifierHead

    base = ["+experiment=iemocap_resnet_baseline"]
    assert isinstance(build_model(compose_config(base, tmp_path)).backbone, TableOneResNet)
    swapped = build_model(compose_config([*base, "model/backbone=vgg5"], tmp_path))
    assert isinstance(swapped.backbone, VGG5) and swapped.head.in_features == 80
    assert swapped(torch.randn(2, 16000)).shape == (2, 4)
    demo = ["+experiment=demo"]
    assert isinstance(build_model(compose_config(demo, tmp_path)).head, FastaiClassifierHead)
    linear = build_model(compose_config([*demo, "model.head._target_=audioexp.networks.heads.LinearClassifierHead"], tmp_path))
    assert isinstance(linear.head, LinearClassifierHead) and linear(torch.randn(2, 16000)).shape == (2, 2)
