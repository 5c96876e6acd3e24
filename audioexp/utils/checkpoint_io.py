"""Checkpoints written atomically on any filesystem, and a free-space check before the first one.

Lightning's ``TorchCheckpointIO`` serialises to memory and then writes the final path
through an fsspec transaction, which on a local filesystem is a plain write: a process
killed mid-write (or a full disk) leaves a truncated file under the final name. Here the
bytes go to a temporary file in the checkpoint's own directory (so the rename never crosses
filesystems), are flushed and fsynced, and only then renamed over the final name; on any
error the temporary file is removed and the previous checkpoint stays as it was.

Checkpoints hold tensors and plain values only, and are read back with
``torch.load(weights_only=True)`` whatever Lightning asks for (a checkpoint given as
``ckpt_path=`` is input, not code: :mod:`audioexp.utils.trust`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from audioexp.utils.files import atomic_open
from audioexp.utils.trust import checkpoint_globals

log = logging.getLogger(__name__)

__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "atomic_torch_save", "plain_hyperparameters", "deferred_signals", "check_free_space", "estimate_checkpoint_bytes"]


#: Signals a scheduler sends before stopping a job (SLURM, submitit: USR1/USR2, then TERM).
DEFERRED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGUSR2", "SIGTERM") if hasattr(signal, name))


@contextlib.contextmanager
def deferred_signals(signals: tuple = DEFERRED_SIGNALS):
    """Hold back the scheduler's stop signals while a checkpoint is written, and deliver them
    (to the handlers installed before) once it is complete.

    A requeue handler that runs in the middle of ``torch.save`` (submitit's exits from inside
    the handler) breaks the write: the zip writer turns the exit into "unexpected pos" and
    the job fails instead of being requeued. Outside the main thread (where Python cannot
    change handlers) nothing is deferred.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``
    (:func:`audioexp.utils.files.atomic_open`), with stop signals held back meanwhile
    (:func:`deferred_signals`)."""
    with deferred_signals(), atomic_open(path, mode="wb") as handle:
        torch.save(obj, handle)


def estimate_checkpoint_bytes(model: torch.nn.Module, optimizer_copies: int = 2) -> int:
    """Rough size of a training checkpoint: weights and buffers, plus ``optimizer_copies``
    moment tensors per trainable parameter (2 for Adam/AdamW)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return int(weights + optimizer_copies * trainable)


def check_free_space(directory: str | os.PathLike, needed_bytes: int) -> bool:
    """Warn (and return False) when ``directory``'s filesystem cannot hold two checkpoints of
    ``needed_bytes`` (the new one is written beside the previous before the rename)."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < 2 * needed_bytes:
        log.warning(
            "only %.1f MB free on the filesystem of %s; a checkpoint needs about %.1f MB and is written beside "
            "the previous one: free some space or choose another hydra.run.dir before the first epoch ends",
            free / 1e6, directory, needed_bytes / 1e6,
        )
        return False
    return True


#: The checkpoint entries where Lightning puts ``save_hyperparameters()``'s values.
HPARAMS_KEYS = ("hyper_parameters", "datamodule_hyper_parameters")


def plain_hyperparameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with OmegaConf containers in its hyperparameters turned into plain
    dicts and lists (Hydra passes list arguments as ``ListConfig``, which
    ``torch.load(weights_only=True)`` refuses)."""
    def plain(value: Any) -> Any:
        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return (tuple if isinstance(value, tuple) else list)(plain(v) for v in value)
        return value

    if not any(k in checkpoint for k in HPARAMS_KEYS):
        return checkpoint  # e.g. a bare state_dict: left as it is (its OrderedDict metadata too)
    checkpoint = dict(checkpoint)  # the caller's dict stays as it was
    for k in HPARAMS_KEYS:
        if k in checkpoint:
            checkpoint[k] = plain(checkpoint[k])
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose local saves are atomic (remote URLs keep Lightning's path),
    whose hyperparameters are saved as plain values and whose loads are ``weights_only``."""

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # weights_only=True whatever the caller asked: a resume's ckpt_path= is input too
        with checkpoint_globals():
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        checkpoint = plain_hyperparameters(checkpoint)
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        get_filesystem(path)  # the same validation of the path as Lightning's
        atomic_torch_save(checkpoint, path)


class LastCheckpoint(ModelCheckpoint):
    """``checkpoints/last.ckpt``: the most recent state, written at every epoch end and, with
    ``every_n_train_steps=N``, every N optimizer steps as well (Lightning's ModelCheckpoint
    takes one trigger or the other; here both). Lightning's own ``save_last`` writes ``last``
    only when the monitored metric improved, so it is not used for this."""

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                         enable_version_counter=False, **kwargs)
        self._every_n_train_steps = int(every_n_train_steps or 0)
