"""timm ResNet-18/34/50 exposing the paper's five feature levels.

The name may carry a timm weight tag (``resnet50.tv_in1k``: torchvision's ImageNet weights, as the
reference used; see ``backbones.registry``).

Names follow the paper (and the reference's feature indices 1..5):
``layer1`` = stem (conv1+bn+relu, /2), ``layer2`` = maxpool+layer1 (/4), ``layer3`` = layer2 (/8),
``layer4`` = layer3 (/16), ``layer5`` = torchvision's ``layer4`` (/32), the paper's "layer 5".

``large_maps`` sets the stride of layer3 and layer4 (torchvision names) to 1 without dilation, as
the reference does, so layer5 is 28x28 at 224 px; only strides change, so pretrained weights
load unchanged. ``width`` scales all channel counts (demo/smoke profiles use narrow nets on CPU;
pretrained weights need width 1).
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from backbones.base import Backbone, PretrainedWeightsError
from backbones.registry import check_timm_tag, register_backbone

_BASE_CHANNELS = (64, 128, 256, 512)


def _unit_stride(block: nn.Module) -> None:
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)
        if isinstance(module, nn.AvgPool2d) and module.stride not in (1, (1, 1)):
            module.stride = 1  # avg-down variants


def create_timm(name: str, pretrained: bool, pretrained_path: str | None, **kwargs) -> nn.Module:
    """timm.create_model with an optional local weight file and a one-line error on failure."""
    overlay = {"file": pretrained_path} if pretrained_path else None
    try:
        return timm.create_model(
            name, pretrained=pretrained or bool(pretrained_path), pretrained_cfg_overlay=overlay, **kwargs
        )
    except Exception as exc:  # network, missing file, wrong shapes
        if not (pretrained or pretrained_path):
            raise
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise PretrainedWeightsError(
            f"could not load pretrained weights for {name} ({reason[:200]}); "
            "train from scratch with --set model.pretrained=false, or point --set "
            "model.pretrained_path=FILE at a local weight file"
        ) from exc


class ResNetFeatures(Backbone):
    def __init__(self, name: str = "resnet50", pretrained: bool = False, large_maps: bool = False,
                 width: float = 1.0, pretrained_path: str | None = None, in_chans: int = 3):
        super().__init__()
        kwargs: dict = {"num_classes": 0, "global_pool": "", "in_chans": in_chans}
        if width != 1.0:
            if pretrained or pretrained_path:
                raise PretrainedWeightsError(
                    f"pretrained {name} weights need model.width=1 (got {width}); "
                    "use --set model.width=1 or --set model.pretrained=false"
                )
            kwargs["channels"] = tuple(max(8, int(round(c * width))) for c in _BASE_CHANNELS)
        net = create_timm(name, pretrained, pretrained_path, **kwargs)
        if large_maps:
            _unit_stride(net.layer3[0])
            _unit_stride(net.layer4[0])
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act1)
        self.maxpool = net.maxpool
        self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = {"layer1": net.bn1.num_features}
        for i, stage in enumerate(self.stages):
            last_bn = [m for m in stage[-1].modules() if isinstance(m, nn.BatchNorm2d)][-1]
            self.channels[f"layer{i + 2}"] = last_bn.num_features
        self.large_maps = large_maps

    def layer_module(self, name: str) -> nn.Module:
        modules = {"layer1": self.stem, **{f"layer{i + 2}": stage for i, stage in enumerate(self.stages)}}
        if name not in modules:
            raise ValueError(f"unknown layer {name!r}; ResNet layers: {', '.join(modules)}")
        return modules[name]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.stem(x)
        out["layer1"] = x
        x = self.maxpool(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[f"layer{i + 2}"] = x
        return out


@register_backbone("resnet18", "resnet34", "resnet50")
def resnet(name: str, **options) -> ResNetFeatures:
    check_timm_tag(name)
    return ResNetFeatures(name=name, **options)
