"""Tasks: how a dataset is read from local files, encoded for a head and scored.

`get_task(name)` returns a `Task`; `TASKS` maps every task name to its class.
"""

from .base import Task, TaskDataError
from .registry import TASKS, get_task
# each module registers its tasks in TASKS
from . import custom, glue, ner, rotten_tomatoes, squad, srl, superglue  # noqa: F401

__all__ = ["Task", "TaskDataError", "TASKS", "get_task"]
