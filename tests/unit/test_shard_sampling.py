"""The shard training order: chunk by chunk, each item once per epoch across ranks, resumable."""

import numpy as np
import pytest

from audioexp.data.shards import ChunkBatchSampler, balanced_batches, chunk_order


@pytest.mark.parametrize("num_items,num_batches,batch_size", [(5, 2, 4), (9, 4, 3), (97, 4, 32), (64, 2, 32), (7, 7, 1), (1, 1, 8)])
def test_balanced_batches_hold_every_item_in_full_batches_then_an_even_tail(num_items, num_batches, batch_size):
    sizes = balanced_batches(num_items, num_batches, batch_size)
    assert len(sizes) == num_batches and sum(sizes) == num_items
    assert all(1 <= s <= batch_size for s in sizes)
    if num_items >= 2 * num_batches:
        assert min(sizes) >= 2  # no batch of one where it can be helped (BatchNorm)
    assert sizes == sorted(sizes, reverse=True)  # full batches first
    tail = [s for s in sizes if s != batch_size]
    assert not tail or max(tail) - min(tail) <= 1  # then what is left, evenly


def test_chunk_order_is_a_permutation_keeping_items_near_their_chunk():
    sizes = [10, 7, 10, 10, 3, 10]
    starts = np.cumsum([0] + sizes)
    for buffer_chunks, window in ((1, 10), (2, 20)):
        order = chunk_order(sizes, seed=1, epoch=0, buffer_chunks=buffer_chunks)
        assert sorted(order.tolist()) == list(range(sum(sizes)))
        position = np.argsort(order)
        for c in range(len(sizes)):
            at = position[starts[c]: starts[c + 1]]
            # a chunk's items are read together: within one buffer of the order
            assert at.max() - at.min() < window, (buffer_chunks, c)
        assert not np.array_equal(order[:10], np.arange(10))  # shuffled within the buffer
    order = chunk_order(sizes, seed=1, epoch=0, buffer_chunks=2)
    assert not np.array_equal(order, chunk_order(sizes, seed=1, epoch=1, buffer_chunks=2))
    assert np.array_equal(order, chunk_order(sizes, seed=1, epoch=0, buffer_chunks=2))
    assert np.array_equal(chunk_order(sizes, 1, 0, shuffle=False), np.arange(sum(sizes)))


def _epoch(sizes, batch_size, world, epoch=0, seed=5):
    ranks = [ChunkBatchSampler(sizes, batch_size, seed=seed, buffer_chunks=2, num_replicas=world, rank=r) for r in range(world)]
    for r in ranks:
        r.set_epoch(epoch)
    return [list(r) for r in ranks], ranks


@pytest.mark.parametrize("sizes,batch_size", [([40, 40, 23], 8), ([5, 5, 5, 5, 5, 5, 5, 3], 4), ([101], 16), ([3, 4], 2)])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_item_once_per_epoch_across_ranks_in_equal_numbers_of_batches(sizes, batch_size, world):
    per_rank, ranks = _epoch(sizes, batch_size, world)
    seen = [i for batches in per_rank for batch in batches for i, _ in batch]
    assert sorted(seen) == list(range(sum(sizes)))  # no duplicates, no gaps
    assert len({len(b) for b in per_rank}) == 1 and all(len(b) == len(r) for b, r in zip(per_rank, ranks))
    assert all(1 <= len(batch) <= batch_size for batches in per_rank for batch in batches)
    # each rank reads a contiguous run of the epoch's order (its own chunks)
    order = chunk_order(sizes, 5, 0, 2).tolist()
    flat = [[i for batch in batches for i, _ in batch] for batches in per_rank]
    assert sum(flat, []) == order


def test_item_seeds_do_not_depend_on_the_number_of_ranks():
    one, _ = _epoch([30, 30, 12], 8, 1)
    two, _ = _epoch([30, 30, 12], 8, 2)
    seeds_one = dict(k for batch in one[0] for k in batch)
    seeds_two = dict(k for batches in two for batch in batches for k in batch)
    assert seeds_one == seeds_two and len(set(seeds_one.values())) == 72


def test_resume_starts_after_the_batches_done_and_only_in_that_epoch():
    sampler = ChunkBatchSampler([20, 20, 9], 6, seed=2, num_replicas=2, rank=1)
    sampler.set_epoch(3)
    whole = list(sampler)
    sampler.resume(3, 2)
    assert list(sampler) == whole[2:]
    assert list(sampler) == whole  # the next pass of the epoch is whole
    sampler.resume(3, 2)
    sampler.set_epoch(4)
    assert len(list(sampler)) == len(sampler)


def test_fewer_items_than_ranks_is_refused():
    with pytest.raises(ValueError, match="cannot be shared"):
        ChunkBatchSampler([1], 4, num_replicas=2, rank=0)
