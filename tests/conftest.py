"""Shared fixtures: the composed config, miniature corpora, an offline W&B."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "audioexp" / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

# no W&B account in tests: offline, quiet, no console capture threads
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def experiment_task(name: str) -> str:
    """The task an experiment file chooses (``override /task: X`` in its defaults; train if none)."""
    from omegaconf import OmegaConf

    for item in OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml").get("defaults", []):
        if OmegaConf.is_dict(item) and "override /task" in item:
            return str(item["override /task"])
    return "train"


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/`` as ``python -m audioexp`` would, with outputs under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.paths.data_dir = str(output_dir / "data")
    return cfg


@pytest.fixture(scope="session")
def fm_corpus(tmp_path_factory) -> Path:
    """A small generated FM broadcast corpus (speech/ and music/ folders of 5-s clips)."""
    from audioexp.minicorpus import write_minicorpus

    root = tmp_path_factory.mktemp("corpora") / "fm_broadcast"
    return write_minicorpus("fm_broadcast", root, seed=7, clips_per_class=12, recordings_per_class=4)


@pytest.fixture(scope="session")
def voxceleb_corpus(tmp_path_factory) -> Path:
    """A small generated VoxCeleb1 (wav/<spk>/<video>/<utt>.wav, iden_split.txt, veri_test.txt)."""
    from audioexp.minicorpus import write_minicorpus

    root = tmp_path_factory.mktemp("corpora") / "voxceleb1"
    return write_minicorpus("voxceleb1", root, seed=3, num_speakers=10, num_test_speakers=4,
                            videos_per_speaker=3, utterances_per_video=2)


@pytest.fixture(scope="session")
def emodb_corpus(tmp_path_factory) -> Path:
    """A small generated EmoDB (wav/03a01Fa.wav ...: 10 speakers x 7 emotions x 2 texts of 0.6-0.9 s)."""
    from audioexp.minicorpus import write_minicorpus

    root = tmp_path_factory.mktemp("corpora") / "emodb"
    return write_minicorpus("emodb", root, seed=5, texts_per_emotion=2, min_seconds=0.6, max_seconds=0.9)


@pytest.fixture(scope="session")
def iemocap_corpus(tmp_path_factory) -> Path:
    """A small generated IEMOCAP (Session{1..5}/sentences/wav, dialog/EmoEvaluation), and a stand-in
    speaker pre-training run (random Table 1 ResNet weights, as the fake ImageNet cache) named by
    AUDIOEXP_SPEAKER_PRETRAINED_RUN for the recipes that fine-tune one."""
    from audioexp.minicorpus import write_minicorpus
    from audioexp.networks.adresnet import TableOneResNet

    base = tmp_path_factory.mktemp("corpora")
    (base / "speaker_run" / "checkpoints").mkdir(parents=True)
    (base / "speaker_run" / "resolved_config.yaml").write_text("model:\n  network: resnet\n  conv1_stride: 1\n")
    state = {f"backbone.{k}": v for k, v in TableOneResNet().state_dict().items()}
    torch.save({"state_dict": state}, base / "speaker_run" / "checkpoints" / "last.ckpt")
    os.environ["AUDIOEXP_SPEAKER_PRETRAINED_RUN"] = str(base / "speaker_run")
    return write_minicorpus("iemocap", base / "iemocap", seed=5, utterances_per_emotion=2, scripted_per_actor=1,
                            extra_labels=("exc", "fru"), min_seconds=1.0, max_seconds=1.5)


@pytest.fixture(scope="session")
def asvspoof_corpus(tmp_path_factory) -> Path:
    """A small generated ASVspoof 2017 v2 (ASVspoof2017_V2_{train,dev,eval}/, protocol_V2/)."""
    from audioexp.minicorpus import write_minicorpus

    root = tmp_path_factory.mktemp("corpora") / "asvspoof2017"
    return write_minicorpus("asvspoof2017", root, seed=1, utterances_per_class={"train": 8, "dev": 6, "eval": 6},
                            seconds=(1.0, 1.2))


@pytest.fixture(scope="session")
def corpora(fm_corpus, voxceleb_corpus, emodb_corpus, iemocap_corpus, asvspoof_corpus) -> dict[str, Path]:
    """Miniature corpus root per DataModule class path."""
    return {
        "audioexp.data.fm_broadcast.FMBroadcastDataModule": fm_corpus,
        "audioexp.data.voxceleb1.VoxCeleb1DataModule": voxceleb_corpus,
        "audioexp.data.emodb.EmoDBDataModule": emodb_corpus,
        "audioexp.data.iemocap.IEMOCAPDataModule": iemocap_corpus,
        "audioexp.data.asvspoof2017.ASVspoof2017": asvspoof_corpus,
    }


@pytest.fixture
def imagenet_hub_cache(tmp_path, monkeypatch):
    """torchvision-format ResNet18 weights in a private torch hub cache (no download)."""
    from torchvision.models import resnet18

    from audioexp.networks.resnet import imagenet_checkpoint_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()
    path = imagenet_checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


#: Modules that take minutes, started first so that under `make test` (pytest -n 2 --dist
#: loadfile: each module on one worker, in order) the README's chain of commands, the longest,
#: runs beside the rest instead of after it.
LONG_MODULES = ("test_readme.py", "test_resume_killed.py", "test_ddp.py", "test_resume.py", "test_requeue.py",
                "test_predict.py", "test_asvspoof.py", "test_experiments.py", "test_export_speaker.py",
                "test_replay_predict.py", "test_voxceleb.py", "test_iemocap_chain.py", "test_probe_predict.py",
                "test_multinode.py", "test_shards.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)

    items.sort(key=rank)  # stable: the order within a module (and of the others) is kept
