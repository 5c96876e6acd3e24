"""``task=shards``: a corpus's splits written as litdata shards (:mod:`audioexp.data.shards`)::

    python -m audioexp task=shards data=fm_broadcast data.shards.dir=/scratch/fm_shards shards.num_workers=8
    python -m audioexp +experiment=demo data.format=shards data.shards.dir=/scratch/fm_shards

The corpus is prepared as for training (its lists read, every file's audio checked), then each
split of ``data.shard_splits`` (train, val, test; EmoDB: all) is written in item order, with
labels, groups and paths, to ``data.shards.dir/<split>``; the check goes to ``check.json``.
Training with ``data.format=shards`` and the same data settings reads the audio from there (the
shards must match the lists: a changed split is refused, not read).
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, open_dict

from audioexp.data.shards import shard_path, write_split
from audioexp.tasks.registry import register_task
from audioexp.tasks.skeleton import TaskRun
from audioexp.utils.files import atomic_write_json

log = logging.getLogger(__name__)


@register_task("shards")
def shards(cfg: DictConfig) -> dict[str, float]:
    opts = cfg.get("shards") or {}
    run = TaskRun(cfg)
    with open_dict(cfg):
        cfg.data.format = "files"  # written from the files
    run.save_config()
    datamodule = hydra.utils.instantiate(cfg.data)
    if not hasattr(datamodule, "shard_splits"):
        raise ValueError(f"{cfg.data._target_} reads no audio through loaders: there is nothing to shard")
    out = datamodule.shards.dir
    if not out:
        raise ValueError("task=shards needs data.shards.dir (where to write)")
    datamodule.prepare_data()
    datamodule.setup("fit")
    metrics: dict[str, float] = {}
    for split in opts.get("splits") or datamodule.shard_splits:
        dataset = datamodule.split_dataset(split)
        if len(dataset) == 0:
            log.info("%s: the %s split is empty, not written", datamodule.corpus_name, split)
            continue
        meta = write_split(dataset, shard_path(out, split), root=datamodule.root, corpus=datamodule.corpus_name,
                           split=split, groups=datamodule.split_groups(split),
                           chunk_bytes=datamodule.shards.chunk_bytes, num_workers=int(opts.get("num_workers", 1)))
        metrics[f"{split}/files"] = float(meta["num_items"])
        metrics[f"{split}/chunks"] = float(meta["num_chunks"])
        metrics[f"{split}/megabytes"] = meta["bytes"] / 1e6
    atomic_write_json(shard_path(out, "check.json"), datamodule.check_summary())
    log.info("shards of %s written to %s: %s", datamodule.corpus_name, out, metrics)
    return run.finish(metrics)
