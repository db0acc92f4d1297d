"""Backbone registry: name -> factory(**options) -> Backbone."""
from __future__ import annotations

from typing import Callable

from backbones.base import Backbone

BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(*names: str):
    def wrap(factory: Callable[..., Backbone]):
        for name in names:
            BACKBONES[name] = factory
        return factory
    return wrap


def build_backbone(name: str, **options) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))} (set model.backbone)")
    return BACKBONES[name](name=name, **options)
