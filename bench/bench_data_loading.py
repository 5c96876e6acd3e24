"""DataLoader throughput: clips per second from files and from shards, against a bare soundfile loop.

    python bench/bench_data_loading.py [--clips 600] [--seconds 5] [--workers 1 2] [--batch 16]

Writes a corpus in the FM broadcast layout (``speech/<recording>/<clip>.wav``, 16-bit WAV of
noise, ``--seconds`` long), prepares it with :class:`audioexp.data.fm_broadcast.FMBroadcastDataModule`,
writes its training split as litdata shards (:func:`audioexp.data.shards.write_split`), then times
one epoch of the training loader (decoding, random 5-s crops, collation; no model) with
``data.format=files`` and ``data.format=shards`` (``order=chunks``) for each ``--workers``,
against the reference: a bare loop of ``soundfile.read`` over the same files in one process.
Prints clips/s, clips/s per worker, and the ratio to the reference.

Read the numbers for what they are: the files sit in the page cache of a local disk here, so
this measures the CPU cost per clip (open + header + decode vs. a slice of a chunk + decode),
not the network-storage latency that shards avoid at scale (one open per 64-MB chunk instead of
one per clip).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audioexp.data.fm_broadcast import FMBroadcastDataModule
from audioexp.data.shards import write_split


def make_corpus(root: Path, clips: int, seconds: float, sample_rate: int = 16000) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(clips):
        label = ("speech", "music")[i % 2]
        folder = root / label / f"{label}_rec{i // 20:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"clip{i:06d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * sample_rate))).astype(np.float32), sample_rate,
                 subtype="PCM_16")
        paths.append(path)
    return paths


def datamodule(root: Path, cache: Path, batch: int, workers: int, **kw) -> FMBroadcastDataModule:
    dm = FMBroadcastDataModule(str(root), cache_dir=str(cache), val_fraction=0.0, test_fraction=0.0, batch_size=batch,
                               num_workers=workers, validate="header", **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def epoch_seconds(loader) -> tuple[float, int]:
    start = time.perf_counter()
    n = sum(int(b["label"].numel()) for b in loader)
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="0: in the main process")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="audioexp-bench-loading-"))
    try:
        root, cache, shards = tmp / "fm", tmp / "cache", tmp / "shards"
        paths = make_corpus(root, args.clips, args.seconds)
        dm = datamodule(root, cache, args.batch, 0)
        start = time.perf_counter()
        meta = write_split(dm.split_dataset("train"), shards / "train", root=root, corpus=dm.corpus_name, split="train",
                           groups=dm.split_groups("train"))
        print(f"{args.clips} clips of {args.seconds} s; shards written in {time.perf_counter() - start:.1f} s "
              f"({meta['num_chunks']} chunks, {meta['bytes'] / 1e6:.0f} MB)")

        def bare() -> float:
            start = time.perf_counter()
            for p in paths:
                sf.read(p, dtype="float32")
            return time.perf_counter() - start

        ref = min(bare() for _ in range(args.repeats))
        ref_rate = len(paths) / ref
        print(f"{'loader':28s}{'workers':>8s}{'clips/s':>10s}{'per worker':>12s}{'vs bare loop':>14s}")
        print(f"{'bare soundfile loop':28s}{1:8d}{ref_rate:10.1f}{ref_rate:12.1f}{1.0:13.2f}x")
        for workers in args.workers:
            for fmt in ("files", "shards"):
                extra = {"format": "shards", "shards": {"dir": str(shards)}} if fmt == "shards" else {}
                loader = datamodule(root, cache, args.batch, workers, **extra).train_dataloader()
                best = float("inf")
                for epoch in range(args.repeats):
                    loader.sampler.set_epoch(epoch)
                    secs, n = epoch_seconds(loader)
                    best = min(best, secs)
                rate = n / best
                print(f"{'data.format=' + fmt:28s}{workers:8d}{rate:10.1f}{rate / max(workers, 1):12.1f}{rate / ref_rate:13.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
