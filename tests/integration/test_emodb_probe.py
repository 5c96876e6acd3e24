"""The emodb_probe experiment end to end on the miniature EmoDB: scores, outputs, W&B, multirun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from audioexp.__main__ import run
from audioexp.utils.wandb_offline import find_offline_runs, read_offline_run
from tests.conftest import ROOT, compose_config

CHANCE = 1 / 7
CLASSIFIERS = ("logistic_regression", "svm", "random_forest")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One embedding cache for the module: eGeMAPS is extracted once."""
    return tmp_path_factory.mktemp("embedding_cache")


def test_emodb_probe_scores_clearly_above_chance(tmp_path, emodb_corpus, cache_dir):
    cfg = compose_config(
        ["+experiment=emodb_probe", "embedder=egemaps", "probe=quick", f"data.root={emodb_corpus}", f"probe.cache_dir={cache_dir}"],
        tmp_path,
    )
    assert cfg.task == "probe"
    value = run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert value == pytest.approx(metrics["test/svm/uar"])
    assert metrics["dim"] == 88 and metrics["num_files"] == 140
    for clf in CLASSIFIERS:
        assert metrics[f"test/{clf}/uar"] > 3 * CHANCE, (clf, metrics)
    with open(tmp_path / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["classifier"] for r in rows] == list(CLASSIFIERS) and {r["embedder"] for r in rows} == {"egemaps"}
    assert "| egemaps |" in (tmp_path / "results.md").read_text()
    for clf in CLASSIFIERS:
        assert "sadness" in (tmp_path / "reports" / f"{clf}.txt").read_text()
        assert (tmp_path / f"confusion_{clf}.png").stat().st_size > 1000
    # the same three test speakers (30 % of 10) for every classifier
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert len({tuple(s["test_speakers"]) for s in splits}) == 1 and len(splits[0]["test_speakers"]) == 3
    wb = read_offline_run(find_offline_runs(tmp_path)[0])
    assert wb["summary"]["test/svm/uar"] == pytest.approx(metrics["test/svm/uar"])
    assert any("results" in m for m in wb["media"]) and any("confusion" in m for m in wb["media"])


def test_leave_one_speaker_out_reports_mean_and_std(tmp_path, emodb_corpus, cache_dir):
    cfg = compose_config(
        ["+experiment=emodb_probe", "embedder=egemaps", "probe=quick", "probe.protocol=loso", "probe.classifiers=[svm]",
         "probe.grouped_inner_folds=true", f"data.root={emodb_corpus}", f"probe.cache_dir={cache_dir}", "logger=none"],
        tmp_path,
    )
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/svm/uar"] > 3 * CHANCE and 0 < metrics["test/svm/uar_std"] < 0.5
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert sorted(s["test_speakers"][0] for s in splits) == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert "±" in (tmp_path / "results.md").read_text()


def test_multirun_gives_one_row_per_embedder(tmp_path, emodb_corpus, cache_dir):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "audioexp", "-m", "+experiment=emodb_probe", "embedder=compare,egemaps", "probe=quick",
        "probe.classifiers=[svm]", f"data.root={emodb_corpus}", f"probe.cache_dir={cache_dir}",
        f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}", "logger=none",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    dims = {json.loads((sweep / job / "metrics.json").read_text())["dim"] for job in ("0", "1")}
    assert dims == {6373, 88}
    with open(sweep / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["embedder"], r["classifier"]) for r in rows} == {
        (e, "svm") for e in ("compare", "egemaps")
    }
    assert all(float(r["uar"]) > 2 * CHANCE for r in rows)
    table = (sweep / "results.md").read_text()
    assert "| compare |" in table and "| egemaps |" in table


def test_probe_without_embedder_says_how_to_choose_one(tmp_path, emodb_corpus):
    cfg = compose_config(["task=probe", "~embedder", "probe=quick", f"data.root={emodb_corpus}", "logger=none"], tmp_path)
    with pytest.raises(ValueError, match="embedder=compare"):
        run(cfg)


def test_byols_without_checkpoint_stops_before_any_work(tmp_path, emodb_corpus, monkeypatch):
    monkeypatch.delenv("AUDIOEXP_BYOLS_CHECKPOINT", raising=False)
    cfg = compose_config(["+experiment=emodb_probe", "embedder=byols", f"data.root={emodb_corpus}", "logger=none"], tmp_path)
    with pytest.raises(Exception, match="embedder.checkpoint"):
        run(cfg)
