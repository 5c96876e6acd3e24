"""Center loss (Wen et al. 2016) against hand computations; the update rule; DDP statistics."""

import pytest
import torch
from torch import distributed as dist

import audioexp.losses.center as center_module
from audioexp.losses import CenterLoss, center_loss, center_update
from audioexp.losses.center import all_reduce_center_statistics
from audioexp.losses.functional import apply_center_update, center_statistics

# 2-d features, 4 classes: class 1 appears twice, classes 0 and 2 once, class 3 not at all
CENTERS = [[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0], [5.0, 5.0]]
FEATURES = [[1.0, 2.0], [0.0, 0.0], [2.0, 1.0], [3.0, -1.0]]
LABELS = [0, 1, 1, 2]
# x_i - c_{y_i}: [1, 2], [-1, -1], [1, 0], [4, -3]
# 1/2 ||x_i - c_{y_i}||^2 (summed over the 2 dims): 2.5, 1.0, 0.5, 12.5  ->  sum 16.5, mean 4.125
# 1/2 mean_d (x_id - c_{y_i}d)^2 (the default):    1.25, 0.5, 0.25, 6.25 ->  sum 8.25, mean 2.0625
DIFFERENCES = [[1.0, 2.0], [-1.0, -1.0], [1.0, 0.0], [4.0, -3.0]]
LOSS = {("sum", "sum"): 16.5, ("mean", "sum"): 4.125, ("sum", "mean"): 8.25, ("mean", "mean"): 2.0625}
# alpha = 0.5, delta_c_j = sum_{y_i = j} (c_j - x_i) / (1 + n_j):
#   class 0: [-1, -2] / 2 = [-0.5, -1]          c_0 = [0, 0] - 0.5 [-0.5, -1]    = [0.25, 0.5]
#   class 1: ([1, 1] + [-1, 0]) / 3 = [0, 1/3]  c_1 = [1, 1] - 0.5 [0, 1/3]      = [1, 5/6]
#   class 2: [-4, 3] / 2 = [-2, 1.5]            c_2 = [-1, 2] - 0.5 [-2, 1.5]    = [0, 1.25]
#   class 3: absent                             c_3 = [5, 5]
UPDATED = [[0.25, 0.5], [1.0, 5.0 / 6.0], [0.0, 1.25], [5.0, 5.0]]


def fixture_tensors():
    return (
        torch.tensor(FEATURES, dtype=torch.float64),
        torch.tensor(LABELS),
        torch.tensor(CENTERS, dtype=torch.float64),
    )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("dim_reduction", ["sum", "mean"])
def test_center_loss_value_and_gradient_by_hand(reduction, dim_reduction):
    features, labels, centers = fixture_tensors()
    features.requires_grad_(True)
    loss = center_loss(features, labels, centers, reduction=reduction, dim_reduction=dim_reduction)
    expected_loss = torch.tensor(LOSS[reduction, dim_reduction], dtype=torch.float64)
    torch.testing.assert_close(loss, expected_loss, rtol=0, atol=1e-12)
    loss.backward()
    scale = (1.0 if reduction == "sum" else 1.0 / len(LABELS)) * (1.0 if dim_reduction == "sum" else 0.5)
    expected = scale * torch.tensor(DIFFERENCES, dtype=torch.float64)
    torch.testing.assert_close(features.grad, expected, rtol=0, atol=1e-12)


def test_default_normalisation_is_lambda_over_two_times_the_mean_over_batch_and_dimensions():
    """The normalisation under which the paper's lambda = 5 is coherent (audioexp.losses.center):
    lambda * L_c = lambda / 2 * mean_i mean_d (x_id - c_{y_i}d)^2, here 5 / 2 * (2.5 + 1 + 0.5 + 12.5) / 8."""
    features, labels, centers = fixture_tensors()
    loss_fn = CenterLoss(num_classes=4, ndims=2).double()
    loss_fn.centers.copy_(centers)
    assert (loss_fn.reduction, loss_fn.dim_reduction) == ("mean", "mean")
    torch.testing.assert_close(5.0 * loss_fn(features, labels), torch.tensor(10.3125, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(center_loss(features, labels, centers), torch.tensor(2.0625, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    # the printed squared norm needs a lambda ndims times smaller for the same loss
    literal = CenterLoss(num_classes=4, ndims=2, dim_reduction="sum").double()
    literal.centers.copy_(centers)
    torch.testing.assert_close(5.0 / 2 * literal(features, labels), 5.0 * loss_fn(features, labels), rtol=0, atol=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_module_gradient_reaches_features_only(reduction):
    features, labels, centers = fixture_tensors()
    loss_fn = CenterLoss(num_classes=4, ndims=2, reduction=reduction, dim_reduction="sum").double()
    loss_fn.centers.copy_(centers)
    loss_fn.centers.requires_grad_(True)  # even so, the module detaches them
    features.requires_grad_(True)
    loss = loss_fn(features, labels)
    torch.testing.assert_close(loss, torch.tensor(LOSS[reduction, "sum"], dtype=torch.float64), rtol=0, atol=1e-12)
    loss.backward()
    assert loss_fn.centers.grad is None
    assert features.grad is not None
    assert list(loss_fn.parameters()) == []


def test_center_update_by_hand():
    features, labels, centers = fixture_tensors()
    before = centers.clone()
    updated = center_update(features, labels, centers, alpha=0.5)
    torch.testing.assert_close(updated, torch.tensor(UPDATED, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(centers, before, rtol=0, atol=0)  # input not modified
    sums, counts = center_statistics(features, labels, centers)
    torch.testing.assert_close(counts, torch.tensor([1.0, 2.0, 1.0, 0.0], dtype=torch.float64))
    expected_sums = [[-1.0, -2.0], [0.0, 1.0], [-4.0, 3.0], [0.0, 0.0]]
    torch.testing.assert_close(sums, torch.tensor(expected_sums, dtype=torch.float64))


def test_module_update_by_hand_and_loss_still_backpropagates():
    features, labels, centers = fixture_tensors()
    loss_fn = CenterLoss(num_classes=4, ndims=2, alpha=0.5).double()
    loss_fn.centers.copy_(centers)
    features.requires_grad_(True)
    loss = loss_fn(features, labels)
    loss_fn.update_centers(features, labels)  # in place, between forward and backward
    loss.backward()
    updated = torch.tensor(UPDATED, dtype=torch.float64)
    torch.testing.assert_close(loss_fn.centers, updated, rtol=0, atol=1e-12)
    # the default normalisation: 1/2 mean over 4 items and 2 dims -> (x - c) / (4 * 2)
    torch.testing.assert_close(features.grad, torch.tensor(DIFFERENCES, dtype=torch.float64) / 8)


def random_batch(n: int, num_classes: int = 6, ndims: int = 5):
    return torch.randn(n, ndims, dtype=torch.float64), torch.randint(0, num_classes, (n,))


def test_summed_rank_statistics_equal_the_concatenated_batch():
    torch.manual_seed(0)
    centers = torch.randn(6, 5, dtype=torch.float64)
    (x0, y0), (x1, y1) = random_batch(7), random_batch(3)  # ranks with different batch sizes
    sums0, counts0 = center_statistics(x0, y0, centers)
    sums1, counts1 = center_statistics(x1, y1, centers)
    reduced = apply_center_update(centers, sums0 + sums1, counts0 + counts1, alpha=0.5)
    concatenated = center_update(torch.cat([x0, x1]), torch.cat([y0, y1]), centers, alpha=0.5)
    torch.testing.assert_close(reduced, concatenated, rtol=0, atol=1e-12)
    # and it is not what either rank would do alone
    assert not torch.allclose(center_update(x0, y0, centers, alpha=0.5), concatenated)


def test_module_update_with_a_simulated_two_rank_all_reduce(monkeypatch):
    torch.manual_seed(1)
    centers = torch.randn(6, 5, dtype=torch.float64)
    batches = [random_batch(7), random_batch(3)]
    stats = [center_statistics(x, y, centers) for x, y in batches]
    reference = CenterLoss(6, 5, alpha=0.5).double()
    reference.centers.copy_(centers)
    reference.update_centers(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    for rank in (0, 1):
        other = stats[1 - rank]
        monkeypatch.setattr(
            center_module,
            "all_reduce_center_statistics",
            lambda sums, counts, other=other: (sums + other[0], counts + other[1]),
        )
        loss_fn = CenterLoss(6, 5, alpha=0.5).double()
        loss_fn.centers.copy_(centers)
        loss_fn.update_centers(*batches[rank])
        torch.testing.assert_close(loss_fn.centers, reference.centers, rtol=0, atol=1e-12)


def test_all_reduce_runs_in_a_one_process_group(tmp_path):
    sums, counts = torch.randn(4, 3), torch.tensor([1.0, 0.0, 2.0, 0.0])
    assert all_reduce_center_statistics(sums, counts) == (sums, counts)  # no group: unchanged
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        reduced_sums, reduced_counts = all_reduce_center_statistics(sums, counts)
        loss_fn = CenterLoss(4, 3)
        features, labels = torch.randn(5, 3), torch.tensor([0, 2, 2, 1, 0])
        loss_fn.update_centers(features, labels)
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(reduced_sums, sums)
    torch.testing.assert_close(reduced_counts, counts)
    torch.testing.assert_close(loss_fn.centers, center_update(features, labels, torch.zeros(4, 3), 0.5))


def test_centers_are_a_buffer_saved_and_restored():
    torch.manual_seed(2)
    loss_fn = CenterLoss(num_classes=6, ndims=5)
    assert "centers" in dict(loss_fn.named_buffers()) and list(loss_fn.parameters()) == []
    loss_fn.update_centers(torch.randn(9, 5), torch.randint(0, 6, (9,)))
    state = loss_fn.state_dict()
    assert set(state) == {"centers"}
    restored = CenterLoss(num_classes=6, ndims=5)
    assert not torch.equal(restored.centers, loss_fn.centers)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.centers, loss_fn.centers, rtol=0, atol=0)
    assert restored.double().centers.dtype == torch.float64  # moves and casts with the module


def test_bad_arguments_raise():
    features, labels, centers = fixture_tensors()
    with pytest.raises(ValueError, match="reduction"):
        center_loss(features, labels, centers, reduction="none")
    with pytest.raises(ValueError, match="reduction"):
        CenterLoss(4, 2, reduction="batchmean")
    with pytest.raises(ValueError, match="dim_reduction"):
        CenterLoss(4, 2, dim_reduction="none")
    with pytest.raises(ValueError, match="dim_reduction"):
        center_loss(features, labels, centers, dim_reduction="max")
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(4, 2, alpha=1.5)
    with pytest.raises(ValueError, match="features must be"):
        center_loss(features[None], labels, centers)
    with pytest.raises(ValueError, match="dims"):
        center_loss(features, labels, centers[:, :1])
    with pytest.raises(ValueError, match="labels must be"):
        center_update(features, labels[:3], centers, alpha=0.5)
    with pytest.raises(ValueError, match="integer"):
        center_loss(features, labels.double(), centers)
