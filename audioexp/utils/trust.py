"""What a run dir may make this process do: the targets its config may name, its checkpoints read as data.

A run dir (the output dir of ``task=train``) is code-adjacent input. ``eval.run_dir``,
``embed.run_dir``, ``embedder.run_dir`` and ``model.pretrained_run`` rebuild a model from
its ``resolved_config.yaml`` with ``hydra.utils.instantiate`` and load its checkpoint, so a
crafted file there could run arbitrary code: a pickle payload in ``last.ckpt``, or a
``_target_: os.system`` in the config. Two guards, both here:

- :func:`load_checkpoint`: ``torch.load(weights_only=True)``, which unpickles tensors and
  plain values only (the project's checkpoints hold nothing else, see
  :mod:`audioexp.utils.rng` and :class:`audioexp.utils.checkpoint_io.AtomicCheckpointIO`).
- :func:`check_targets`: every ``_target_`` of the saved config must be a class of the
  packages in :data:`TRUSTED_TARGET_PREFIXES`, or one of :data:`TRUSTED_FUNCTIONS`.

They close the direct routes, not every one: a trusted class given hostile arguments can
still write files (a logger's ``save_dir``, say). Only load run dirs you trust.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pickle
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

__all__ = [
    "TRUSTED_FUNCTIONS", "TRUSTED_TARGET_PREFIXES", "UntrustedConfigError", "check_targets",
    "checkpoint_globals", "load_checkpoint",
]

#: Packages whose classes a run dir's config may name: the project's own parts, the
#: torch modules and optimizers (``model.optimizer``/``model.scheduler`` are
#: ``torch.optim`` partials), and Lightning's trainer, callbacks, loggers and plugins.
TRUSTED_TARGET_PREFIXES: tuple[str, ...] = (
    "audioexp.", "torch.nn.", "torch.optim.", "torchaudio.", "torchmetrics.", "lightning.",
)

#: Functions (not classes) that the project's configs name as targets. Any other function,
#: method or builtin is refused: a function of a trusted module may still write a file or
#: unpickle one (``torch.load``, ``SomeModule.load_from_checkpoint``).
TRUSTED_FUNCTIONS: frozenset[str] = frozenset({
    "audioexp.minicorpus.prepare",  # the miniature corpora's ``prepare`` partial
    "audioexp.utils.loggers.wandb_logger",
})

RUN_DIR_NOTE = "a run dir is code-adjacent input: only load run dirs you trust"


class UntrustedConfigError(ValueError):
    """A run dir's config names a target that is not built from a run dir."""


def _walk_targets(node: Any, key: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every ``_target_`` in ``node``, at any depth of dicts and lists."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            path = f"{key}.{k}" if key else str(k)
            if k == "_target_":
                yield path, v
            else:
                yield from _walk_targets(v, path)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk_targets(v, f"{key}[{i}]")


def _locate(target: str) -> Any:
    """The object a dotted name imports to (as Hydra resolves it); raises ImportError or
    AttributeError when there is none."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attr in parts[n:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module of {target!r} can be imported")


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(f"{name}.".startswith(p) for p in prefixes)


def untrusted_reason(target: Any) -> str | None:
    """Why ``target`` is not built from a run dir, or None when it may be."""
    allowed = ", ".join(TRUSTED_TARGET_PREFIXES)
    if not isinstance(target, str):
        return f"a _target_ must be a dotted name (a string), not {type(target).__name__}"
    if not any(target.startswith(p) for p in TRUSTED_TARGET_PREFIXES):
        return f"only targets under {allowed} are built from a run dir"
    if any(not part or part.startswith("_") for part in target.split(".")):
        return "private or empty names are not built from a run dir"
    try:
        obj = _locate(target)
    except (ImportError, AttributeError):
        return None  # nothing to build: instantiating it fails without running anything
    if inspect.isclass(obj):
        # the name may reach another package through a module attribute (audioexp.x.subprocess.Popen)
        if not _within(obj.__module__, TRUSTED_TARGET_PREFIXES):
            return f"it is {obj.__module__}.{obj.__qualname__}, a class outside {allowed}"
        return None
    canonical = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
    if inspect.isfunction(obj) and canonical in TRUSTED_FUNCTIONS:
        return None
    return (f"it is {canonical} ({type(obj).__name__}); only classes, and the functions "
            f"{sorted(TRUSTED_FUNCTIONS)} (audioexp.utils.trust.TRUSTED_FUNCTIONS), are built from a run dir")


def check_targets(cfg: Any, source: str | os.PathLike) -> None:
    """Raise :class:`UntrustedConfigError` unless every ``_target_`` in ``cfg`` may be built.

    Walks the whole config (``_partial_`` nodes, lists, ``_args_``), interpolations
    resolved as ``hydra.utils.instantiate`` would see them. The error names the dotted key
    and ``source`` (the file the config came from).
    """
    container = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    for key, target in _walk_targets(container, ""):
        reason = untrusted_reason(target)
        if reason:
            raise UntrustedConfigError(f"refusing to build {key}={target!r} from {source}: {reason} ({RUN_DIR_NOTE})")


def _numpy_array_globals() -> list:
    """What a pickled NumPy array needs; checkpoints of audioexp before the RNG state was
    stored as tensors hold one (NumPy's MT19937 key)."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    numeric_dtypes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdFD"]  # not object arrays
    return [multiarray._reconstruct, np.ndarray, np.dtype, *numeric_dtypes]


@contextlib.contextmanager
def checkpoint_globals() -> Iterator[None]:
    """``weights_only`` loading that also accepts NumPy arrays of numbers (the unpickler
    still refuses any other global), so that checkpoints written before stay readable."""
    with torch.serialization.safe_globals(_numpy_array_globals()):
        yield


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint read as data: ``torch.load(weights_only=True)`` (see :func:`checkpoint_globals`).

    Raises ``pickle.UnpicklingError`` naming ``path`` when the file holds anything else
    (code, or objects of classes that are not tensors and plain values).
    """
    try:
        with checkpoint_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f"refusing to load {path}: it holds objects other than tensors and plain values, which "
            f"torch.load(weights_only=True) does not unpickle ({RUN_DIR_NOTE}). {err}"
        ) from err
