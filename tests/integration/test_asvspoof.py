"""The ASVspoof 2017 experiments (task=fit_gmm) end to end on the miniature corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audioexp.__main__ import run
from audioexp.data.asvspoof2017 import ASVspoof2017
from tests.conftest import compose_config

# small GMMs so the tests are fast; the recipes keep 512 components
SMALL = ["backend.n_components=2", "backend.max_iter=15", "backend.max_frames=1500", "logger=none"]


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    """One feature cache for the module: the experiments share their CF/CM features, as a sweep does."""
    return tmp_path_factory.mktemp("asvspoof_features")


def _run(name, corpus, tmp_path, extra=(), cache=None):
    cache_opt = [f"gmm.cache_dir={cache}"] if cache else []
    cfg = compose_config([f"+experiment={name}", f"data.root={corpus}", *SMALL, *cache_opt, *extra], tmp_path)
    run(cfg)
    return json.loads((tmp_path / "metrics.json").read_text())


def test_minicorpus_layout_and_labels(asvspoof_corpus):
    corpus = ASVspoof2017(asvspoof_corpus)
    for split, n in (("train", 16), ("dev", 12), ("eval", 12)):
        paths, labels = corpus.utterances(split)
        assert len(paths) == n and labels.sum() == n // 2
        audio = corpus.load(paths[-1])
        assert audio.ndim == 1 and np.isfinite(audio).all() and len(audio) >= 16000


def test_sdfb_experiment_runs_and_detects_replay(asvspoof_corpus, tmp_path, feature_cache):
    metrics = _run("asvspoof17_sdfb_gmm", asvspoof_corpus, tmp_path, cache=feature_cache)
    assert metrics["dev/sdfb/eer"] < 0.3 and metrics["eval/sdfb/eer"] < 0.3
    assert (tmp_path / "results.md").exists() and (tmp_path / "det_eval_sdfb.png").exists()
    # how each GMM's EM ended is reported (converged at tol, or stopped at max_iter)
    for protocol in ("dev", "eval"):
        for key in ("genuine", "spoof"):
            n_iter, converged = metrics[f"gmm/{protocol}/sdfb/{key}/n_iter"], metrics[f"gmm/{protocol}/sdfb/{key}/converged"]
            assert n_iter >= 1 and converged in (0.0, 1.0)
    cached = list(feature_cache.glob("SDFBFeatures-*.npz"))
    assert len(cached) == 3  # train, dev, eval
    # a second back-end reads the cached features and changes only the scores
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    again = _run("asvspoof17_sdfb_gmm", asvspoof_corpus, tmp_path, ["backend.n_components=3"], feature_cache)
    assert {p: p.stat().st_mtime_ns for p in cached} == stamps
    assert again["eval/sdfb/eer"] < 0.5


def test_cqcc_experiment_runs(asvspoof_corpus, tmp_path):
    metrics = _run("asvspoof17_cqcc_gmm", asvspoof_corpus, tmp_path, ["gmm.protocols=[eval]"])
    assert metrics["eval/cqcc/eer"] < 0.4


def test_fusion_experiment_reports_single_feature_and_score_fusion(asvspoof_corpus, tmp_path, feature_cache):
    metrics = _run("asvspoof17_fusion", asvspoof_corpus, tmp_path, cache=feature_cache)
    for key in ("eval/cf/eer", "eval/cm/eer", "eval/cf+cm/eer", "eval/score(cf+cm)/eer"):
        assert metrics[key] < 0.35, (key, metrics[key])


def test_score_fusion_needs_dev_and_eval(asvspoof_corpus, tmp_path):
    with pytest.raises(ValueError, match="dev scores"):
        _run("asvspoof17_fusion", asvspoof_corpus, tmp_path, ["gmm.protocols=[eval]", "gmm.feature_fusion=[]"])


def test_table1_multirun_ends_in_the_papers_table(tmp_path):
    """`python -m audioexp -m +experiment=asvspoof17_table1 data=asvspoof2017_mini` (cut to two rows at
    k = 6, 2 files per class and 2-component GMMs) writes table1.md: the paper's three rows and four
    columns, our dev / eval EER from each job, the paper's eval EER beside it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOEXP_")}
    argv = [sys.executable, "-m", "audioexp", "-m", "+experiment=asvspoof17_table1", "data=asvspoof2017_mini",
            "table1_row=cf,cm_tri", "frontends.sdfb.num_differentiations=6", "data.max_files_per_class=2", "backend.n_components=2",
            "backend.max_iter=10", "logger=none"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (table,) = tmp_path.glob("logs/fit_gmm/multiruns/asvspoof17_table1/*/table1.md")
    rows = [line for line in table.read_text().splitlines() if line.startswith("| ")]
    assert rows[0] == "| feature | no SD | 2 SD | 4 SD | 6 SD |"
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| CF + D + DD", "| CM + D + DD", "| CM + D + DD (Tri)"]
    jobs = sorted(table.parent.glob("*/metrics.json"))
    assert len(jobs) == 2
    for job in jobs:
        cfg = (job.parent / ".hydra" / "overrides.yaml").read_text()
        row = {"cf": 2, "cm": 3, "cm_tri": 4}[cfg.split("table1_row=")[1].split()[0].strip("'\"")]
        k = int(cfg.split("num_differentiations=")[1].split()[0].strip("'\""))
        m = json.loads(job.read_text())
        cell = rows[row].split(" | ")[1 + k // 2]
        assert cell.startswith(f"{100 * m['dev/sdfb/eer']:.2f} / {100 * m['eval/sdfb/eer']:.2f} (")
    assert rows[2].split(" | ")[2] == "- / - (14.31)"  # k = 2 was not run: marked, with the paper's figure
    assert rows[3].split(" | ")[4] == "- / - (10.93) |"
    assert "generated miniature corpus, not a reproduction" in table.read_text()


def test_table2_multirun_ends_in_the_papers_table(tmp_path):
    """`python -m audioexp -m +experiment=asvspoof17_table2 data=asvspoof2017_mini` (cut to the LFCC
    baseline and the SD systems with their fusions) writes table2.md with the paper's rows."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIOEXP_")}
    argv = [sys.executable, "-m", "audioexp", "-m", "+experiment=asvspoof17_table2", "data=asvspoof2017_mini",
            "table2_system=lfcc,sd_fusion", "data.max_files_per_class=2", "backend.n_components=2", "logger=none"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (table,) = tmp_path.glob("logs/fit_gmm/multiruns/asvspoof17_table2/*/table2.md")
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in table.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| ---")}
    metrics = {}
    for job in table.parent.glob("*/metrics.json"):
        metrics.update(json.loads(job.read_text()))
    assert rows["B2 TC [25]"] == "not built here (14.89) |"
    assert rows["B1 CQCC [18] (baseline_CM.m: c0-c29 + D + DD)"] == "- / - (12.24) |"  # not run here
    assert rows["S1 + S2 (feature level)"] == f"{100 * metrics['dev/cf+cm/eer']:.2f} / {100 * metrics['eval/cf+cm/eer']:.2f} (8.58) |"
    assert rows["S1 + S2 (score level)"] == f"- / {100 * metrics['eval/score(cf+cm)/eer']:.2f} (8.80) |"
    assert rows["LFCC (ASVspoof 2019 baseline; not in the paper)"] == (
        f"{100 * metrics['dev/lfcc/eer']:.2f} / {100 * metrics['eval/lfcc/eer']:.2f} |")
