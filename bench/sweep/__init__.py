"""Sweeps: preflight, the jobs (train, evaluate) and the executors that run them (Ray Tune or in-process)."""
