"""Datasets: every dataset decodes once into uint8 arrays with 68 landmarks per image.

A dataset is a function ``(DataConfig, seed) -> Splits`` registered under its name. Labels use
the canonical class order of ``au.CLASS_NAMES``.
"""
from bench.data.registry import DATASETS, Splits, dataset_names, load_dataset, register_dataset
from bench.data import synthetic_dataset as _synthetic  # noqa: F401  (registers "synthetic")
from bench.data import rafdb as _rafdb, affectnet as _affectnet, folder as _folder  # noqa: F401  (real datasets)

__all__ = ["DATASETS", "Splits", "dataset_names", "load_dataset", "register_dataset"]
