"""A method's model, built one way for training, evaluation, preflight and import.

``make_method`` resolves a plugin with its options from the configuration; ``build_model`` puts its
head on the configured backbone; ``feature_sizes`` probes the named feature maps once.
"""
from __future__ import annotations

from typing import Any

import torch

from bench.config.settings import Config, method_options
from methods import Method, get_method


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def make_method(name: str, config: Config) -> Method:
    cls = get_method(name)
    return cls(cls.make_config(method_options(config, name)))


def model_options(config: Config) -> dict[str, Any]:
    m = config.model
    return {"backbone": m.backbone, "pretrained": m.pretrained, "large_maps": m.large_maps, "width": m.width,
            "pretrained_path": m.pretrained_path or None}


def build_model(method: Method, config: Config, num_classes: int) -> torch.nn.Module:
    return method.build(num_classes, method.make_backbone(model_options(config)))


def feature_sizes(model: torch.nn.Module, image_size: int, device: torch.device,
                  needs_labels: bool = False) -> dict[str, tuple[int, int]]:
    """Spatial size of every named feature map, from one probe forward (labels only where the
    method's forward takes them, as everywhere in the harness)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, image_size, image_size, device=device),
                    labels=torch.zeros(2, dtype=torch.long, device=device) if needs_labels else None)
    model.train(was_training)
    return {k: tuple(v.shape[-2:]) for k, v in out.features.items() if v.dim() == 4}
