"""The one registry of tasks that ``python -m audioexp task=NAME`` dispatches on."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

TaskFn = Callable[[DictConfig], dict[str, float]]
TASKS: dict[str, TaskFn] = {}


def register_task(name: str) -> Callable[[TaskFn], TaskFn]:
    """Decorator: make ``fn(cfg) -> metrics`` available as ``task=name``."""

    def decorate(fn: TaskFn) -> TaskFn:
        if name in TASKS and TASKS[name] is not fn:
            raise ValueError(f"task {name!r} is already registered by {TASKS[name].__module__}")
        TASKS[name] = fn
        return fn

    return decorate


def get_task(name: str) -> TaskFn:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {sorted(TASKS)}")
    return TASKS[name]
