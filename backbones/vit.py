"""timm ViT/DeiT returning named patch-token maps, with attention probabilities on request.

``forward(x)`` returns ``block1`` .. ``blockN`` (each block's residual-stream output, patch tokens
only, reshaped to (B, D, h, w)) and ``final`` (the same tokens after the final LayerNorm). Prefix
tokens (cls, distillation, registers) are dropped using the model's own ``num_prefix_tokens``, and
the grid comes from the input size and the model's patch size, so nothing assumes 14x14.

Softmax attention probabilities are not visible in timm's fused (SDPA) kernel. They are computed
only inside ``record_attention()``: the blocks switch to timm's explicit path for that pass and a
hook on each ``attn_drop`` reads its input (post-softmax, pre-dropout). The forward then also returns
``attention``: the cls->patch attention averaged over heads and summed over blocks (TS-CAM's
semantic-agnostic map A*, (B, 1, h, w)). Outside the context the fast fused path runs unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import timm
import torch
from torch import nn

from backbones.base import Backbone, PretrainedWeightsError
from backbones.registry import check_timm_tag, register_backbone

VIT_MODELS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
              "vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224")


def cls_attention_map(probs: list[torch.Tensor] | torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Σ_blocks mean_heads P[:, :, 0, prefix:] -> (B, 1, h, w): the cls row over the patch columns.

    ``probs`` is a list (or stack on dim 0) of per-block softmax attention (B, heads, N, N).
    """
    total = None
    for p in probs:
        row = p[:, :, 0, prefix:].mean(1)
        total = row if total is None else total + row
    return total.reshape(total.shape[0], 1, *grid)


class ViTFeatures(Backbone):
    """A timm VisionTransformer (no classifier) exposing per-block patch-token maps."""

    def __init__(self, name: str = "deit_small_patch16_224", pretrained: bool = False,
                 pretrained_path: str | None = None, img_size: int = 224, **kwargs):
        super().__init__()
        check_timm_tag(name)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        try:
            self.vit = timm.create_model(
                name, pretrained=pretrained or bool(pretrained_path), num_classes=0,
                img_size=img_size, dynamic_img_size=True,
                pretrained_cfg_overlay={"file": pretrained_path} if pretrained_path else None, **kwargs)
        except Exception as exc:  # network, missing file, wrong shapes
            if not (pretrained or pretrained_path):
                raise
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise PretrainedWeightsError(
                f"could not load pretrained weights for {name} ({reason[:200]})") from exc
        self.prefix = self.vit.num_prefix_tokens
        self.patch_size = tuple(self.vit.patch_embed.patch_size)
        self.embed_dim = self.vit.embed_dim
        depth = len(self.vit.blocks)
        self.channels = {f"block{i + 1}": self.embed_dim for i in range(depth)}
        self.channels["final"] = self.embed_dim
        self._recording: dict | None = None

    def layer_module(self, name: str) -> nn.Module:
        if name == "final":
            return self.vit.norm
        if name.startswith("block") and name[5:].isdigit() and 1 <= int(name[5:]) <= len(self.vit.blocks):
            return self.vit.blocks[int(name[5:]) - 1]
        raise ValueError(f"unknown layer {name!r}; ViT layers: {', '.join(self.channels)}")

    @contextmanager
    def record_attention(self, keep_probs: bool = False) -> Iterator[list[torch.Tensor]]:
        """Within the context, forwards compute attention explicitly and return ``attention``.

        Yields a list that receives every block's probabilities (B, heads, N, N) when
        ``keep_probs`` (otherwise only the cls row is kept, which saves memory at eval).
        """
        probs: list[torch.Tensor] = []
        state = {"rows": [], "probs": probs, "keep": keep_probs}
        handles, fused = [], []

        def hook(_module, inputs, _output):
            p = inputs[0]
            state["rows"].append(p[:, :, :1])          # cls row (B, heads, 1, N)
            if state["keep"]:
                probs.append(p)

        for blk in self.vit.blocks:
            fused.append(blk.attn.fused_attn)
            blk.attn.fused_attn = False
            handles.append(blk.attn.attn_drop.register_forward_hook(hook))
        self._recording = state
        try:
            yield probs
        finally:
            self._recording = None
            for handle in handles:
                handle.remove()
            for blk, flag in zip(self.vit.blocks, fused):
                blk.attn.fused_attn = flag

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        B, _, H, W = x.shape
        grid = (H // self.patch_size[0], W // self.patch_size[1])
        vit = self.vit
        if self._recording is not None:
            self._recording["rows"].clear()
        t = vit.patch_embed(x)
        t = vit._pos_embed(t)
        t = vit.patch_drop(t)
        t = vit.norm_pre(t)
        out: dict[str, torch.Tensor] = {}
        for i, blk in enumerate(vit.blocks):
            t = blk(t)
            out[f"block{i + 1}"] = self._grid(t, grid)
        out["final"] = self._grid(vit.norm(t), grid)
        if self._recording is not None:
            out["attention"] = cls_attention_map(self._recording["rows"], self.prefix, grid)
        return out

    def _grid(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, prefix + h·w, D) -> (B, D, h, w), dropping the prefix tokens."""
        patches = tokens[:, self.prefix:]
        return patches.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)


@register_backbone(*VIT_MODELS)
def vit(name: str, **options) -> ViTFeatures:
    options.pop("large_maps", None)      # CNN-only options of the generic model section
    width = options.pop("width", 1.0)
    if width != 1.0:
        raise ValueError(f"{name}: set embed_dim/depth instead of model.width for ViTs (got width={width})")
    return ViTFeatures(name=name, **options)
