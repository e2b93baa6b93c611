"""Keep the garbage collector off the objects that live as long as the process.

Why: joblib's loky workers call ``gc.collect()`` after a task whenever a second has passed
since the last one (when ``psutil`` is not installed, as here). With torch, MLflow, SQLAlchemy,
matplotlib and Hydra imported, a worker tracks about half a million objects, and a full
collection takes 0.3-0.7 s: as long as one small run. So every job in a worker paid about one
run's time again, and two workers were slower than one. :func:`freeze_once` moves the objects
alive after the first job (modules, classes, caches) into the permanent generation
(:func:`gc.freeze`, Python ≥ 3.7), so later collections only walk what the jobs create.
"""

import gc

_jobs_started = 0


def freeze_once() -> None:
    """Call at the start of every job: at the second job of a process, collect and freeze.

    The first job imports what the jobs need (torch, MLflow, the problems); freezing before
    it would miss those, and a collection first keeps the first job's garbage out of the
    permanent generation.
    """
    global _jobs_started
    _jobs_started += 1
    if _jobs_started == 2:
        gc.collect()
        gc.freeze()
