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
