"""The method-plugin contract.

A plugin is a subclass of :class:`Method` registered with ``@register``. It owns everything
method-specific: how its model is built on a backbone, its loss, its batch mixing and how its CAM
is extracted. The harness (``bench/``) only ever calls these hooks, so it never branches on a
method's name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


@dataclass
class Output:
    """What every model's ``forward(x, labels=None)`` returns."""

    logits: Tensor                       # (B, K)
    features: dict[str, Tensor]          # named maps (B, C, h, w): what T_l is computed from
    cams: Tensor | None = None           # (B, K, h, w) class maps when the head has them natively
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """One training/evaluation batch, already on the device.

    ``au_maps`` holds the AU map rendered at each alignment layer's size, keyed by (h, w); a
    ``mix`` that moves pixels (CutMix) must move these maps and ``au_valid`` the same way.
    """

    images: Tensor                       # (B, 3, H, W) float, normalised
    labels: Tensor                       # (B,) long
    landmarks: Tensor                    # (B, 68, 2) in image pixels, NaN when missing
    au_maps: dict[tuple[int, int], Tensor] = field(default_factory=dict)
    au_valid: Tensor | None = None       # (B,) bool
    extras: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes) -> "Batch":
        return dataclasses.replace(self, **changes)


class Method:
    """Base class of all method plugins. Subclasses set the class attributes and ``build``."""

    name: ClassVar[str]                          # registry key, lower case
    title: ClassVar[str]                         # label in tables
    family: ClassVar[str] = "cnn"                # "cnn" | "transformer"
    #: Post-hoc extractors name the method whose trained model they evaluate (e.g. "cam").
    trains_like: ClassVar[str | None] = None
    #: Feature maps that the AU loss and ATT-COS use unless the profile overrides them.
    alignment_layers: ClassVar[tuple[str, ...]] = ("layer5",)
    #: Whether the model's forward uses the labels (at train and eval), e.g. ACoL's erasing.
    needs_labels: ClassVar[bool] = False
    #: "class" (a map per class) or "class-agnostic" (one map whatever the target, e.g. APViT's
    #: attention): tables footnote CAM-COS of class-agnostic maps, which the paper prints as "—".
    cam_kind: ClassVar[str] = "class"
    #: Spatial size of ``explain``'s CAM: None = the grid of ``alignment_layers[0]``, "input" = the
    #: image's (H, W), the name of another feature map, or a fixed (h, w). The conformance suite checks it.
    cam_size: ClassVar[str | tuple[int, int] | None] = None
    #: The plugin's version in result identity (``methods.plugin_origin``); None = its distribution's
    #: version, or a hash of its source when it is not packaged.
    version: ClassVar[str | None] = None

    @dataclass(frozen=True)
    class Config:
        """The method's hyperparameters (none for the base)."""

    def __init__(self, config: "Method.Config | None" = None):
        self.config = config if config is not None else self.Config()

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def make_config(cls, values: dict[str, Any] | None = None) -> "Method.Config":
        """Build ``Config`` from a dict: unknown keys and values of the wrong type are ``OptionError``s
        (one line naming ``methods.<name>.<field>``), the same coercion as every harness setting."""
        from methods.options import build_dataclass

        return build_dataclass(cls.Config, dict(values or {}), f"methods.{cls.name}")

    def make_backbone(self, options: dict[str, Any]) -> nn.Module:
        """The feature extractor this method sits on (default: the profile's ``model`` section).

        Transformer methods override this to build their own backbone from their ``Config``.
        """
        from backbones import build_backbone

        options = dict(options)
        return build_backbone(options.pop("backbone"), **options)

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def conformance_options(cls) -> dict[str, Any]:
        """Small, fast settings for the conformance suite (CPU, random init)."""
        return {"image_size": 32,
                "model": {"backbone": "resnet18", "width": 0.125, "large_maps": True, "pretrained": False}}

    # --- training hooks ---------------------------------------------------------------------
    def loss(self, output: Output, batch: Batch) -> Tensor:
        """Classification loss (default: cross-entropy)."""
        return F.cross_entropy(output.logits, batch.labels)

    def mix(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Batch-level transform before the forward (default: identity)."""
        return batch

    # --- explanation ------------------------------------------------------------------------
    def explain(self, model: nn.Module, x: Tensor, target: Tensor) -> tuple[Output, Tensor]:
        """One batched pass: the model output and the raw CAM of ``target`` per sample (B, h, w).

        Default: a no-grad forward and the model's built-in class map. Gradient-based extractors
        override this with one forward plus one backward for the whole batch.
        """
        with torch.no_grad():
            output = model(x, labels=target if self.needs_labels else None)
            return output, model.class_map(output, target)

    def cam(self, model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
        return self.explain(model, x, target)[1]

    # --- description --------------------------------------------------------------------------
    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return dataclasses.asdict(cls.Config())

    @classmethod
    def train_group(cls) -> str:
        """The method whose training run this method's evaluation shares."""
        return cls.trains_like or cls.name
