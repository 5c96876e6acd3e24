"""A sixth corpus takes its data module, its data YAML, its writer and one registry line.

Here a toy corpus ("tones": low and high sine tones in noise, ``ROOT/low/*.wav`` and
``ROOT/high/*.wav``) is added exactly that way, from outside the package: the DataModule
below (the corpus's ``data/`` module), a data YAML in a config dir of the user's own
(``hydra.searchpath``), a writer, and its line in ``audioexp.minicorpus.WRITERS``. The demo
recipe then trains on it, its miniature corpus written on first use; nothing else in
audioexp changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from torch.utils.data import DataLoader

from audioexp.__main__ import run
from audioexp.data.datamodule import CorpusDataModule
from audioexp.data.datasets import UtteranceDataset, collate_skipping_bad
from audioexp.data.splits import random_split
from tests.conftest import compose_config

CLASSES = ["low", "high"]


class ToyTonesDataModule(CorpusDataModule):
    """The corpus's data module: ``ROOT/<class>/*.wav``, 1-s crops, a seeded random split."""

    corpus_name = "tones"
    expected_layout = "expected {root}/low/*.wav and {root}/high/*.wav"

    def __init__(self, root: str, sample_rate: int = 16000, class_names: list[str] | None = None,
                 num_classes: int = 2, batch_size: int = 4, num_workers: int = 0,
                 prepare: Callable[[Path], object] | None = None) -> None:
        super().__init__()
        self.root, self.sample_rate, self.batch_size, self.num_workers = Path(root), sample_rate, batch_size, num_workers
        self.class_names = list(class_names or CLASSES)
        self.prepare = prepare
        self.splits: dict[str, UtteranceDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        files = [(f"{c}/{p.name}", i) for i, c in enumerate(self.class_names) for p in sorted((self.root / c).glob("*.wav"))]
        paths, labels = [f for f, _ in files], np.array([y for _, y in files])
        for name, index in zip(("train", "val", "test"), random_split(len(files), 0.25, 0.25, seed=0)):
            self.splits[name] = UtteranceDataset(self.root, [paths[i] for i in index], labels[index], self.sample_rate,
                                                 crop_samples=self.sample_rate if name == "train" else None)

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.batch_size, shuffle=split == "train",
                          num_workers=self.num_workers, collate_fn=collate_skipping_bad)


def write_toy_tones(root, seed: int = 0, clips_per_class: int = 8, sample_rate: int = 16000) -> Path:
    """The corpus's miniature writer: 1-s tones (300 Hz or 2 kHz) in noise."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    t = np.arange(sample_rate) / sample_rate
    for label, freq in zip(CLASSES, (300.0, 2000.0)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(clips_per_class):
            audio = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.05 * rng.standard_normal()) * t) + 0.05 * rng.standard_normal(t.size)
            sf.write(str(root / label / f"{label}_{i:02d}.wav"), audio.astype(np.float32), sample_rate, subtype="PCM_16")
    return root


DATA_YAML = """\
# the toy corpus, written on first use by its miniature writer
_target_: tests.integration.test_new_corpus.ToyTonesDataModule
root: ${paths.data_dir}/minicorpus/toy_tones
sample_rate: 16000
class_names: [low, high]
num_classes: 2
batch_size: 4
num_workers: 0
prepare:
  _target_: audioexp.minicorpus.prepare
  _partial_: true
  kind: toy_tones
"""


def test_a_sixth_corpus_needs_its_module_yaml_writer_and_one_registry_line(tmp_path, monkeypatch):
    from audioexp.minicorpus import WRITERS

    monkeypatch.setitem(WRITERS, "toy_tones", write_toy_tones)  # the registry line
    user_conf = tmp_path / "my_conf"
    (user_conf / "data").mkdir(parents=True)
    (user_conf / "data" / "toy_tones.yaml").write_text(DATA_YAML)
    cfg = compose_config(["+experiment=demo", "data=toy_tones", f"hydra.searchpath=[file://{user_conf}]",
                          "+debug=limit", "trainer.max_epochs=1", "logger=none"], tmp_path / "run")
    run(cfg)
    assert len(list((tmp_path / "run" / "data" / "minicorpus" / "toy_tones").rglob("*.wav"))) == 16
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test/acc", "test/uar", "val/acc_best"} <= set(metrics)
