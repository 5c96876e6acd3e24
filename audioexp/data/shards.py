"""A corpus's splits as litdata shards, and the training order that streams them.

Why litdata (not WebDataset): it is made for Lightning, reads local folders and object
storage (``s3://``, ``gs://``) through one ``StreamingDataset`` with a local chunk cache, and
gives random access to item ``i`` of a split, so that the training order, the resume
position and the per-item random streams stay ours (:mod:`audioexp.data.resumable`), the same
for files and shards. litdata's own iterator forces ``drop_last`` under DDP (items left out
every epoch) and WebDataset's ``split_by_node`` / ``with_epoch`` repeat or drop items to even
out the ranks; neither gives "each item once per epoch across ranks", which
:class:`ChunkBatchSampler` does.

Layout written by ``python -m audioexp task=shards data=<corpus>`` (:func:`write_split`)::

    <data.shards.dir>/<split>/index.json, chunk-*.bin   litdata's chunks: one item per file
        {"index": position in the split, "audio": the file's bytes as they are on disk (uint8),
         "label": int, "group": recording / speaker, "path": relative to the corpus root}
    <data.shards.dir>/<split>/audioexp.json             what was written, from which list
    <data.shards.dir>/check.json                        the prepare-time audio check of the writer

Items are decoded (soundfile) and cropped in the DataLoader's workers by the corpus's own
dataset (``make_item``), exactly as from files; features stay on the device in the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from audioexp.data.resumable import ResumableSampler, _world, item_seed
from audioexp.utils.files import atomic_write_json

__all__ = [
    "ChunkBatchSampler",
    "ShardItems",
    "ShardMismatchError",
    "ShardOptions",
    "balanced_batches",
    "chunk_order",
    "split_fingerprint",
    "write_split",
]

log = logging.getLogger(__name__)
# litdata says at INFO, for every split written or opened, how much disk its cache may use
logging.getLogger("litdata.utilities.format").setLevel(logging.WARNING)

META = "audioexp.json"
FORMAT_VERSION = 1


class ShardMismatchError(ValueError):
    """Shards that do not hold the split the corpus's lists describe (or are missing)."""


@dataclass(frozen=True)
class ShardOptions:
    """``data.shards``: where the shards are and how training streams them.

    dir : str
        The folder ``task=shards`` wrote (one sub-folder per split); local or ``s3://...``.
    order : {"chunks", "files"}
        ``chunks`` (default): chunks shuffled per epoch, items shuffled within a buffer of
        ``buffer_chunks`` consecutive chunks, each rank reading its own contiguous run of
        chunks (streaming from object storage). ``files``: the file path's order, item for
        item (the same batches as ``data.format=files`` for a seed; random access, so meant
        for local disks).
    buffer_chunks : int
        How many chunks the within-buffer shuffle mixes.
    chunk_bytes : str
        Size of a chunk when writing (litdata's ``chunk_bytes``).
    cache_dir : str, optional
        litdata's local cache of remote chunks.
    """

    dir: str | None = None
    order: str = "chunks"
    buffer_chunks: int = 4
    chunk_bytes: str = "64MB"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.order not in ("chunks", "files"):
            raise ValueError(f"data.shards.order must be 'chunks' or 'files', got {self.order!r}")
        if self.buffer_chunks < 1:
            raise ValueError(f"data.shards.buffer_chunks must be at least 1, got {self.buffer_chunks}")

    def split_dir(self, split: str) -> str:
        if not self.dir:
            raise ValueError("data.format=shards needs data.shards.dir (the folder task=shards wrote)")
        return _join(self.dir, split)


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if "://" in str(base) else str(Path(base) / name)


def _is_remote(path: str) -> bool:
    return "://" in str(path)


# --- writing ---------------------------------------------------------------------------------
def split_fingerprint(paths: Sequence[str], labels: Sequence[int]) -> str:
    """SHA-1 of the split's ``relative path<TAB>label`` lines, in order: what the shards
    must match for the corpus's lists to describe them."""
    h = hashlib.sha1()
    for path, label in zip(paths, labels):
        h.update(f"{path}\t{int(label)}\n".encode())
    return h.hexdigest()


def relative_paths(sources: Sequence[str], root: str | os.PathLike) -> list[str]:
    """``sources`` relative to ``root``, ``/``-separated (a prefix cut for the files under it:
    ``os.path.relpath`` would cost seconds over millions of files)."""
    root = os.path.abspath(root)
    prefix = root.rstrip(os.sep) + os.sep
    out = []
    for source in sources:
        path = source if os.path.isabs(source) else os.path.abspath(source)
        rel = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)
        out.append(rel.replace(os.sep, "/") if os.sep != "/" else rel)
    return out


def split_listing(dataset: Dataset, root: str | os.PathLike) -> tuple[list[str], list[int]]:
    """The split's files relative to ``root`` (``/``-separated) and labels, in item order."""
    paths = relative_paths([dataset.source(i) for i in range(len(dataset))], root)
    return paths, [int(x) for x in np.asarray(dataset.labels)]


def _shard_item(entry: tuple) -> dict:
    """One litdata item (run in optimize's worker processes: a module-level function)."""
    index, source, path, label, group = entry
    with open(source, "rb") as f:
        audio = f.read()
    # (a uint8 array, not bytes: litdata stores all-scalar items as Arrow row batches, decoded
    # 256 rows at a time, ~10 ms per jump between chunks; arrays keep per-item offsets, ~0.05 ms)
    return {"index": index, "audio": np.frombuffer(audio, dtype=np.uint8), "label": label, "group": group,
            "path": path}


def write_split(dataset: Dataset, out_dir: str | os.PathLike, *, root: str | os.PathLike, corpus: str, split: str,
                groups: Sequence[str] | None = None, chunk_bytes: str = "64MB", num_workers: int = 1) -> dict:
    """Write ``dataset``'s files (its ``source(i)``, as they are on disk) into litdata shards at
    ``out_dir``, in item order; returns what ``audioexp.json`` records.

    Written beside ``out_dir`` and renamed into place once complete: an interrupted write
    leaves the previous shards (or none), never half of a split.
    """
    from litdata import optimize

    out_dir = Path(out_dir)
    sources = [dataset.source(i) for i in range(len(dataset))]
    paths, labels = relative_paths(sources, root), [int(x) for x in np.asarray(dataset.labels)]
    if not paths:
        raise ValueError(f"the {split} split of {corpus} at {root} is empty: nothing to write")
    groups = [str(g) for g in groups] if groups is not None else [""] * len(paths)
    if len(groups) != len(paths):
        raise ValueError(f"{len(groups)} groups for {len(paths)} items")
    entries = list(zip(range(len(paths)), sources, paths, labels, groups))
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    optimize(fn=_shard_item, inputs=entries, output_dir=str(tmp), chunk_bytes=chunk_bytes,
             num_workers=max(1, int(num_workers)), keep_data_ordered=True, verbose=False, mode="overwrite",
             start_method="fork" if os.name == "posix" else None)
    index = json.loads((tmp / "index.json").read_text())
    meta = {
        "format_version": FORMAT_VERSION,
        "corpus": corpus,
        "split": split,
        "num_items": len(paths),
        "fingerprint": split_fingerprint(paths, labels),
        "num_chunks": len(index["chunks"]),
        "bytes": int(sum(c["chunk_bytes"] for c in index["chunks"])),
        "class_counts": np.bincount([x for x in labels if x >= 0] or [0]).tolist(),
    }
    if sum(c["chunk_size"] for c in index["chunks"]) != len(paths):
        raise RuntimeError(f"litdata wrote {sum(c['chunk_size'] for c in index['chunks'])} items of {len(paths)} to {tmp}")
    atomic_write_json(tmp / META, meta)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
    log.info("%s %s: %d files in %d chunks (%.1f MB) at %s", corpus, split, len(paths), meta["num_chunks"],
             meta["bytes"] / 1e6, out_dir)
    return meta


# --- reading ---------------------------------------------------------------------------------
def _read_json(path: str) -> dict:
    if _is_remote(path):  # object storage: through litdata's resolver/downloader
        import tempfile

        from litdata.streaming.downloader import get_downloader

        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, os.path.basename(path))
            get_downloader(os.path.dirname(path), tmp, []).download_file(path, local)
            return json.loads(Path(local).read_text())
    return json.loads(Path(path).read_text())


def shard_path(base: str, name: str) -> str:
    """``base/name`` for a folder or an object-storage URL."""
    return _join(base, name)


def read_json_if_exists(path: str) -> dict | None:
    try:
        return _read_json(path)
    except FileNotFoundError:
        return None


def read_meta(split_dir: str, corpus: str, split: str) -> tuple[dict, list[int]]:
    """The ``audioexp.json`` of a split's shards and litdata's items per chunk; a clear error
    when they are missing or not audioexp's."""
    try:
        meta = _read_json(_join(split_dir, META))
        index = _read_json(_join(split_dir, "index.json"))
    except FileNotFoundError as err:
        raise ShardMismatchError(
            f"data.format=shards but {split_dir} holds no shards of the {split} split of {corpus} ({err.filename} is "
            f"missing); write them with: python -m audioexp task=shards data=<this corpus> data.shards.dir=..."
        ) from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise ShardMismatchError(f"{split_dir}: shards of format {meta.get('format_version')}, this audioexp reads "
                                 f"{FORMAT_VERSION}; write them again with task=shards")
    return meta, [int(c["chunk_size"]) for c in index["chunks"]]


class ShardItems(Dataset):
    """The items of ``dataset`` (a corpus's map-style dataset) with their audio from shards:
    ``items[i]`` decodes item ``i``'s bytes with the dataset's reader and makes the item with its
    ``make_item`` (cropping, noise and labels as from files). Per-item random streams and whole
    batches come from the wrappers the files use too (:class:`~audioexp.data.resumable.SeededItems`,
    :class:`~audioexp.data.resumable.WholeBatches`).

    Parameters
    ----------
    dataset : Dataset
        Has ``source(i)``, ``labels``, ``read`` (:class:`~audioexp.data.datasets.SkippingAudioReader`)
        and ``make_item(i, waveform)``.
    split_dir : str
        The split's shards (:func:`write_split`); checked against the dataset's listing here.
    root : path
        The corpus root the dataset's files are relative to (for the check of the listing).
    """

    def __init__(self, dataset: Dataset, split_dir: str, root: str | os.PathLike, *, corpus: str, split: str,
                 cache_dir: str | None = None) -> None:
        self.dataset = dataset
        self.split_dir = split_dir
        self.cache_dir = cache_dir
        self.meta, self.chunk_sizes = read_meta(split_dir, corpus, split)
        paths, labels = split_listing(dataset, root)
        if len(paths) != self.meta["num_items"] or split_fingerprint(paths, labels) != self.meta["fingerprint"]:
            raise ShardMismatchError(
                f"the shards at {split_dir} ({self.meta['num_items']} files) were written from another {split} list "
                f"than {corpus}'s at {root} ({len(paths)} files; data, split or label settings changed?): write them "
                "again with task=shards and the same data settings"
            )
        self._stream = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def labels(self):
        return self.dataset.labels

    def _open(self):
        if self._stream is None:  # in each process that reads (DataLoader workers open their own)
            from litdata import StreamingDataset

            # (batch_decode=0: one item per read, no window of neighbours decoded with it)
            self._stream = StreamingDataset(self.split_dir, cache_dir=self.cache_dir, batch_decode=0)
        return self._stream

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}

    def __getitem__(self, i: int) -> dict | None:
        record = self._open()[i]
        if record["index"] != i:
            raise ShardMismatchError(f"{self.split_dir}: item {i} holds item {record['index']} (a corrupt index?)")
        name = f"{self.dataset.source(i)} (in the shards at {self.split_dir})"
        return self.dataset.make_item(i, self.dataset.read(name, data=record["audio"]))


# --- the training order: chunk by chunk, each item once across ranks --------------------------
def chunk_order(chunk_sizes: Sequence[int], seed: int, epoch: int, buffer_chunks: int = 4,
                shuffle: bool = True) -> np.ndarray:
    """Item indices of one epoch: the chunks in a random order from ``(seed, epoch)``, then the
    items of each run of ``buffer_chunks`` consecutive chunks shuffled among themselves."""
    starts = np.concatenate([[0], np.cumsum(chunk_sizes)]).astype(np.int64)
    if not shuffle:
        return np.arange(starts[-1], dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    chunks = rng.permutation(len(chunk_sizes))
    parts = []
    for b in range(0, len(chunks), buffer_chunks):
        items = np.concatenate([np.arange(starts[c], starts[c + 1]) for c in chunks[b : b + buffer_chunks]])
        parts.append(rng.permutation(items))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def balanced_batches(num_items: int, num_batches: int, batch_size: int) -> list[int]:
    """Sizes of ``num_batches`` batches holding ``num_items`` items: full batches first, the
    last two sharing what is left evenly (no batch of one item where it can be helped:
    BatchNorm needs two). Every size is at least 1 when ``num_items >= num_batches``."""
    if num_batches <= 0:
        return []
    if num_batches == 1:
        return [num_items]
    full = min(num_batches - 2, num_items // batch_size)
    while full > 0 and num_items - full * batch_size < 2 * (num_batches - full):
        full -= 1  # fewer full batches, so that the rest is at least two per batch
    rest, tail = num_items - full * batch_size, num_batches - full
    return [batch_size] * full + [rest // tail + (1 if k < rest % tail else 0) for k in range(tail)]


class ChunkBatchSampler(ResumableSampler):
    """Training batches streamed chunk by chunk, each item once per epoch across all ranks.

    The epoch's order is :func:`chunk_order`; rank ``r`` of ``w`` takes the ``r``-th of ``w``
    contiguous, near-equal runs of it (so it reads its own chunks), and every rank cuts its run
    into the same number of batches (``ceil(largest run / batch_size)``, sized by
    :func:`balanced_batches`): no item is repeated or dropped to even out the ranks, and no
    rank waits on another's extra batch. Yields lists of ``(index, seed)`` keys
    (:class:`~audioexp.data.resumable.WholeBatches` collates them); the seed of an item depends
    on ``(seed, epoch, its position in the epoch)`` only, not on the number of ranks or workers.
    ``resume(epoch, batches_done)`` starts a resumed run where it stopped (the DataModule's
    state in the checkpoint).
    """

    def __init__(self, chunk_sizes: Sequence[int], batch_size: int, seed: int = 0, buffer_chunks: int = 4,
                 shuffle: bool = True, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.chunk_sizes = [int(c) for c in chunk_sizes]
        self.num_items = int(sum(self.chunk_sizes))
        self.batch_size = int(batch_size)
        self.seed, self.buffer_chunks, self.shuffle = seed, buffer_chunks, shuffle
        self.num_replicas, self.rank = _world(num_replicas, rank)
        if self.num_items < self.num_replicas:
            raise ValueError(f"{self.num_items} items cannot be shared by {self.num_replicas} ranks")
        self.drop_last = False
        self.epoch = 0
        self._skip = 0

    def _bounds(self, rank: int) -> tuple[int, int]:
        q, r = divmod(self.num_items, self.num_replicas)
        start = rank * q + min(rank, r)
        return start, start + q + (1 if rank < r else 0)

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.num_items / self.num_replicas) / self.batch_size)

    def batches(self) -> list[list[tuple[int, int]]]:
        """This rank's batches of the current epoch (every one, ignoring a resume)."""
        order = chunk_order(self.chunk_sizes, self.seed, self.epoch, self.buffer_chunks, self.shuffle)
        start, stop = self._bounds(self.rank)
        out, at = [], start
        for size in balanced_batches(stop - start, len(self), self.batch_size):
            out.append([(int(order[p]), item_seed(self.seed, self.epoch, p)) for p in range(at, at + size)])
            at += size
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # a generator: the DataLoader creates an iterator it discards before the one it runs
        yield from self.batches()[self._take_skip():]
