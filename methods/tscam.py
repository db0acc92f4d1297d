"""TS-CAM (Gao et al., 2021): token semantic coupled attention maps on a DeiT.

Head (semantic re-allocation): the patch tokens after the final LayerNorm, as a (B, D, h, w) grid,
go through a 3x3 conv to K semantic maps S; logits = GAP(S); plain cross-entropy. The cls token
stays in the sequence but its output is not classified.

CAM (coupling): CAM_c = A* ⊙ S_c, where A* is the cls->patch attention averaged over heads and
summed over blocks. It is computed for each sample's own target in one batched pass (the reference
indexes ``cams[:, labels]``, which is only right at batch size 1). Attention probabilities are only
computed in ``explain`` (``ViTFeatures.record_attention``); training keeps the fused kernel.

Alignment layer ``tokens``: the residual-stream patch tokens of block ``align_block`` (default: the
last block, before the final LayerNorm). The reference aligns the tokens after the final LayerNorm
(our ``final`` map), whose channel mean is nearly flat (mean(beta) + mean(gamma·ẑ)), so T_l carries
little spatial signal; the residual stream keeps it. ``final`` and A* (``attention``, in ``explain``
only) are still returned, so ATT-COS reports the reference's layers 1 and 2 as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from backbones.base import PretrainedWeightsError
from backbones.vit import ViTFeatures
from methods.base import Method, Output
from methods.heads import pick
from methods.registry import register


def couple(attention: torch.Tensor, semantic: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A* (B, h, w) ⊙ S[b, target[b]] -> (B, h, w): each sample's own class, no loop."""
    return attention * pick(semantic, target)


class TSCAMNet(nn.Module):
    def __init__(self, backbone: ViTFeatures, num_classes: int, align_block: int):
        super().__init__()
        self.backbone = backbone
        depth = len(backbone.vit.blocks)
        index = align_block if align_block > 0 else depth + 1 + align_block
        if not 1 <= index <= depth:
            raise ValueError(f"tscam align_block={align_block} is outside 1..{depth} (or -1..-{depth} from the end)")
        self.align_name = f"block{index}"
        self.head = nn.Conv2d(backbone.embed_dim, num_classes, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        maps = self.backbone(x)
        semantic = self.head(maps["final"])
        features = {"tokens": maps[self.align_name], "final": maps["final"]}
        if "attention" in maps:
            features["attention"] = maps["attention"]
        return Output(logits=semantic.mean(dim=(2, 3)), features=features, cams=semantic)

    def class_map(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        if "attention" not in output.features:
            raise RuntimeError("TS-CAM maps need attention: run the forward inside backbone.record_attention()")
        return couple(output.features["attention"][:, 0], output.cams, target)


@register
class TSCAM(Method):
    name = "tscam"
    title = "TS-CAM"
    family = "transformer"
    alignment_layers = ("tokens",)

    @dataclass(frozen=True)
    class Config:
        model: str = "deit_small_patch16_224"  # timm ViT/DeiT (the paper: DeiT-S/16)
        image_size: int = 224      # build size of the position grid; other inputs interpolate it
        patch_size: int = 0        # 0: the timm model's own (16)
        embed_dim: int = 0         # 0: the model's own (DeiT-S 384)
        depth: int = 0             # 0: the model's own (12)
        num_heads: int = 0         # 0: the model's own (6)
        drop_path: float = 0.1     # stochastic depth (TS-CAM's setting)
        pretrained_path: str = ""  # local weight file; with model.pretrained=true and no file: timm hub
        align_block: int = -1      # residual-stream block aligned and reported as ``tokens`` (-1: last)

    def make_backbone(self, options: dict[str, Any]) -> nn.Module:
        """A timm ViT from this method's Config; ``model.pretrained`` switches its ImageNet weights."""
        c = self.config
        sizes = {"patch_size": c.patch_size, "embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads}
        try:
            return ViTFeatures(c.model, pretrained=bool(options.get("pretrained")),
                               pretrained_path=c.pretrained_path or None, img_size=c.image_size,
                               drop_path_rate=c.drop_path, **{k: v for k, v in sizes.items() if v})
        except PretrainedWeightsError as exc:
            raise PretrainedWeightsError(
                f"{exc}; train from scratch with --set model.pretrained=false, or point "
                "--set methods.tscam.pretrained_path=FILE at a local weight file") from None

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        return TSCAMNet(backbone, num_classes, self.config.align_block)

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[Output, torch.Tensor]:
        with torch.no_grad(), model.backbone.record_attention():
            output = model(x)
        return output, model.class_map(output, target)

    @classmethod
    def conformance_options(cls) -> dict[str, Any]:
        return {"image_size": 32, "model": {"backbone": "vit_tiny_patch16_224", "pretrained": False},
                "method": {"model": "vit_tiny_patch16_224", "image_size": 32, "patch_size": 8,
                           "embed_dim": 48, "depth": 2, "num_heads": 3, "drop_path": 0.0}}
