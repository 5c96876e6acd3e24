"""The standard cepstral baselines beside the SD systems (task=fit_gmm) end to end on the
miniature ASVspoof 2017 corpus."""

from __future__ import annotations

import json
import math

from audioexp.__main__ import run
from tests.conftest import compose_config

# small GMMs so the test is fast; the recipes keep 512 components
SMALL = ["backend.n_components=2", "backend.max_iter=15", "backend.max_frames=1500", "logger=none"]


def test_lfcc_and_mfcc_experiments_run_and_detect_replay(asvspoof_corpus, tmp_path):
    for name in ("lfcc", "mfcc"):
        out = tmp_path / name
        cfg = compose_config([f"+experiment=asvspoof17_{name}_gmm", f"data.root={asvspoof_corpus}", *SMALL], out)
        assert cfg.frontends[name].num_ceps == 20
        run(cfg)
        metrics = json.loads((out / "metrics.json").read_text())
        for split in ("dev", "eval"):
            eer = metrics[f"{split}/{name}/eer"]
            assert math.isfinite(eer) and eer < 0.4, (name, split, eer)  # chance: 0.5
        assert (out / "results.md").exists()
