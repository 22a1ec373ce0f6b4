"""Task name → Task class. Each task module adds its classes here."""

TASKS = {}


def get_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS)) or '(none)'}")
    return TASKS[name]()
