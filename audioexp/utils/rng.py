"""The random number generators in every checkpoint, restored where the run left off.

Saved at each checkpoint: Python's ``random``, NumPy's global state, torch's CPU generator
and every CUDA device's. Restored at the first training batch after a resume (not when the
checkpoint is loaded: the sanity-check validation and the creation of data iterators in
between would draw from them), so the model's own randomness (dropout, stochastic layers)
continues exactly where the uninterrupted run would be. Items of the training data have
their own seeds (:mod:`audioexp.data.resumable`).

The states are stored as tensors and plain values (NumPy's key as an int64 tensor, not an
``ndarray``), so that the checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from lightning import Callback

log = logging.getLogger(__name__)

__all__ = ["RNGStateCheckpoint", "get_rng_states", "set_rng_states", "numpy_state_to_plain", "numpy_state_from_plain"]


def numpy_state_to_plain() -> dict[str, Any]:
    """NumPy's global (legacy MT19937) state as a tensor and plain values.

    ``np.random.get_state()`` holds the 624-word key as a ``uint32`` ndarray, which
    ``torch.load(weights_only=True)`` refuses; the key travels as an int64 tensor instead.
    """
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def numpy_state_from_plain(state: dict[str, Any] | tuple) -> None:
    """Set NumPy's global state from :func:`numpy_state_to_plain`'s dict (or, from checkpoints
    written before it, the tuple of ``np.random.get_state()``)."""
    if isinstance(state, dict):
        key = torch.as_tensor(state["key"], dtype=torch.int64).numpy().astype(np.uint32)
        state = (state["bit_generator"], key, state["pos"], state["has_gauss"],
                 state["cached_gaussian"])
    np.random.set_state(state)


def get_rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": numpy_state_to_plain(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy_state_from_plain(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning("the checkpoint holds the RNG states of %d CUDA devices, this run has %d: not restored",
                        len(cuda), torch.cuda.device_count())


class RNGStateCheckpoint(Callback):
    """Save the RNG states with each checkpoint; restore them at the first batch after resuming."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "RNGStateCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        return {"rng_states": get_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng_states")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None
