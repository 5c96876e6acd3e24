"""The demo learns for the right reason: with shuffled labels it stays near chance.

This runs the real `demo` experiment (ResNet18 on the generated FM corpus) for 4 of its 8
epochs (a control: with shuffled labels more epochs only memorise the training clips);
that it learns (test accuracy >= 0.9) is checked on `make demo` itself, in
tests/integration/test_readme.py.
"""

from __future__ import annotations

import json

import pytest

from audioexp.__main__ import run
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    from audioexp.minicorpus import write_minicorpus

    # the corpus `make demo` writes: same kind, same default size and seed
    return write_minicorpus("fm_broadcast", tmp_path_factory.mktemp("demo") / "fm_broadcast")


def _train_demo(tmp_path, corpus, *overrides):
    cfg = compose_config(["+experiment=demo", f"data.root={corpus}", "logger=csv", *overrides], tmp_path)
    run(cfg)
    return json.loads((tmp_path / "metrics.json").read_text())


@pytest.mark.slow
def test_shuffled_labels_stay_near_chance(tmp_path, demo_corpus):
    metrics = _train_demo(tmp_path, demo_corpus, "data.shuffle_labels=true", "trainer.max_epochs=4")
    # 24 test clips: chance is 0.5 with a standard deviation of about 0.1
    assert 0.2 <= metrics["test/acc"] <= 0.75, metrics
