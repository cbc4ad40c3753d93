"""innerloop.engine: tasks, models, algorithms, trainer and run directories.

Submodules are imported on demand (``innerloop.engine.tasks`` etc.) so that lower layers can
import :mod:`innerloop.engine.errors` without pulling in the whole engine.
"""
