"""Several processes score exactly what one process scores: evaluation under trainer=ddp_cpu
shards the files without the distributed sampler's padding (no file counted twice) and
gathers scores across ranks; only rank 0 writes the run dir."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_resume import _cli


def _evaluate(run_dir, out, trainer, cwd, data_root, split="test"):
    args = ["task=evaluate", f"eval.run_dir={run_dir}", f"eval.split={split}", f"eval.data_root={data_root}",
            f"trainer={trainer}", "logger=none", f"hydra.run.dir={out}"]
    _cli(args, cwd)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("recipe", ["demo", "voxceleb_centerloss_verification"])
def test_ddp_cpu_evaluation_equals_one_process(recipe, tmp_path, fm_corpus, voxceleb_corpus):
    root = fm_corpus if recipe == "demo" else voxceleb_corpus
    # odd batch counts and sizes, so that a padded sampler would repeat files
    train = ["+experiment=" + recipe, "+debug=limit", f"data.root={root}", "logger=none",
             f"hydra.run.dir={tmp_path / 'train'}"]
    if recipe != "demo":
        train.append("model.backbone.width=0.25")
    _cli(train, tmp_path)
    one = _evaluate(tmp_path / "train", tmp_path / "one", "cpu", tmp_path, root)
    two = _evaluate(tmp_path / "train", tmp_path / "two", "ddp_cpu", tmp_path, root)
    keys = {"test/acc", "test/uar", "test/top5", "test/eer", "test/min_dcf"} & set(one)
    assert keys, sorted(one)
    for key in keys:
        assert two[key] == pytest.approx(one[key], abs=1e-6), (key, two[key], one[key])
    assert (tmp_path / "two" / "ddp_rank1.log").exists()
    assert not list((tmp_path / "two").glob("**/metrics.json"))[1:]  # one metrics.json: rank 0's
