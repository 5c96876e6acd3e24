"""Training throughput of VGGCenterLoss through Lightning against a plain PyTorch loop.

Both train the same network (Network B by default) with softmax + center loss and Adam on
the same in-memory batches of random 3-s waveforms (front-end included), for the same number
of steps after a warm-up; the Lightning run has no logger, checkpoint or progress bar, as a
plain loop would. Prints samples per second for both and the ratio (the framework's overhead).

    python bench/bench_training_throughput.py [--network B] [--width 1.0] [--batch 16] [--steps 20]
"""

from __future__ import annotations

import copy
import time
from functools import partial

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from _options import parse_options
from audioexp.features import LogPowerSpectrogram
from audioexp.losses.center import CenterLoss
from audioexp.networks.vgg import VGGSpeakerNet
from audioexp.systems.vgg_center_loss import VGGCenterLoss


class RandomCrops(Dataset):
    def __init__(self, n: int, samples: int, classes: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, samples, generator=g) * 0.1
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"waveform": self.x[i], "label": int(self.y[i]), "index": i}


def collate(items):
    return {
        "waveform": torch.stack([i["waveform"] for i in items]),
        "label": torch.tensor([i["label"] for i in items]),
        "index": torch.tensor([i["index"] for i in items]),
        "skipped": torch.tensor(0),
    }


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.t1 = time.perf_counter()


def main() -> None:
    args = parse_options(__doc__, network="B", width=1.0, batch=16, steps=20, warmup=3, classes=1251, threads=2)
    total = args.steps + args.warmup
    data = RandomCrops(total * args.batch, 48000, args.classes)

    torch.manual_seed(0)
    # the recipe's model (conf/model/vgg_center_loss.yaml) at the chosen network and width
    model = VGGCenterLoss(LogPowerSpectrogram(),
                          VGGSpeakerNet(config=args.network, num_classes=args.classes, ndims=128, dropout=0.4,
                                        width=args.width),
                          partial(CenterLoss, alpha=0.5, dim_reduction="mean"), num_classes=args.classes)
    plain_model = copy.deepcopy(model)

    # Lightning
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=total, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    loader = DataLoader(data, batch_size=args.batch, shuffle=False, collate_fn=collate)
    trainer.fit(model, train_dataloaders=loader)
    t_lightning = timer.t1 - timer.t0

    # plain PyTorch: the same steps by hand
    net = plain_model.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = list(DataLoader(data, batch_size=args.batch, shuffle=False, collate_fn=collate))
    for i, batch in enumerate(batches):
        if i == args.warmup:
            t0 = time.perf_counter()
        logits, embedding = net.forward_with_embedding(batch["waveform"])
        loss = net.criterion(logits, batch["label"]) + net.center_loss_weight * net.center_loss(embedding, batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        net.center_loss.update_centers(embedding.detach(), batch["label"])
    t_plain = time.perf_counter() - t0

    n = args.steps * args.batch
    print(f"Network {args.network} (width {args.width}), batch {args.batch} x 3 s, {args.steps} timed steps, {args.threads} threads")
    print(f"{'':12s}{'seconds':>9s}{'samples/s':>11s}")
    print(f"{'lightning':12s}{t_lightning:9.2f}{n / t_lightning:11.2f}")
    print(f"{'plain loop':12s}{t_plain:9.2f}{n / t_plain:11.2f}")
    print(f"ratio plain / lightning time: {t_plain / t_lightning:.3f} (1.0 = no framework overhead)")


if __name__ == "__main__":
    main()
