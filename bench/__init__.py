"""au-cam-bench: the harness (CLI, profiles, data, trainer, evaluator, executors, store, tables).

Nothing in this package branches on a method's name: method behaviour lives in ``methods/``.
"""
__version__ = "0.1.0"
