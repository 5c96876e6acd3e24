"""Corpora written as litdata shards and read back: the same items as from files (two corpora),
the file path's batches with ``order=files``, a mid-epoch resume from the shard stream, clear
errors for shards that do not match the lists, and a training run that reads only shards."""

from __future__ import annotations

import json

import hydra
import pytest
import soundfile
import torch
from omegaconf import open_dict

from audioexp.__main__ import run
from audioexp.data.shards import ShardMismatchError
from tests.conftest import compose_config

CORPORA = {"fm_broadcast_mini": "fm_corpus", "voxceleb1_mini": "voxceleb_corpus"}


def _write(tmp_path, data: str, root, extra=()) -> tuple:
    shards = tmp_path / "shards"
    cfg = compose_config(["task=shards", f"data={data}", f"data.root={root}", f"data.shards.dir={shards}",
                          "logger=none", *extra], tmp_path / "write")
    run(cfg)
    return cfg, shards, json.loads((tmp_path / "write" / "metrics.json").read_text())


def _datamodule(cfg, **data):
    with open_dict(cfg):
        for key, value in data.items():
            cfg.data[key] = value
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _batches(loader):
    return [{k: v for k, v in b.items()} for b in loader]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key


@pytest.mark.parametrize("data", sorted(CORPORA))
def test_shards_hold_each_split_as_the_files_do(tmp_path, data, request, monkeypatch):
    root = request.getfixturevalue(CORPORA[data])
    cfg, shards, metrics = _write(tmp_path, data, root)
    files = _datamodule(cfg.copy())
    streamed = _datamodule(cfg.copy(), format="shards")
    for split in ("train", "val", "test"):
        dataset = files.split_dataset(split)
        assert metrics[f"{split}/files"] == len(dataset) > 0
        meta = json.loads((shards / split / "audioexp.json").read_text())
        assert meta["num_items"] == len(dataset) and meta["split"] == split
        # every item's audio, label and index, as the evaluation loaders give them
        read = soundfile.read
        torch.manual_seed(0)  # (VoxCeleb's training items are random crops)
        expected = _batches(files.evaluation_loader(dataset, 4, split, collate_fn=_collate(files)))

        def no_files(source, *args, **kwargs):  # the shards path decodes bytes, never opens a file
            assert not isinstance(source, str), source
            return read(source, *args, **kwargs)

        monkeypatch.setattr(soundfile, "read", no_files)
        torch.manual_seed(0)
        got = _batches(streamed.evaluation_loader(streamed.split_dataset(split), 4, split, collate_fn=_collate(files)))
        monkeypatch.setattr(soundfile, "read", read)
        _assert_same(expected, got)
    # the groups are recorded with each item (recordings / speakers)
    from litdata import StreamingDataset

    stream = StreamingDataset(str(shards / "train"))
    groups = files.split_groups("train")
    assert [stream[i]["group"] for i in range(len(stream))] == groups and len(set(groups)) > 1
    assert [stream[i]["label"] for i in range(len(stream))] == files.split_dataset("train").labels.tolist()


def _collate(dm):
    from audioexp.data.datasets import collate_skipping_bad
    from audioexp.data.iemocap import collate_with_speakers

    return collate_with_speakers if "IEMOCAP" in dm.corpus_name else collate_skipping_bad


def test_order_files_gives_the_batches_of_the_file_path(tmp_path, fm_corpus):
    cfg, shards, _ = _write(tmp_path, "fm_broadcast_mini", fm_corpus)
    torch.manual_seed(11)
    files = _batches(_datamodule(cfg.copy(), batch_size=5).train_dataloader())
    torch.manual_seed(11)
    streamed = _batches(_datamodule(cfg.copy(), batch_size=5, format="shards",
                                    shards={"dir": str(shards), "order": "files"}).train_dataloader())
    _assert_same(files, streamed)  # the same items, crops and order for a seed


def test_mid_epoch_resume_continues_the_shard_stream(tmp_path, fm_corpus):
    cfg, shards, _ = _write(tmp_path, "fm_broadcast_mini", fm_corpus, ["data.shards.chunk_bytes=400KB"])
    settings = dict(batch_size=3, num_workers=2, format="shards", shards={"dir": str(shards), "buffer_chunks": 2})
    assert json.loads((shards / "train" / "audioexp.json").read_text())["num_chunks"] > 3
    torch.manual_seed(3)
    loader = _datamodule(cfg.copy(), **settings).train_dataloader()
    loader.sampler.set_epoch(1)
    whole = _batches(loader)
    assert sorted(i for b in whole for i in b["index"].tolist()) == sorted(
        _datamodule(cfg.copy()).split_dataset("train").indices.tolist())  # each clip once
    torch.manual_seed(3)
    resumed = _datamodule(cfg.copy(), **settings)
    resumed.load_state_dict({"epoch": 1, "batches_done": 2})  # what a checkpoint saved mid-epoch 1
    loader = resumed.train_dataloader()
    loader.sampler.set_epoch(1)  # Lightning, at the start of the resumed epoch
    assert len(whole) > 3
    _assert_same(whole[2:], _batches(loader))


def test_shards_of_another_list_or_none_are_refused(tmp_path, fm_corpus):
    cfg, shards, _ = _write(tmp_path, "fm_broadcast_mini", fm_corpus)
    with pytest.raises(ShardMismatchError, match="another train list"):
        _datamodule(cfg.copy(), format="shards", split_seed=5).train_dataloader()
    with pytest.raises(ShardMismatchError, match="task=shards"):
        _datamodule(cfg.copy(), format="shards", shards={"dir": str(tmp_path / "nothing")}).train_dataloader()
    with pytest.raises(Exception, match="data.shards.order must be"):  # (hydra wraps the ValueError)
        _datamodule(cfg.copy(), format="shards", shards={"dir": str(shards), "order": "random"})


def test_training_reads_only_the_shards(tmp_path, fm_corpus):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(fm_corpus, corpus)
    _, shards, _ = _write(tmp_path, "fm_broadcast_mini", corpus)
    for wav in corpus.rglob("*.wav"):
        wav.write_bytes(b"not audio any more")  # the lists stay; the audio is only in the shards
    cfg = compose_config(["+experiment=demo", "+debug=limit", "trainer.max_epochs=2", f"data.root={corpus}",
                          "data.format=shards", f"data.shards.dir={shards}", "logger=none"], tmp_path / "train")
    run(cfg)
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["test/skipped_files"] == 0 and 0 <= metrics["test/acc"] <= 1


def _rank_epoch(rank: int, world: int, init: str, data: dict, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(5)
        dm = hydra.utils.instantiate(data)
        dm.setup("fit")
        loader = dm.train_dataloader()
        epochs = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            epochs.append([b["index"].tolist() for b in loader])
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"epochs": epochs, "sampler": type(loader.sampler).__name__}, f)
    finally:
        dist.destroy_process_group()


def test_two_ddp_ranks_read_each_item_once_per_epoch(tmp_path, fm_corpus):
    """Two processes in a gloo process group (as under trainer=ddp_cpu): the ranks find their
    share from torch.distributed, read disjoint items that cover the split every epoch, in
    the same number of batches (no rank waits on another's extra batch)."""
    from omegaconf import OmegaConf

    cfg, shards, _ = _write(tmp_path, "fm_broadcast_mini", fm_corpus, ["data.shards.chunk_bytes=400KB"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.update(format="shards", batch_size=3, num_workers=0, prepare=None)
    out = str(tmp_path / "seen")
    torch.multiprocessing.spawn(_rank_epoch, args=(2, f"file://{tmp_path / 'store'}", data, out), nprocs=2)
    ranks = [json.loads(open(f"{out}.{r}").read()) for r in range(2)]
    assert {r["sampler"] for r in ranks} == {"ChunkBatchSampler"}
    train = sorted(_datamodule(cfg.copy()).split_dataset("train").indices.tolist())
    for epoch in range(2):
        seen = [i for r in ranks for batch in r["epochs"][epoch] for i in batch]
        assert sorted(seen) == train  # no duplicates, no gaps
        assert len(ranks[0]["epochs"][epoch]) == len(ranks[1]["epochs"][epoch])
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # reshuffled per epoch
