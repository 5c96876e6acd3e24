"""Training data in an order that depends only on (seed, epoch), resumable mid-epoch.

What makes a killed-and-resumed run equal to an uninterrupted one, on the data side:

- :class:`EpochSampler` shuffles with its own generator seeded by ``(seed, epoch)``, not
  the global RNG, and can start an epoch part-way (``resume(epoch, items_done)``): the
  batches a resumed run sees are the ones the uninterrupted run saw after that point. Under
  DDP it shards the permutation by rank itself (every rank gets ``ceil(n / world)`` items;
  the padding repeats items of the start of the permutation, as DistributedSampler does).
- :class:`SeededItems` gives every item its own random stream, seeded by ``(seed, epoch,
  position)``: random crops and noise no longer depend on which worker process read the
  item, on how many workers there are, or on what the process did before (the global RNG
  is forked around the item, so the model's own draws, e.g. dropout, are not disturbed).

The DataModule records the position in its ``state_dict`` (saved in every checkpoint) and
builds the sampler from it after a resume; the global RNGs (dropout and the like) are
restored by :class:`audioexp.utils.rng.RNGStateCheckpoint`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ["EpochSampler", "ResumableSampler", "SeededItems", "ShardSampler", "TrainingLoader", "WholeBatches", "item_seed",
           "item_stream", "whole_batch"]


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None or rank is None:
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        num_replicas = torch.distributed.get_world_size() if dist else 1
        rank = torch.distributed.get_rank() if dist else 0
    return num_replicas, rank


def item_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one item of one epoch (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class ResumableSampler(DistributedSampler):
    """What the training samplers share: the epoch Lightning sets, and a resume that skips what a
    checkpointed run already trained on in that epoch (``resume(epoch, done)``: the first
    ``done`` of what :meth:`__iter__` yields; the next epoch, or the next pass, starts whole).

    A :class:`~torch.utils.data.DistributedSampler` so that Lightning neither replaces nor wraps
    it under DDP (it shards by itself) and calls its ``set_epoch`` every epoch. (Its ``__init__``
    is not called: it needs a process group or a dataset.)"""

    epoch: int = 0
    _skip: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start; a new epoch starts at its beginning."""
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def resume(self, epoch: int, done: int) -> None:
        """Start at ``epoch``, after the first ``done`` of what this rank yields in it."""
        self.epoch, self._skip = epoch, done

    def _take_skip(self) -> int:
        """How many to skip in this pass (then none: a later pass of the epoch is whole)."""
        skip, self._skip = self._skip, 0
        return skip


class EpochSampler(ResumableSampler):
    """Indices ``0..n-1``, shuffled per epoch from ``(seed, epoch)``, yielded as ``(index, seed)``;
    ``resume(epoch, items_done)`` skips this rank's first ``items_done`` items.

    Parameters
    ----------
    num_items : int
    shuffle : bool
    seed : int
    num_replicas, rank : int, optional
        DDP sharding; default: from ``torch.distributed`` when it is initialised, else 1, 0.
    """

    def __init__(self, num_items: int, shuffle: bool = True, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        self.num_items = num_items
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.drop_last = False
        self.epoch = 0
        self._skip = 0  # items of this epoch already trained on (a resumed run)

    def _order(self) -> np.ndarray:
        if self.shuffle:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
            order = torch.randperm(self.num_items, generator=g).numpy()
        else:
            order = np.arange(self.num_items)
        if self.num_replicas > 1:
            total = math.ceil(self.num_items / self.num_replicas) * self.num_replicas
            order = np.concatenate([order, order[: total - len(order)]])[self.rank :: self.num_replicas]
        return order

    def __len__(self) -> int:
        return math.ceil(self.num_items / self.num_replicas)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        for position in range(self._take_skip(), len(order)):
            yield int(order[position]), item_seed(self.seed, self.epoch, position * self.num_replicas + self.rank)


@contextmanager
def item_stream(seed: int) -> Iterator[None]:
    """Draw from torch's CPU generator seeded with ``seed``, then restore its state (what
    ``torch.random.fork_rng(devices=[])`` + ``torch.manual_seed`` do, without the latter's
    per-call cost: in torch 2.11 it records a Python stack trace, ~1 ms, as long as decoding
    a 5-s clip)."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


class SeededItems(Dataset):
    """``dataset[index]`` drawn with its own torch random stream: ``items[(index, seed)]``.

    Plain integer keys pass through unchanged (evaluation loaders)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        with item_stream(seed):
            return self.dataset[index]


class WholeBatches(Dataset):
    """``batches[[k1, k2, ...]]`` = ``collate_fn([items[k1], items[k2], ...])``: the dataset of a
    loader with ``batch_size=None`` whose sampler hands out whole batches (lists of keys), so
    that a worker makes a whole batch, as with automatic batching."""

    def __init__(self, items: Dataset, collate_fn) -> None:
        self.items, self.collate_fn = items, collate_fn

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, keys: list):
        return self.collate_fn([self.items[k] for k in keys])


def whole_batch(batch):
    """``collate_fn`` of a :class:`WholeBatches` loader: the batch is already collated."""
    return batch


class ShardSampler(DistributedSampler):
    """Evaluation order: ``0..n-1``; under DDP rank ``r`` of ``w`` takes items ``r, r+w, ...``
    with no padding, so no file is scored twice (DistributedSampler pads every rank to the
    same length by repeating files, which changes accuracy and the like). Metrics must then
    gather across ranks (torchmetrics does) rather than assume equal shares."""

    def __init__(self, num_items: int, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.num_items = num_items
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.shuffle, self.drop_last, self.epoch, self.seed = False, False, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.num_replicas))


class TrainingLoader(DataLoader):
    """The training DataLoader, resumable mid-epoch: Lightning asks a loader for its state and
    warns when it has none. Its position lives in the DataModule's state (saved in every
    checkpoint) and in its :class:`EpochSampler`, so the loader itself adds nothing."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass
