"""One writer per run dir: a lock file naming the process that holds it.

Two runs started into the same ``hydra.run.dir`` would delete each other's checkpoints and
leave one run's config beside the other's results. :class:`RunDirLock` creates
``RUN/.lock`` exclusively (``O_CREAT | O_EXCL``) holding the pid, host and start time. A
lock whose process is gone (same host, pid not alive) is stale: it is taken over with a
warning. A live one, or one from another host (whose process cannot be checked from here),
stops the second run with an error saying who holds it and what to do.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["LOCK_FILE", "RunDirLock", "RunDirLockedError"]

LOCK_FILE = ".lock"


class RunDirLockedError(RuntimeError):
    """The run dir is being written by another live run."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunDirLock:
    """``RunDirLock(run_dir).acquire()`` ... ``.release()`` (also a context manager)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                pid, host = owner.get("pid"), owner.get("host")
                if pid == os.getpid() and host == me["host"]:
                    self.held = True  # this process (an earlier task of it) holds it already
                    return self
                if host == me["host"] and isinstance(pid, int) and _pid_alive(pid):
                    raise RunDirLockedError(
                        f"{self.path.parent} is in use by a running process (pid {pid} on {host}, started "
                        f"{owner.get('started')}): two runs in one dir would overwrite each other's checkpoints. "
                        "Wait for it, stop it, or give this run another hydra.run.dir"
                    ) from None
                if host not in (None, me["host"]):
                    raise RunDirLockedError(
                        f"{self.path.parent} is locked by pid {pid} on host {host} (started {owner.get('started')}), "
                        "which cannot be checked from here. If that run is over, delete "
                        f"{self.path} and start again"
                    ) from None
                log.warning("taking over the stale lock of %s (pid %s on %s is gone)", self.path.parent, pid, host)
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return self
        raise RunDirLockedError(f"could not lock {self.path.parent}: another process keeps taking the lock")

    def release(self) -> None:
        """Remove the lock if this process holds it (safe to call when it does not)."""
        owner = self._owner()
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
