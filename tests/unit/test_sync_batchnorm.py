"""GlooSyncBatchNorm on 2 CPU processes equals BatchNorm on the whole batch in one process:
outputs, input gradients, parameter gradients and running statistics."""

import torch
import torch.multiprocessing as mp
from torch import nn

from audioexp.utils.sync_batchnorm import GlooSyncBatchNorm, convert_batchnorm, revert_batchnorm


def _worker(rank, tmp, x, weight, bias):
    # a file rendezvous (no port to race for with other tests running in parallel)
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2)
    try:
        bn = convert_batchnorm(nn.Sequential(nn.BatchNorm2d(x.shape[1]).double()))[0]
        assert isinstance(bn, GlooSyncBatchNorm)
        with torch.no_grad():
            bn.weight.copy_(weight)
            bn.bias.copy_(bias)
        half = x.shape[0] // 2
        mine = x[rank * half:(rank + 1) * half].clone().requires_grad_(True)
        y = bn(mine)
        # the same per-element weights as the reference, at this rank's rows of the whole batch
        full = torch.arange(x.numel(), dtype=x.dtype).view_as(x).sin()
        (y * full[rank * half:(rank + 1) * half]).sum().backward()
        torch.distributed.all_reduce(bn.weight.grad)  # DDP would average; the sum is the whole batch's
        torch.distributed.all_reduce(bn.bias.grad)
        torch.save((y.detach(), mine.grad, bn.weight.grad, bn.bias.grad, bn.running_mean.clone(), bn.running_var.clone()),
                   f"{tmp}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_normalise_by_the_global_batch(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 5, dtype=torch.float64) * 3 + 1
    weight, bias = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    xr = x.clone().requires_grad_(True)
    yr = bn(xr)
    (yr * torch.arange(yr.numel(), dtype=yr.dtype).view_as(yr).sin()).sum().backward()
    ref = (yr.detach(), xr.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var)

    # results come back in files: a multiprocessing Manager forks a server process, which can
    # deadlock when forked from a multi-threaded process (a pytest-xdist worker)
    mp.spawn(_worker, args=(str(tmp_path), x, weight, bias), nprocs=2)
    out = {r: torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)}
    y = torch.cat([out[0][0], out[1][0]])
    gx = torch.cat([out[0][1], out[1][1]])
    torch.testing.assert_close(y, ref[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(gx, ref[1], rtol=0, atol=1e-10)
    for rank in range(2):
        for got, want in zip(out[rank][2:], ref[2:]):
            torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-10)


def test_convert_and_revert_keep_the_parameters_and_run_plainly_in_one_process():
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU())
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 2, 9)
    expected = net(x)
    converted = convert_batchnorm(net)
    assert isinstance(converted[1], GlooSyncBatchNorm)
    net.load_state_dict(state)
    torch.testing.assert_close(converted(x), expected)  # no process group: plain BatchNorm
    reverted = revert_batchnorm(converted)
    assert type(reverted[1]) is nn.BatchNorm1d and set(reverted.state_dict()) == set(state)
