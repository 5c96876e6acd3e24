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
