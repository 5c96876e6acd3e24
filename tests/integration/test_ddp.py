"""Two CPU processes (trainer=ddp_cpu) give what one process gives.

Training: each rank trains on its share of one process's batches (``data.batch_size`` per
rank), BatchNorm normalises by the global batch (GlooSyncBatchNorm), gradients are averaged,
items draw their crops and noise from the same seeds, so the final metrics are those of one
process on the same global batch. Run in float64: in float32 the different order of the
sums (per rank, then all-reduced) changes gradients at the 1e-7 level, which Adam's first
steps turn into +-lr moves of weights whose true gradient is zero (seen on VGG). Dropout is
off: each process draws its own masks.

Evaluation: each rank scores every N-th file with no padding (a padded sampler scores some
files twice: the demo's test/acc was 0.333 against 0.400) and the metrics gather across
ranks. Only rank 0 writes the run dir.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.test_resume import _cli


# one recipe (VGG with BatchNorm, crops with noise, EER over gathered trials) keeps the suite in
# its time budget; the demo runs under trainer=ddp_cpu as a README command (tests/integration/test_readme.py)
@pytest.mark.parametrize("recipe", ["voxceleb_centerloss_verification"])
def test_ddp_cpu_trains_and_evaluates_as_one_process(recipe, tmp_path, fm_corpus, voxceleb_corpus):
    root = fm_corpus if recipe == "demo" else voxceleb_corpus
    # (+debug=limit's caps on evaluation batches would count per rank: evaluation runs whole)
    common = ["+experiment=" + recipe, "+debug=limit", f"data.root={root}", "logger=none", "trainer.max_epochs=1",
              "trainer.limit_train_batches=3", "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0",
              "trainer.precision=64-true"]
    common += ["model.head.dropout=0.0"] if recipe == "demo" else ["model.backbone.width=0.125", "model.backbone.dropout=0.0"]
    _cli([*common, "data.batch_size=8", f"hydra.run.dir={tmp_path / 'one'}"], tmp_path)
    _cli([*common, "data.batch_size=4", "trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'two'}"], tmp_path)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    keys = {"test/acc", "test/uar", "test/eer", "test/min_dcf", "val/acc_best", "val/eer_best"} & set(one)
    assert len(keys) >= 2, sorted(one)
    for key in keys:
        assert two[key] == pytest.approx(one[key], abs=1e-6), ("training", key, two[key], one[key])
    assert (tmp_path / "two" / "ddp_rank1.log").exists()
    assert len(list((tmp_path / "two").glob("**/metrics.json"))) == 1  # rank 0's

    # the run trained in one process, evaluated by two
    _cli(["task=evaluate", f"eval.run_dir={tmp_path / 'one'}", "eval.split=test", f"eval.data_root={root}",
          "trainer=ddp_cpu", "trainer.precision=64-true", "logger=none", f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in {"test/acc", "test/uar", "test/eer", "test/min_dcf"} & set(one):
        assert evaluated[key] == pytest.approx(one[key], abs=1e-6), ("evaluation", key, evaluated[key], one[key])
