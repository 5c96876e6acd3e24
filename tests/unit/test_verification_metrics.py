"""EER, minDCF and DET curves against sklearn and brute force, on random Gaussian trials."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy.interpolate import interp1d  # noqa: E402
from scipy.optimize import brentq  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402
from torchmetrics.utilities import dim_zero_cat  # noqa: E402

from audioexp.figures import det_curve_figure
from audioexp.metrics.verification import (  # noqa: E402
    EqualErrorRate,
    MinDCF,
    det_curve,
    equal_error_rate,
    minimum_dcf,
)

# (n_targets, n_non_targets, separation d' between the two unit Gaussians, decimals kept or None)
# rounding to 1-2 decimals makes many ties, within and across the classes
TRIAL_SETS = [
    (50, 50, 1.0, None),
    (30, 970, 2.0, None),
    (900, 100, 0.5, None),
    (400, 4000, 3.0, None),
    (7, 13, 0.0, None),
    (200, 300, 1.5, 1),
    (1000, 1000, 1.0, 2),
]


def gaussian_trials(n_tar, n_non, d_prime, decimals, seed):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(d_prime, 1.0, n_tar), rng.normal(0.0, 1.0, n_non)])
    if decimals is not None:
        scores = np.round(scores, decimals)
    labels = np.concatenate([np.ones(n_tar, dtype=np.int64), np.zeros(n_non, dtype=np.int64)])
    order = rng.permutation(scores.size)
    return scores[order], labels[order]


def rates_at(scores, labels, threshold):
    """(P_miss, P_fa) of accepting ``score >= threshold``, by direct counting."""
    tar, non = scores[labels == 1], scores[labels == 0]
    return np.mean(tar < threshold), np.mean(non >= threshold)


@pytest.mark.parametrize("seed", range(len(TRIAL_SETS)))
def test_eer_matches_sklearn_roc_crossing(seed):
    scores, labels = gaussian_trials(*TRIAL_SETS[seed], seed=seed)
    eer, threshold = equal_error_rate(scores, labels)

    # Reference 1: the ROC crossing fpr == 1 - tpr, linearly interpolated between the two sklearn
    # operating points around it. sklearn's points (drop_intermediate=False) are ours, and
    # fnr - fpr is strictly decreasing along them, so np.interp is well defined; the convention
    # is the same, only float rounding differs: 1e-12.
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    assert np.all(np.diff(fnr - fpr) < 0)
    np.testing.assert_allclose(eer, np.interp(0.0, fpr - fnr, fpr), rtol=0, atol=1e-12)

    # Reference 2: the widely copied brentq recipe on sklearn's default (collinear points dropped)
    # curve. It solves the same equation on the same piecewise-linear ROC, to brentq's xtol: 1e-9.
    fpr, tpr, _ = roc_curve(labels, scores)
    ref = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    np.testing.assert_allclose(eer, ref, rtol=0, atol=1e-9)

    # the threshold operates at the first point past the crossing: P_fa <= EER <= P_miss there,
    # and one step below it (any score under the threshold accepted too) P_miss <= EER <= P_fa
    p_miss, p_fa = rates_at(scores, labels, threshold)
    assert p_fa <= eer + 1e-12 and eer <= p_miss + 1e-12
    below = scores[scores < threshold]
    if below.size:
        p_miss, p_fa = rates_at(scores, labels, below.max())
        assert p_miss <= eer + 1e-12 and eer <= p_fa + 1e-12


@pytest.mark.parametrize("seed", range(len(TRIAL_SETS)))
@pytest.mark.parametrize("p_target,c_miss,c_fa", [(0.01, 1.0, 1.0), (0.05, 1.0, 1.0), (0.5, 10.0, 1.0), (0.2, 1.0, 3.0)])
def test_min_dcf_matches_brute_force(seed, p_target, c_miss, c_fa):
    scores, labels = gaussian_trials(*TRIAL_SETS[seed], seed=100 + seed)
    min_dcf, threshold = minimum_dcf(scores, labels, p_target=p_target, c_miss=c_miss, c_fa=c_fa)

    norm_const = min(c_miss * p_target, c_fa * (1 - p_target))

    def dcf(t):
        p_miss, p_fa = rates_at(scores, labels, t)
        return (c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)) / norm_const

    brute = min(dcf(t) for t in np.concatenate([[-np.inf], np.unique(scores), [np.inf]]))
    np.testing.assert_allclose(min_dcf, brute, rtol=0, atol=1e-9)
    np.testing.assert_allclose(dcf(threshold), min_dcf, rtol=0, atol=1e-9)
    assert 0.0 <= min_dcf <= 1.0


@pytest.mark.parametrize("p_target,c_miss,c_fa", [(0.01, 1.0, 1.0), (0.5, 1.0, 1.0), (0.9, 1.0, 10.0)])
def test_separated_inverted_and_tied_scores(p_target, c_miss, c_fa):
    rng = np.random.default_rng(3)
    non = rng.uniform(0.0, 1.0, 40)
    tar = rng.uniform(2.0, 3.0, 25)
    labels = np.concatenate([np.ones(25), np.zeros(40)])
    costs = dict(p_target=p_target, c_miss=c_miss, c_fa=c_fa)

    separated = np.concatenate([tar, non])
    assert equal_error_rate(separated, labels) == (0.0, tar.min())
    assert minimum_dcf(separated, labels, **costs)[0] == 0.0

    # inverted: every operating point either misses all targets or accepts all non-targets, so the
    # best is the cheaper trivial system, which is exactly the normaliser: minDCF 1
    inverted = -separated
    assert equal_error_rate(inverted, labels)[0] == 1.0
    assert minimum_dcf(inverted, labels, **costs)[0] == pytest.approx(1.0, abs=1e-12)

    # all scores tied: one step from accept-all (0, 1) to reject-all (1, 0), crossing halfway
    tied = np.full(labels.shape, 0.3)
    eer, threshold = equal_error_rate(tied, labels)
    assert eer == 0.5 and threshold > 0.3
    assert rates_at(tied, labels, threshold) == (1.0, 0.0)
    assert minimum_dcf(tied, labels, **costs)[0] == pytest.approx(1.0, abs=1e-12)


def test_ties_move_together():
    # a target and a non-target share 0.5: the curve goes diagonally from (0.5, 0) to (0, 0.5)
    p_fa, p_miss, thresholds = det_curve([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1])
    np.testing.assert_array_equal(thresholds, [0.1, 0.5, 0.9, np.inf])
    np.testing.assert_array_equal(p_fa, [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(p_miss, [0.0, 0.0, 0.5, 1.0])
    assert equal_error_rate([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == (0.25, 0.7)


@pytest.mark.parametrize("seed", [0, 5, 6])
def test_det_curve_monotone_and_equal_to_sklearn_roc(seed):
    scores, labels = gaussian_trials(*TRIAL_SETS[seed], seed=seed)
    p_fa, p_miss, thresholds = det_curve(torch.from_numpy(scores), torch.from_numpy(labels))
    assert np.all(np.diff(thresholds) > 0) and thresholds[-1] == np.inf
    assert np.all(np.diff(p_fa) <= 0) and np.all(np.diff(p_miss) >= 0)
    assert (p_fa[0], p_miss[0], p_fa[-1], p_miss[-1]) == (1.0, 0.0, 0.0, 1.0)
    fpr, tpr, ref_thresholds = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(p_fa, fpr[::-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p_miss, 1.0 - tpr[::-1], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thresholds, ref_thresholds[::-1])


def test_metric_classes_equal_pure_functions_across_updates_and_reset():
    scores, labels = gaussian_trials(300, 700, 1.2, None, seed=11)
    scores_t, labels_t = torch.from_numpy(scores).float(), torch.from_numpy(labels)
    eer_metric, dcf_metric = EqualErrorRate(), MinDCF(p_target=0.05)
    for chunk in torch.arange(scores.size).split(128):
        eer_metric.update(scores_t[chunk], labels_t[chunk])
        dcf_metric.update(scores_t[chunk], labels_t[chunk])
    # float32 storage: compare with the pure functions on the same float32 scores
    eer = eer_metric.compute()
    assert eer.dim() == 0 and eer.dtype == torch.float32
    assert eer.item() == pytest.approx(equal_error_rate(scores_t, labels_t)[0], abs=1e-7)
    assert dcf_metric.compute().item() == pytest.approx(minimum_dcf(scores_t, labels_t, p_target=0.05)[0], abs=1e-7)

    eer_metric.reset()
    dcf_metric.reset()
    second = slice(0, 250)
    eer_metric.update(scores_t[second], labels_t[second])
    dcf_metric.update(scores_t[second], labels_t[second])
    assert eer_metric.compute().item() == pytest.approx(equal_error_rate(scores[second], labels[second])[0], abs=1e-6)
    assert dcf_metric.compute().item() == pytest.approx(
        minimum_dcf(scores[second], labels[second], p_target=0.05)[0], abs=1e-6
    )


class FakeAllGather:
    """Stand-in for torchmetrics' all-gather, seen from rank 0 of two; no process group needed.

    torchmetrics gathers the states one at a time in declaration order (scores, then labels).
    """

    def __init__(self):
        self.other_rank = None
        self.calls = 0

    def __call__(self, tensor, group=None):
        other = [dim_zero_cat(self.other_rank.scores), dim_zero_cat(self.other_rank.labels)][self.calls % 2]
        self.calls += 1
        return [tensor, other]


# merge_state fills the states without counting an update, so compute() warns about "update"
@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric:UserWarning")
@pytest.mark.parametrize("metric_class", [EqualErrorRate, MinDCF])
def test_two_ranks_gather_to_the_metric_of_all_trials(metric_class):
    scores, labels = gaussian_trials(120, 380, 1.0, 1, seed=12)
    scores_t, labels_t = torch.from_numpy(scores), torch.from_numpy(labels)
    gather = FakeAllGather()
    # compute() on rank 0 takes the DDP code path of torchmetrics: pre-concatenate the list
    # states, all-gather them, reduce with dist_reduce_fx="cat", compute, restore local states
    ranks = [metric_class(dist_sync_fn=gather, distributed_available_fn=lambda: True), metric_class()]
    gather.other_rank = ranks[1]
    for i, rank in enumerate(ranks):  # rank i sees every other trial, in batches of 100
        for batch in torch.arange(i, scores.size, 2).split(100):
            rank.update(scores_t[batch], labels_t[batch])
    single = metric_class()
    single.update(scores_t, labels_t)
    expected = single.compute()

    assert torch.equal(ranks[0].compute(), expected)
    assert gather.calls == 2
    # local states restored after the synced compute
    assert torch.equal(dim_zero_cat(ranks[0].scores), scores_t[0::2])

    merged = metric_class()
    merged.merge_state(ranks[1])
    merged.merge_state(ranks[0])
    assert torch.equal(merged.compute(), expected)


@pytest.mark.parametrize("function", [equal_error_rate, minimum_dcf, det_curve])
def test_invalid_trials_raise(function):
    with pytest.raises(ValueError, match="NaN"):
        function(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="infinite"):
        function(np.array([0.1, np.inf, 0.3]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="no non-targets"):
        function(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="no targets"):
        function(torch.tensor([0.1, 0.2]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="no targets"):
        function(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="same shape"):
        function(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must be 0"):
        function(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 2]))


def test_invalid_costs_and_metric_shapes_raise():
    with pytest.raises(ValueError, match="p_target"):
        minimum_dcf([0.1, 0.2], [0, 1], p_target=1.0)
    with pytest.raises(ValueError, match="positive"):
        MinDCF(c_fa=0.0)
    with pytest.raises(ValueError, match="same shape"):
        EqualErrorRate().update(torch.rand(4), torch.ones(3))


def test_det_curve_figure_has_curve_and_eer_point():
    scores, labels = gaussian_trials(200, 800, 1.5, None, seed=13)
    fig = det_curve_figure(scores, labels, title="random trials")
    try:
        (ax,) = fig.axes
        curve, point = ax.lines
        eer, _ = equal_error_rate(scores, labels)
        np.testing.assert_allclose(point.get_xdata(), norm.ppf([eer]))
        np.testing.assert_allclose(point.get_ydata(), norm.ppf([eer]))
        assert len(curve.get_xdata()) == np.unique(scores).size + 1
        np.testing.assert_allclose(ax.get_xlim(), norm.ppf([0.001, 0.5]))
        assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["0.1", "0.2", "0.5"]
        assert ax.get_title() == "random trials"
    finally:
        plt.close(fig)
    assert fig.number not in plt.get_fignums()
