"""Datasets: every dataset decodes once into a shared memory-mapped cache, with 68 landmarks per image.

A dataset is a function ``(DataConfig, seed) -> Splits`` registered under its name. Labels use
the canonical class order of ``au.CLASS_NAMES``. ``feed`` delivers a split's batches to the
training device (``bench/data/feed.py``).
"""
from bench.data.arrays import Arrays, RowView
from bench.data.feed import SplitFeed, feed
from bench.data.registry import DATASETS, Splits, dataset_names, load_dataset, register_dataset
from bench.data import synthetic_dataset as _synthetic  # noqa: F401  (registers "synthetic")
from bench.data import rafdb as _rafdb, affectnet as _affectnet, folder as _folder  # noqa: F401  (real datasets)

__all__ = ["DATASETS", "Arrays", "RowView", "SplitFeed", "Splits", "dataset_names", "feed", "load_dataset",
           "register_dataset"]
