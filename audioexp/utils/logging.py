"""Logging helpers: rank-zero loggers and messages said once per process."""

from __future__ import annotations

import logging
import threading

_said: set[str] = set()
_lock = threading.Lock()


def log_once(logger: logging.Logger, key: str, message: str, *args, level: int = logging.INFO) -> bool:
    """Log ``message`` the first time ``key`` is seen in this process; return whether it logged.

    Used for conversions applied to many files (resampling, down-mixing): the user is
    told once, not once per file.
    """
    with _lock:
        if key in _said:
            return False
        _said.add(key)
    logger.log(level, message, *args)
    return True


def reset_log_once() -> None:
    """Forget what was said (tests)."""
    with _lock:
        _said.clear()


def route_library_logs_to_root(names: tuple[str, ...] = ("lightning", "lightning.pytorch", "lightning.fabric")) -> None:
    """Let Lightning's records reach the console once, through the root logger's handlers.

    ``import lightning`` adds a console handler of its own to the ``lightning`` logger and
    still propagates to the root, where Hydra's console and file handlers are: every
    Lightning message was printed twice. Its console handlers are dropped here (only when
    the root logger has handlers of its own, so nothing goes silent).
    """
    import lightning  # noqa: F401  (its import adds the handlers removed below)

    if not logging.getLogger().hasHandlers():
        return
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
