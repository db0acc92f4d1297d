"""IR-50, the face-recognition ResNet of face.evoLVe (mode ``ir``: units 3/4/14/3, PReLU).

APViT uses stages 1-3: at 112 px the stem keeps 112x112 and every stage halves the size, so
``stage3`` is 256x14x14. Module names (``input_layer``, a flat ``body`` of units, ``shortcut_layer``
and ``res_layer`` inside each unit) follow face.evoLVe so that ``backbone_ir50_ms1m_epoch120.pth``
loads as is; its ``output_layer`` and any unit beyond the built stages are ignored.

``units`` and ``widths`` shrink the net for CPU profiles (pretrained weights need the defaults).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from backbones.base import Backbone, PretrainedWeightsError
from backbones.registry import register_backbone, split_tag

IR50_UNITS = (3, 4, 14, 3)
IR50_WIDTHS = (64, 128, 256, 512)


class BottleneckIR(nn.Module):
    """BN -> conv3x3 -> PReLU -> conv3x3 (stride) -> BN, plus a (projected) shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IR50(Backbone):
    """Stages 1..``stages`` of IR-50; maps ``stage1`` .. ``stageN`` (strides 2, 4, 8, 16)."""

    def __init__(self, name: str = "ir50", stages: int = 3, units: tuple[int, ...] = IR50_UNITS,
                 widths: tuple[int, ...] = IR50_WIDTHS, pretrained_path: str | None = None,
                 pretrained: bool = False):
        super().__init__()
        if not 1 <= stages <= 4:
            raise ValueError(f"IR-50 has 4 stages (got stages={stages})")
        units, widths = tuple(units)[:stages], tuple(widths)[:stages]
        if pretrained and not pretrained_path:
            raise PretrainedWeightsError(
                "IR-50 MS1M weights are not on any model hub; download backbone_ir50_ms1m_epoch120.pth "
                "(face.evoLVe's model zoo) and give it with --set model.pretrained_path=FILE")
        stem = widths[0]      # 64 in IR-50: the stem is as wide as stage 1
        self.input_layer = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem),
                                         nn.PReLU(stem))
        body, self.bounds, in_channel, start = [], [], stem, 0
        for n, depth in zip(units, widths):
            body.append(BottleneckIR(in_channel, depth, 2))
            body.extend(BottleneckIR(depth, depth, 1) for _ in range(n - 1))
            in_channel = depth
            self.bounds.append((start, start + n))
            start += n
        self.body = nn.Sequential(*body)
        self.channels = {f"stage{i + 1}": w for i, w in enumerate(widths)}
        if pretrained_path:
            self.load_weights(pretrained_path)

    def load_weights(self, path: str) -> None:
        """Load a face.evoLVe IR-50 state dict (extra units and ``output_layer`` are ignored)."""
        file = Path(path).expanduser()
        if not file.is_file():
            raise PretrainedWeightsError(
                f"IR-50 weights not found at {file}; download backbone_ir50_ms1m_epoch120.pth "
                "(face.evoLVe, MS1M) there")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
            state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
            own = self.state_dict()
            missing = [k for k in own if k not in state]
            if missing:
                raise ValueError(f"missing {len(missing)} keys, e.g. {missing[0]}")
            self.load_state_dict({k: state[k] for k in own})
        except Exception as exc:  # corrupt file, wrong architecture or widths
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PretrainedWeightsError(f"could not load IR-50 weights from {file} ({reason[:200]})") from exc

    def layer_module(self, name: str) -> nn.Module:
        if name not in self.channels:
            raise ValueError(f"unknown layer {name!r}; IR-50 layers: {', '.join(self.channels)}")
        _, stop = self.bounds[int(name[5:]) - 1]
        return self.body[stop - 1]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input_layer(x)
        out = {}
        for i, (start, stop) in enumerate(self.bounds):
            for unit in self.body[start:stop]:
                x = unit(x)
            out[f"stage{i + 1}"] = x
        return out


@register_backbone("ir50")
def ir50(name: str, **options) -> IR50:
    if split_tag(name)[1]:
        raise ValueError(f"{name}: IR-50 has no timm weight tags; give its weight file as model.pretrained_path")
    options.pop("large_maps", None)      # CNN options of the generic model section that IR-50 lacks
    width = options.pop("width", 1.0)
    if width != 1.0:
        options["widths"] = tuple(max(8, int(round(w * width))) for w in IR50_WIDTHS)
    return IR50(name=name, **options)
