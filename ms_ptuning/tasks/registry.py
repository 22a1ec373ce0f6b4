"""Task name → Task class. Each task module registers its classes here."""

import difflib

from .base import TaskDataError

TASKS = {}


def register(*task_classes):
    for task_class in task_classes:
        if task_class.name in TASKS:
            raise ValueError(f"task name {task_class.name!r} registered twice")
        TASKS[task_class.name] = task_class


def get_task(name: str):
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise TaskDataError(f"unknown task {name!r}{hint}; known tasks: {', '.join(sorted(TASKS)) or '(none)'}")
    return TASKS[name]()
