"""Backbone registry: name -> factory(**options) -> Backbone.

Names take timm's ``name.tag`` form: the tag picks one pretrained weight set of the architecture
(``resnet50.tv_in1k`` = torchvision's ImageNet weights, the reference's; plain ``resnet50`` is
timm's default, ``a1_in1k``). Factories are registered under the architecture name; the full name,
tag included, reaches the factory, which passes it to timm.
"""
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


def split_tag(name: str) -> tuple[str, str]:
    """``"resnet50.tv_in1k"`` -> ``("resnet50", "tv_in1k")``; no tag -> ``(name, "")``."""
    architecture, _, tag = name.partition(".")
    return architecture, tag


def check_timm_tag(name: str) -> None:
    """A tag must be one of timm's pretrained tags for the architecture (one line listing them)."""
    import timm

    architecture, tag = split_tag(name)
    if not tag:
        return
    known = timm.list_pretrained(f"{architecture}.*")
    if name not in known:
        tags = ", ".join(k.partition(".")[2] for k in known) or "none"
        raise ValueError(f"unknown weight tag {tag!r} for {architecture} (timm tags: {tags}); "
                         f"set model.backbone={architecture}.<tag> or drop the tag")


def build_backbone(name: str, **options) -> Backbone:
    architecture, _ = split_tag(name)
    if architecture not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))} "
                         "(optionally with a timm weight tag, e.g. resnet50.tv_in1k; set model.backbone)")
    return BACKBONES[architecture](name=name, **options)
