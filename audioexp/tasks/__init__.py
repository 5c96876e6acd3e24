"""Tasks: ``train`` and ``evaluate`` here; later papers register theirs in the same registry."""

from audioexp.tasks import evaluate, train  # noqa: F401  (registers the tasks)
from audioexp.tasks.registry import TASKS, get_task, register_task

__all__ = ["TASKS", "get_task", "register_task"]
