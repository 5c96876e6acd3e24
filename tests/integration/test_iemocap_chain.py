"""The ADResNet chain on miniature corpora: pre-train on VoxCeleb1, fine-tune with AD on two
IEMOCAP folds, aggregate over the folds; and the aggregate task's own checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audioexp.__main__ import run
from audioexp.tasks.aggregate import aggregate_metrics, read_sweep
from audioexp.utils.runs import find_checkpoint, load_model
from tests.conftest import compose_config

SMALL = ["+debug=limit", "trainer.max_epochs=1", "trainer.limit_val_batches=1", "model.backbone.conv1_stride=2", "data.num_workers=0", "data.crop_seconds=1.0", "data.batch_size=8"]


def test_pretrain_finetune_with_ad_and_aggregate_over_folds(tmp_path, voxceleb_corpus, iemocap_corpus):
    pre = tmp_path / "pretrain"
    run(compose_config(["+experiment=voxceleb_resnet_pretrain", f"data.root={voxceleb_corpus}", "logger=none", *SMALL], pre))
    pre_metrics = json.loads((pre / "metrics.json").read_text())
    assert {"test/acc", "test/top5", "test/weighted_f1"} <= set(pre_metrics)
    speaker_state = torch.load(find_checkpoint(pre), map_location="cpu", weights_only=False)["state_dict"]

    sweep = tmp_path / "sweep"
    for job, fold in enumerate((0, 7)):
        out = sweep / str(job)
        cfg = compose_config(
            ["+experiment=iemocap_adresnet", f"data.root={iemocap_corpus}", f"model.pretrained_run={pre}",
             f"data.fold={fold}", "logger=csv", "data.eval_batch_size=4", *SMALL], out,
        )
        run(cfg)
        metrics = json.loads((out / "metrics.json").read_text())
        assert {"test/weighted_f1", "test/uar", "test/acc", "train/ad_speaker_loss"} <= set(metrics)
        assert (out / "test_tsne.png").stat().st_size > 1000
        # the fine-tuned run rebuilds from its own checkpoint (no second pre-trained load)
        model = load_model(out)
        assert model.ad is not None and model.head.out_features == 4
        if job == 0:  # one epoch at lr 1e-4 moves the extractor only a little from the speaker run
            conv = "backbone.blocks.conv1.0.weight"
            tuned = model.state_dict()[conv]
            assert not torch.equal(tuned, speaker_state[conv])
            assert (tuned - speaker_state[conv]).abs().max() < 0.05 * speaker_state[conv].abs().max() + 1e-3
            _predict_equals_evaluation(out, cfg, metrics, tmp_path)

    agg = tmp_path / "aggregate"
    result = run(compose_config(["task=aggregate", f"aggregate.sweep_dir={sweep}", "logger=none"], agg))
    assert result is None  # no optimized metric of its own
    metrics = json.loads((agg / "metrics.json").read_text())
    values = [json.loads((sweep / j / "metrics.json").read_text())["test/weighted_f1"] for j in ("0", "1")]
    assert metrics["num_jobs"] == 2
    assert metrics["test/weighted_f1/mean"] == pytest.approx(np.mean(values))
    assert metrics["test/weighted_f1/std"] == pytest.approx(np.std(values, ddof=1))
    table = (agg / "aggregate.md").read_text()
    assert "mean +- std" in table and "test/weighted_f1" in table


def _predict_equals_evaluation(run_dir, cfg, metrics, tmp_path):
    """`audioexp.load(run).predict` on the fold's test utterances: the accuracy is the run's
    test/acc; a 44.1 kHz stereo copy and a 10x long file get rows, a corrupt one an error row."""
    import hydra
    import librosa
    import soundfile as sf

    import audioexp

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    test = datamodule.splits["test"]
    predictor = audioexp.load(run_dir)
    assert predictor.kind == "classifier" and predictor.class_names == list(datamodule.class_names)
    paths = [datamodule.root / p for p in test.paths]
    predicted = [predictor.class_names.index(predictor.predict(p)["top_class"]) for p in paths]
    assert np.mean(np.array(predicted) == test.labels) == pytest.approx(metrics["test/acc"], abs=1e-6)
    y, sr = sf.read(paths[0])
    stereo, long, broken = tmp_path / "stereo_44k.wav", tmp_path / "long.wav", tmp_path / "broken.wav"
    sf.write(stereo, np.stack([librosa.resample(y, orig_sr=sr, target_sr=44100)] * 2, 1), 44100)
    sf.write(long, np.tile(y, 10), sr)
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    rows = predictor.predict_files([paths[0], stereo, long, broken], progress=False)
    assert [r["error"] == "" for r in rows] == [True, True, True, False] and "broken.wav" in rows[3]["error"]
    assert {"top_class", "top_prob", "windows", "seconds", *(f"prob_{c}" for c in datamodule.class_names)} <= set(rows[0])
    assert float(rows[2]["seconds"]) == pytest.approx(10 * float(rows[0]["seconds"]), rel=1e-3)


def test_aggregate_statistics_and_missing_jobs(tmp_path):
    rng = np.random.default_rng(0)
    sweep = tmp_path / "sweep"
    runs = [{"test/acc": float(a), "test/err_sad": float(e)} for a, e in zip(rng.random(5), [0.1, float("nan"), 0.3, 0.2, 0.4])]
    for i, m in enumerate(runs):
        (sweep / str(i)).mkdir(parents=True)
        (sweep / str(i) / "metrics.json").write_text(json.dumps(m))
    stats = aggregate_metrics([m for _, m in read_sweep(sweep)])
    acc = [m["test/acc"] for m in runs]
    assert stats["test/acc"]["mean"] == pytest.approx(np.mean(acc))
    assert stats["test/acc"]["std"] == pytest.approx(np.std(acc, ddof=1))
    assert stats["test/err_sad"]["n"] == 4 and stats["test/err_sad"]["mean"] == pytest.approx(0.25)  # NaN left out
    (sweep / "5" / ".hydra").mkdir(parents=True)  # a job that failed before writing metrics
    with pytest.raises(FileNotFoundError, match=r"1 of 6 jobs .* no metrics.json.*allow_missing"):
        read_sweep(sweep)
    assert len(read_sweep(sweep, allow_missing=True)) == 5
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_sweep(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"aggregate.sweep_dir"):
        run(compose_config(["task=aggregate", "logger=none"], tmp_path / "out"))
