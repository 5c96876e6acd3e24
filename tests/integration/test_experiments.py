"""Every experiment runs end to end on a miniature corpus; multirun, W&B offline, evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import hydra
import pytest
from omegaconf import OmegaConf

from audioexp.__main__ import run
from audioexp.utils.wandb_offline import find_offline_runs, read_offline_run
from tests.conftest import CONF_DIR, compose_config, experiment_task

# experiments of the train task (other tasks, e.g. probe or fit_gmm, have their own tests)
EXPERIMENTS = sorted(
    p.stem for p in (CONF_DIR / "experiment").glob("*.yaml") if experiment_task(p.stem) == "train"
)


# what each family of experiments must report at test time
EXPECTED_TEST_METRICS = {
    "fm_broadcast": {"test/acc", "test/err_speech_as_music", "test/err_music_as_speech", "test/uar"},
    "identification": {"test/acc", "test/top5", "test/uar"},
    "verification": {"test/eer", "test/min_dcf"},
    "leave_one_speaker_out": {"test/acc", "test/uar", "test/weighted_f1"},
}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(experiment, tmp_path, corpora, imagenet_hub_cache):
    # the real recipes load ImageNet weights: here they come from a fake hub cache
    base = [f"+experiment={experiment}", "+debug=fdr", "logger=csv"]
    composed = compose_config(base, tmp_path)
    if "width" in composed.model.get("backbone", {}):  # the VGG recipes at a quarter of their channels: the same code, 4x faster on a CPU
        base.append("model.backbone.width=0.25")
    root = corpora[composed.data._target_]
    cfg = compose_config([*base, f"data.root={root}"], tmp_path)
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    family = cfg.data.get("protocol", "fm_broadcast")
    assert EXPECTED_TEST_METRICS[family] <= set(metrics), sorted(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in EXPECTED_TEST_METRICS[family] if k == k)
    assert (tmp_path / "resolved_config.yaml").exists()


def test_train_then_evaluate_saved_run(tmp_path, fm_corpus):
    train_dir = tmp_path / "train"
    cfg = compose_config(["+experiment=demo", "+debug=limit", f"data.root={fm_corpus}", "logger=none"], train_dir)
    value = run(cfg)
    trained = json.loads((train_dir / "metrics.json").read_text())
    assert value == pytest.approx(trained["val/acc_best"])
    info = json.loads((train_dir / "run.json").read_text())
    assert (train_dir / info["best_checkpoint"]).exists()
    assert (train_dir / "checkpoints" / "last.ckpt").exists()
    assert (train_dir / "test_confusion_matrix.png").stat().st_size > 1000

    for split in ("test", "val"):
        eval_dir = tmp_path / f"eval_{split}"
        cfg = compose_config(
            ["task=evaluate", f"eval.run_dir={train_dir}", f"eval.split={split}", "logger=none"], eval_dir
        )
        run(cfg)
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        # the best checkpoint on the same split gives the same numbers as at the end of training
        assert metrics[f"{split}/acc"] == pytest.approx(trained[f"{split}/acc"] if split == "test" else trained["val/acc_best"], abs=1e-6)

    from audioexp.utils.runs import load_model

    model = load_model(train_dir)
    assert not model.training


def test_multirun_two_jobs_with_own_wandb_runs(tmp_path, fm_corpus):
    # no sweep dir given: the default one (logs/train/multiruns/demo/DATE) under the working dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOEXP_")}
    env["WANDB_MODE"] = "offline"
    cmd = [sys.executable, "-m", "audioexp", "-m", "+experiment=demo", "seed=1,2", "+debug=limit", f"data.root={fm_corpus}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns" / "demo").iterdir()
    run_ids = set()
    for job in ("0", "1"):
        job_dir = sweep / job
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert "test/acc" in metrics
        runs = find_offline_runs(job_dir)
        assert len(runs) == 1, f"job {job} should have exactly one W&B run under its own dir"
        wb = read_offline_run(runs[0])
        assert wb["group"] == "demo"
        assert wb["name"] == f"demo#{job} seed={int(job) + 1}"  # the swept value; paths are left out
        assert wb["summary"]["test/acc"] == pytest.approx(metrics["test/acc"])
        assert any(key.startswith("val/acc") for key in wb["summary"])
        assert wb["config"]["seed"] == int(job) + 1
        assert any("confusion_matrix" in m for m in wb["media"])
        run_ids.add(wb["run_id"])
    assert len(run_ids) == 2


def test_resume_from_checkpoint_continues_the_same_wandb_run(tmp_path, fm_corpus):
    first = tmp_path / "first"
    run(compose_config(["+experiment=demo", "+debug=limit", f"data.root={fm_corpus}", "trainer.max_epochs=1"], first))
    info = json.loads((first / "run.json").read_text())
    assert info["wandb_id"]
    ckpt = first / "checkpoints" / "last.ckpt"
    second = tmp_path / "second"
    run(compose_config(["+experiment=demo", "+debug=limit", f"data.root={fm_corpus}", "trainer.max_epochs=2", f"ckpt_path={ckpt}"], second))
    assert json.loads((second / "run.json").read_text())["wandb_id"] == info["wandb_id"]
    wb = read_offline_run(find_offline_runs(second)[0])
    assert wb["run_id"] == info["wandb_id"]
    # training went on from the checkpoint: the second job never logged epoch 0
    epochs = {row["epoch"] for row in wb["history"] if "epoch" in row}
    assert 0 not in epochs and 1 in epochs


ALL_EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
DEBUG_PRESETS = sorted(p.stem for p in (CONF_DIR / "debug").glob("*.yaml"))


@pytest.mark.parametrize("preset", DEBUG_PRESETS)
@pytest.mark.parametrize("experiment", ALL_EXPERIMENTS)
def test_every_debug_preset_fits_every_experiment(experiment, preset, tmp_path, corpora):
    """The preset composes with the experiment and each of its values lands on a key the part has."""
    from audioexp.tasks.dev_run import apply_dev_run

    base = [f"+experiment={experiment}", f"+debug={preset}"]
    cfg = compose_config(base, tmp_path)
    cfg = compose_config([*base, f"data.root={corpora[cfg.data._target_]}"], tmp_path)
    before = OmegaConf.to_container(cfg.data, resolve=True)
    applied = apply_dev_run(cfg)
    for item in applied:
        key, value = item.split("=", 1)
        node, name = key.split(".", 1)
        assert node in cfg and name in before if node == "data" else name in cfg[node]
    if cfg.task == "train":
        trainer = hydra.utils.instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        assert trainer.max_epochs <= 20 or trainer.fast_dev_run
    else:  # the corpus takes every value the preset gives it
        assert hydra.utils.instantiate(cfg.data) is not None
        assert cfg.data.max_files_per_class is not None


NON_TRAIN_EXPERIMENTS = [e for e in ALL_EXPERIMENTS if e not in EXPERIMENTS]


@pytest.mark.parametrize("experiment", NON_TRAIN_EXPERIMENTS)
def test_fast_dev_run_of_tasks_without_a_trainer(experiment, tmp_path, corpora):
    """+debug=fdr runs fit_gmm and probe recipes whole, on one file per class, in seconds."""
    base = [f"+experiment={experiment}", "+debug=fdr", "logger=none"]
    cfg = compose_config(base, tmp_path)
    cfg = compose_config([*base, f"data.root={corpora[cfg.data._target_]}"], tmp_path)
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    if cfg.task == "fit_gmm":
        assert cfg.backend.n_components == 2 and cfg.data.max_files_per_class == 1
        assert any(k.startswith("eval/") and k.endswith("/eer") for k in metrics)
    if cfg.task == "probe":
        assert metrics["num_files"] == 7 * 10  # one per emotion and speaker


def test_one_sample_rate(tmp_path, fm_corpus, asvspoof_corpus):
    """Front-ends follow data.sample_rate; one set to another rate by hand stops the run at setup."""
    assert not [p for p in (CONF_DIR / "features").glob("*.yaml") if "16000" in p.read_text()]
    cfg = compose_config(["+experiment=demo", "data.sample_rate=8000"], tmp_path)
    assert cfg.features.sample_rate == 8000
    cfg = compose_config(["+experiment=demo", "+debug=fdr", f"data.root={fm_corpus}", "data.sample_rate=8000",
                          "features.sample_rate=16000", "logger=none"], tmp_path)
    with pytest.raises(ValueError, match=r"the data gives 8000 Hz audio, but the front-end LogMelSpectrogram was built for 16000 Hz"):
        run(cfg)
    cfg = compose_config(["+experiment=asvspoof17_sdfb_gmm", "+debug=fdr", f"data.root={asvspoof_corpus}",
                          "data.sample_rate=8000", "data.resample=any", "frontends.sdfb.sample_rate=16000", "logger=none"],
                         tmp_path / "gmm")
    with pytest.raises(ValueError, match=r"8000 Hz audio, but the front-end 'sdfb' was built for 16000 Hz"):
        run(cfg)
