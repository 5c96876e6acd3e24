"""Training order from (seed, epoch), resumable; evaluation shards without padding; per-item seeds."""

import torch

from audioexp.data.resumable import EpochSampler, SeededItems, ShardSampler


def _indices(sampler):
    return [i for i, _ in sampler]


def test_epoch_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.rand(100)  # the global RNG plays no part
    assert list(b) == first and sorted(_indices(a)) == list(range(50))
    a.set_epoch(1)
    assert _indices(a) != [i for i, _ in first]
    assert _indices(EpochSampler(50, seed=4)) != [i for i, _ in first]
    assert len({s for _, s in first}) == 50  # a seed per item


def test_resume_skips_what_was_trained_and_only_in_that_epoch():
    whole = EpochSampler(20, seed=1)
    whole.set_epoch(2)
    order = list(whole)
    resumed = EpochSampler(20, seed=1)
    resumed.resume(2, 8)
    assert list(resumed) == order[8:]
    assert list(resumed) == order  # the next pass of the same epoch is whole again
    resumed.resume(2, 8)
    resumed.set_epoch(3)
    assert len(list(resumed)) == 20


def test_ranks_share_each_global_batch_of_one_process():
    one = EpochSampler(23, seed=5)
    ranks = [EpochSampler(23, seed=5, num_replicas=2, rank=r) for r in range(2)]
    order, per_rank = list(one), [list(r) for r in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == 12  # padded to equal length, as DDP needs
    # global batch j of 8 = rank batches j of 4: the same items with the same item seeds
    for j in range(2):
        union = per_rank[0][4 * j: 4 * j + 4] + per_rank[1][4 * j: 4 * j + 4]
        assert sorted(union) == sorted(order[8 * j: 8 * j + 8])


def test_shards_cover_every_file_once():
    shards = [list(ShardSampler(11, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
    assert [len(ShardSampler(11, num_replicas=3, rank=r)) for r in range(3)] == [4, 4, 3]


def test_seeded_items_draw_the_same_whatever_came_before():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.rand(2)

    items = SeededItems(Noise())
    a = items[(1, 99)]
    torch.rand(10)
    state = torch.get_rng_state()
    assert torch.equal(items[(1, 99)], a)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    assert not torch.equal(items[(1, 98)], a)


def test_item_stream_draws_as_manual_seed_and_restores_the_global_stream():
    from audioexp.data.resumable import item_stream

    torch.manual_seed(1234)
    expected = torch.rand(5)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with item_stream(1234):
        got = torch.rand(5)
    assert torch.equal(got, expected) and torch.equal(torch.get_rng_state(), before)
