"""A run dir is input, not code: a pickle payload in its checkpoint or an untrusted
``_target_`` in its config is refused by every consumer (evaluate, embed, the audioexp
embedder, pretrained_run, resume) before it runs; the project's own checkpoints hold only
tensors and plain values."""

from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import ListConfig, OmegaConf

from audioexp.__main__ import run
from audioexp.embedders.embedders import RunEmbedder
from audioexp.inference import load_run
from audioexp.networks.adresnet import TableOneResNet
from audioexp.systems.adresnet import load_pretrained_extractor
from audioexp.tasks.skeleton import resolved_config
from audioexp.utils.checkpoint_io import AtomicCheckpointIO
from audioexp.utils.rng import RNGStateCheckpoint
from audioexp.utils.runs import RESOLVED_CONFIG, RUN_INFO, load_model, load_run_config
from audioexp.utils.trust import UntrustedConfigError, check_targets, load_checkpoint
from tests.conftest import CONF_DIR, compose_config


def leave_marker(path: str) -> None:
    """What the payload runs when unpickled: proof that it ran."""
    Path(path).write_text("the payload ran")


class Payload:
    """Unpickles to a call of :func:`leave_marker` (as ``os.system`` would be called)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return leave_marker, (self.marker,)


def write_payload(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {}, "epoch": 0, "payload": Payload(marker)}, path)


@pytest.fixture(scope="module")
def trained_run(fm_corpus, tmp_path_factory) -> Path:
    """The demo trained for a few batches: a real run dir of the project."""
    run_dir = tmp_path_factory.mktemp("trained")
    cfg = compose_config(["+experiment=demo", "+debug=limit", "trainer.max_epochs=1", f"data.root={fm_corpus}",
                          "logger=none"], run_dir)
    run(cfg)
    return run_dir


@pytest.fixture
def payload_run(trained_run, tmp_path) -> tuple[Path, Path]:
    """(run dir, marker file): the trained run's config, a pickle payload as every checkpoint."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run / RESOLVED_CONFIG, run_dir / RESOLVED_CONFIG)
    shutil.copy(trained_run / RUN_INFO, run_dir / RUN_INFO)
    marker = tmp_path / "payload_ran"
    best = json.loads((trained_run / RUN_INFO).read_text())["best_checkpoint"]
    for name in {best, "checkpoints/last.ckpt"}:
        write_payload(run_dir / name, marker)
    return run_dir, marker


def test_the_payload_is_live(tmp_path):
    # the refusals below mean something only if unpickling this file really runs code
    marker = tmp_path / "ran"
    write_payload(tmp_path / "evil.ckpt", marker)
    torch.load(tmp_path / "evil.ckpt", weights_only=False)
    assert marker.exists()


def test_project_checkpoints_hold_only_tensors_and_plain_values(trained_run):
    ckpts = sorted((trained_run / "checkpoints").glob("*.ckpt"))
    assert len(ckpts) >= 2  # the best and last.ckpt
    for path in ckpts:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
        ckpt = torch.load(path, weights_only=True)
        assert {"state_dict", "loops", "callbacks", "optimizer_states", "hyper_parameters"} <= set(ckpt)
    model = load_model(trained_run)  # the whole rebuild: checked config, weights_only load
    assert not model.training


def test_rng_states_round_trip_through_a_weights_only_load(tmp_path):
    np.random.seed(3)
    random.seed(3)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in NumPy's state: it must travel too
    callback = RNGStateCheckpoint()
    torch.save({"callbacks": {callback.state_key: callback.state_dict()}}, tmp_path / "rng.ckpt")
    expected = (np.random.normal(size=5), np.random.randint(0, 2**31, size=5), random.random(), torch.rand(3))

    np.random.seed(99)
    random.seed(99)
    torch.manual_seed(99)
    restored = RNGStateCheckpoint()
    restored.load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["callbacks"][callback.state_key])
    restored.on_train_batch_start(None, None, None, 0)
    got = (np.random.normal(size=5), np.random.randint(0, 2**31, size=5), random.random(), torch.rand(3))
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert torch.equal(got[3], expected[3])


def test_checkpoints_written_before_still_load_and_restore(tmp_path):
    # the NumPy RNG state used to be saved as np.random.get_state()'s tuple (an ndarray inside)
    from audioexp.utils.rng import set_rng_states

    np.random.seed(5)
    old = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"callbacks": {"RNGStateCheckpoint": {"rng_states": old}}}, tmp_path / "old.ckpt")
    expected = np.random.normal(size=4)
    states = load_checkpoint(tmp_path / "old.ckpt")["callbacks"]["RNGStateCheckpoint"]["rng_states"]
    np.random.seed(0)
    set_rng_states(states)
    np.testing.assert_array_equal(np.random.normal(size=4), expected)


def test_evaluate_refuses_a_pickle_payload(payload_run, tmp_path):
    run_dir, marker = payload_run
    for which in ("best", "last"):
        cfg = compose_config(["task=evaluate", f"eval.run_dir={run_dir}", f"eval.checkpoint={which}", "logger=none"],
                             tmp_path / f"eval_{which}")
        with pytest.raises(pickle.UnpicklingError):
            run(cfg)
    assert not marker.exists()


def test_embed_refuses_a_pickle_payload(payload_run, fm_corpus, tmp_path):
    run_dir, marker = payload_run
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_run(run_dir)
    wavs = sorted(str(p) for p in Path(fm_corpus).rglob("*.wav"))[:2]
    cfg = compose_config(["task=embed", f"embed.run_dir={run_dir}", f"embed.files=[{','.join(wavs)}]", "logger=none"],
                         tmp_path / "embed")
    with pytest.raises(pickle.UnpicklingError):
        run(cfg)
    assert not marker.exists()


def test_the_audioexp_embedder_refuses_a_pickle_payload(payload_run):
    run_dir, marker = payload_run
    with pytest.raises(pickle.UnpicklingError):
        RunEmbedder(str(run_dir), checkpoint="last").embed(datamodule=None)  # the run is loaded first
    assert not marker.exists()


def test_pretrained_run_refuses_a_pickle_payload(tmp_path):
    run_dir = tmp_path / "speaker_run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / RESOLVED_CONFIG).write_text("model:\n  network: resnet\n  conv1_stride: 1\n")
    marker = tmp_path / "payload_ran"
    write_payload(run_dir / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(pickle.UnpicklingError):
        load_pretrained_extractor(TableOneResNet(), run_dir)
    assert not marker.exists()


def test_a_resumed_checkpoint_is_loaded_weights_only(tmp_path):
    # ckpt_path=... of task=train goes through the trainer's checkpoint IO, whatever Lightning asks
    marker = tmp_path / "payload_ran"
    write_payload(tmp_path / "last.ckpt", marker)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt", weights_only=False)
    assert not marker.exists()


def test_hyperparameters_are_saved_as_plain_values(tmp_path):
    hparams = {"top_k": ListConfig([5]), "nested": {"names": ListConfig(["a", "b"])}, "lr": 0.1}
    checkpoint = {"state_dict": {"w": torch.ones(2)}, "hyper_parameters": hparams}
    AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "h.ckpt")
    loaded = torch.load(tmp_path / "h.ckpt", weights_only=True)["hyper_parameters"]
    assert loaded == {"top_k": [5], "nested": {"names": ["a", "b"]}, "lr": 0.1}
    assert isinstance(checkpoint["hyper_parameters"]["top_k"], ListConfig)  # the caller's dict untouched


def write_config_with(run_dir: Path, trained_run: Path, key: str, node) -> Path:
    cfg = OmegaConf.load(trained_run / RESOLVED_CONFIG)
    OmegaConf.update(cfg, key, node, force_add=True)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "last.ckpt")
    OmegaConf.save(cfg, run_dir / RESOLVED_CONFIG)
    return run_dir / RESOLVED_CONFIG


@pytest.mark.parametrize("key,node,named", [
    ("model", {"_target_": "os.system", "command": "touch {marker}"}, "model._target_='os.system'"),
    ("model.backbone._target_", "subprocess.run", "model.backbone._target_='subprocess.run'"),
    ("trainer.plugins", [{"_target_": "audioexp.utils.checkpoint_io.AtomicCheckpointIO"},
                         {"_target_": "tests.unit.test_safe_loading.leave_marker", "path": "{marker}"}],
     "trainer.plugins[1]._target_='tests.unit.test_safe_loading.leave_marker'"),
    ("model.head._args_", [{"_target_": "builtins.eval", "_partial_": True}], "model.head._args_[0]._target_='builtins.eval'"),
])
def test_untrusted_targets_are_refused_before_anything_is_built(trained_run, tmp_path, key, node, named):
    marker = tmp_path / "payload_ran"
    node = json.loads(json.dumps(node).replace("{marker}", str(marker)))
    path = write_config_with(tmp_path / "run", trained_run, key, node)
    for load in (load_run_config, load_model, load_run, lambda d: RunEmbedder(str(d)).embed(None)):
        with pytest.raises(UntrustedConfigError) as err:
            load(tmp_path / "run")
        assert named in str(err.value) and str(path) in str(err.value)
        assert "only load run dirs you trust" in str(err.value)
    cfg = compose_config(["task=evaluate", f"eval.run_dir={tmp_path / 'run'}", "logger=none"], tmp_path / "eval")
    with pytest.raises(UntrustedConfigError, match="refusing to build"):
        run(cfg)
    assert not marker.exists()


@pytest.mark.parametrize("target", [
    "os.system", "builtins.eval", "subprocess.Popen", "hydra.utils.get_method", "functools.partial",
    "torch.load", "pickle.loads",
    # names under a trusted package that reach something else
    "audioexp.tasks.train.os.system",                           # a module attribute
    "torch.nn.modules.module.torch.load",
    "audioexp.utils.runs.hydra.utils.instantiate",
    "audioexp.systems.speech_music.SpeechMusicResNet.load_from_checkpoint",  # a method (unpickles)
    "lightning.pytorch.LightningModule.load_from_checkpoint",
    "lightning.fabric.utilities.cloud_io._load",                # private
    "audioexp.utils.files.atomic_write_text",                   # a function that writes a file
    "audioexp.utils.trust.load_checkpoint",
    "audioexp.",
])
def test_untrusted_target_names(target):
    with pytest.raises(UntrustedConfigError, match="refusing to build a.b._target_="):
        check_targets({"a": {"b": {"_target_": target}}}, "x.yaml")


@pytest.mark.parametrize("target", [3, ["os.system"], {"_target_": "os.system"}, None])
def test_a_target_must_be_a_name(target):
    with pytest.raises(UntrustedConfigError, match="a._target_"):
        check_targets({"a": {"_target_": target}}, "x.yaml")


def test_an_interpolated_target_is_checked_resolved(monkeypatch):
    monkeypatch.setenv("AUDIOEXP_TEST_TARGET", "os.system")
    cfg = OmegaConf.create({"model": {"_target_": "${oc.env:AUDIOEXP_TEST_TARGET}"}})
    with pytest.raises(UntrustedConfigError, match="'os.system'"):
        check_targets(cfg, "x.yaml")


EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_every_experiment_config_passes_the_allowlist(tmp_path):
    # what a run dir of any experiment saves must be loadable: the allowlist covers the project
    for experiment in EXPERIMENTS:
        cfg = compose_config([f"+experiment={experiment}", "logger=wandb"], tmp_path / experiment)
        check_targets(resolved_config(cfg), experiment)
    others = (["logger=csv"], ["trainer=ddp"], ["trainer=ddp_cpu"], ["+launcher=slurm"], ["task=evaluate"],
              ["task=embed"], *(["+experiment=emodb_probe", f"embedder={e}"] for e in ("byols", "egemaps", "audioexp")),
              ["+experiment=asvspoof17_cqcc_gmm", "backend=gmm_torch"])
    for overrides in others:
        check_targets(resolved_config(compose_config(overrides, tmp_path / "other")), " ".join(overrides))
