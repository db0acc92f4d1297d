"""Feature extractors that return named feature maps (``layer1`` .. ``layer5`` for ResNets).

Backbones know nothing about AUs or methods: a method plugin builds its head on top of the maps.
"""
from backbones.base import Backbone, PretrainedWeightsError
from backbones.registry import BACKBONES, build_backbone, register_backbone
from backbones import resnet as _resnet  # noqa: F401  (registers the ResNets)
from backbones import vit as _vit, ir50 as _ir50  # noqa: F401,E401  (registers ViT/DeiT and IR-50)

__all__ = ["Backbone", "PretrainedWeightsError", "BACKBONES", "build_backbone", "register_backbone"]
