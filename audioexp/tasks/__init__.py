"""Tasks: ``train``, ``evaluate`` and ``embed``; later papers register theirs in the same registry."""

from audioexp.tasks import embed, evaluate, train  # noqa: F401  (registers the tasks)
from audioexp.tasks import probe  # noqa: F401  (task=probe)
from audioexp.tasks import aggregate  # noqa: F401  (task=aggregate)
from audioexp.tasks import fit_gmm  # noqa: F401  (task=fit_gmm)
from audioexp.tasks import predict  # noqa: F401  (task=predict)
from audioexp.tasks import shards  # noqa: F401  (task=shards)
from audioexp.tasks.registry import TASKS, get_task, register_task

__all__ = ["TASKS", "get_task", "register_task"]
