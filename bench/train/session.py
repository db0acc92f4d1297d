"""A training session: data, method, model, optimiser and step, built once from a cell and its config."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.config.settings import Config
from bench.data import load_dataset
from bench.train.model import build_model, feature_sizes, make_method, pick_device
from bench.train.optim import make_optimizer
from bench.train.step import TrainStep
from methods import Method


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Session:
    """Everything one training run needs, built once from a spec's method/dataset/seed/config."""

    config: Config
    device: torch.device
    data: Any
    trained: Method
    model: torch.nn.Module
    align_layers: tuple[str, ...]
    step: TrainStep
    scheduler: Any
    generator: torch.Generator


def use_deterministic_kernels(on: bool) -> None:
    """Set per trial (the switch is process-wide and Ray reuses worker processes). On CUDA, some
    backward kernels (atomic adds in pooling and interpolation) differ from run to run unless this
    is on; cuBLAS then needs a fixed workspace, set before CUDA starts in this process."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.benchmark = False


def build_session(method: str, dataset: str, seed: int, config: Config, align: bool, data: Any = None) -> Session:
    """``data``: the splits when the caller already loaded them (the job checks their identity first)."""
    seed_everything(seed)
    device = pick_device()
    use_deterministic_kernels(config.train.deterministic)
    data = data if data is not None else load_dataset(dataset, config.data, seed)
    trained = make_method(method, config)
    model = build_model(trained, config, data.num_classes).to(device)
    if device.type == "cuda" and config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    align_layers = tuple(config.au.layers) or trained.alignment_layers
    sizes = feature_sizes(model, config.data.image_size, device, trained.needs_labels)
    missing = [name for name in align_layers if name not in sizes]
    if missing:
        raise ValueError(f"alignment layer(s) {missing} not among the model's maps {list(sizes)} (set au.layers)")
    optimizer, scheduler = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    step = TrainStep(trained, model, optimizer, config, device, align, align_layers, sizes, generator)
    return Session(config, device, data, trained, model, align_layers, step, scheduler, generator)
