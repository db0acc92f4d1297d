"""APViT (Xue et al., 2022): IR-50 stem, attentive patch pooling, a ViT with attentive token pooling.

Pipeline: IR-50 stages 1-3 (256x14x14 at 112 px) -> 1x1 conv to the ViT width (X) -> attention map
a = Σ_c |X_c| -> APP keeps the top ``keep_tokens`` (160 of 196) patch tokens by a, in spatial
order, after adding their position embeddings -> cls token -> ViT (depth 8, width 768, 8 heads,
mlp 3, no qkv bias) whose last ``pool_blocks`` blocks keep ``keep_rate`` (0.9) of the patch tokens,
scored by the cls row of the pre-softmax attention summed over heads, after the attention residual
and before the MLP (160 -> 144 -> 129 -> 116 -> 104) -> final LN -> cls -> linear -> CE.

Inputs of another size are resized to ``input_size`` inside the model, so the paper profile can feed
224 px images while APViT runs at its 112 px (AU maps are rendered from landmarks at each map's
size, so they follow). Alignment layer: the IR-50 stage-3 map, as the reference; token maps inside
the ViT are gappy after pooling.

APViT has no class-specific map. The reference uses a (class-agnostic) as its "CAM" and the paper
prints "—" for its CAM-COS. ``explain`` returns a, the same for every target, so CAM-COS for
APViT means "cosine of the APP attention map with the AU map", not a class map's alignment.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from backbones.base import PretrainedWeightsError
from backbones.ir50 import IR50, IR50_UNITS, IR50_WIDTHS
from methods.base import Method, Output
from methods.registry import register


def attentive_patch_pooling(x: torch.Tensor, pos: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """APP: (B, D, h, w) map -> its top-``keep`` tokens by Σ|x| in spatial order.

    Returns (tokens (B, keep, D) with ``pos`` (1, h·w, D) added, their grid indices (B, keep),
    the attention map a (B, h, w)). The selection carries no gradient; the kept tokens do.
    """
    B, D, h, w = x.shape
    a = x.abs().sum(1)
    index = a.flatten(1).topk(min(keep, h * w), dim=1).indices.sort(dim=1).values
    tokens = x.flatten(2).transpose(1, 2) + pos
    return tokens.gather(1, index[..., None].expand(-1, -1, D)), index, a


class PoolingBlock(Block):
    """A timm ViT block (same parameter names, so ViT weights load) with attentive token pooling.

    ``keep_rate`` < 1 drops patch tokens after the attention residual, before the MLP; the cls
    token always stays. The fused kernel does the attention; only the cls row of the scores is
    computed explicitly for the ranking.
    """

    def forward(self, x: torch.Tensor, index: torch.Tensor, keep_rate: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        attn = self.attn
        B, N, D = x.shape
        qkv = attn.qkv(self.norm1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if self.training else 0.0)
        out = attn.proj_drop(attn.proj(out.transpose(1, 2).reshape(B, N, attn.attn_dim)))
        x = x + self.drop_path1(self.ls1(out))
        if keep_rate < 1:
            keep = int((N - 1) * keep_rate)
            score = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).sum(1)[:, 0, 1:]   # (B, N-1)
            order = score.topk(keep, dim=1).indices.sort(dim=1).values
            patches = x[:, 1:].gather(1, order[..., None].expand(-1, -1, D))
            x = torch.cat([x[:, :1], patches], dim=1)
            index = index.gather(1, order)
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x, index


def _grid_after(size: int, stages: int) -> int:
    """IR-50 map size: the stem keeps the size, every stage halves it (rounding up)."""
    for _ in range(stages):
        size = (size + 1) // 2
    return size


class APViTNet(nn.Module):
    def __init__(self, backbone: IR50, num_classes: int, *, input_size: int, embed_dim: int, depth: int,
                 num_heads: int, mlp_ratio: float, keep_tokens: int, keep_rate: float, pool_blocks: int,
                 drop_path: float):
        super().__init__()
        self.backbone = backbone
        self.layer = backbone.last
        self.input_size = input_size
        self.grid = _grid_after(input_size, len(backbone.channels))
        self.keep_tokens = keep_tokens
        if not 1 <= keep_tokens <= self.grid ** 2:
            raise ValueError(f"apvit keep_tokens={keep_tokens} must be in 1..{self.grid ** 2} "
                             f"(a {self.grid}x{self.grid} stage-3 grid at input_size={input_size})")
        if not 0 <= pool_blocks <= depth:
            raise ValueError(f"apvit pool_blocks={pool_blocks} must be in 0..depth={depth}")
        self.proj = nn.Conv2d(backbone.channels[self.layer], embed_dim, kernel_size=1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, embed_dim))
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            PoolingBlock(embed_dim, num_heads, mlp_ratio, qkv_bias=False, drop_path=r,
                         norm_layer=partial(nn.LayerNorm, eps=1e-6)) for r in rates)
        self.keep_rates = [1.0] * (depth - pool_blocks) + [keep_rate] * pool_blocks
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for module in [*self.blocks.modules(), self.head]:
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Output:
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        stem = self.backbone(x)[self.layer]
        tokens, index, a = attentive_patch_pooling(self.proj(stem), self.pos_embed[:, 1:], self.keep_tokens)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        t = torch.cat([cls, tokens], dim=1)
        counts = [t.shape[1] - 1]
        for block, rate in zip(self.blocks, self.keep_rates):
            t, index = block(t, index, rate)
            if rate < 1:
                counts.append(t.shape[1] - 1)
        logits = self.head(self.norm(t)[:, 0])
        return Output(logits=logits, features={self.layer: stem},
                      extras={"attention": a, "token_counts": counts, "kept_index": index})

    def no_weight_decay(self) -> set[str]:
        """timm's hook (bench/train/optim.py): no weight decay on the position embeddings and the cls token,
        as AP's paramwise_cfg; norms and biases are 1-D and exempt by timm's rule too."""
        return {"pos_embed", "cls_token"}

    def class_map(self, output: Output, target: torch.Tensor) -> torch.Tensor:
        """The class-agnostic APP attention map, whatever the target (see the module docstring)."""
        return output.extras["attention"]

    def load_vit_weights(self, path: str) -> None:
        """Blocks, cls token, position embeddings and final norm of a timm ViT checkpoint.

        ``patch_embed`` and ``head`` are dropped (the input is the CNN map); blocks beyond ``depth``
        are ignored; position embeddings are resampled when the grid differs.
        """
        file = Path(path).expanduser()
        if not file.is_file():
            raise PretrainedWeightsError(
                f"APViT ViT weights not found at {file}; download vit_small_p16_224-15ec54c9.pth there "
                "or set --set methods.apvit.vit_weights='' to train the ViT from scratch")
        try:
            if file.suffix == ".safetensors":
                from safetensors.torch import load_file
                state = load_file(str(file))
            else:
                state = torch.load(file, map_location="cpu", weights_only=True)
                state = state.get("state_dict", state.get("model", state))
            own = {k: v for k, v in self.state_dict().items()
                   if k.startswith(("blocks.", "norm.")) or k in ("cls_token", "pos_embed")}
            if "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
                state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], (self.grid, self.grid),
                                                            num_prefix_tokens=1)
            missing = [k for k in own if k not in state]
            if missing:
                raise ValueError(f"missing {len(missing)} keys, e.g. {missing[0]}")
            self.load_state_dict({k: state[k] for k in own}, strict=False)
        except PretrainedWeightsError:
            raise
        except Exception as exc:  # corrupt file, other widths
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PretrainedWeightsError(f"could not load APViT ViT weights from {file} ({reason[:200]})") from exc


@register
class APViT(Method):
    name = "apvit"
    title = "APViT"
    family = "transformer"
    cam_kind = "class-agnostic"
    alignment_layers = ("stage3",)

    @dataclass(frozen=True)
    class Config:
        input_size: int = 112               # IR-50 input; 112 gives the 14x14 grid of 196 tokens
        ir50_units: tuple[int, ...] = IR50_UNITS[:3]  # units of stages 1-3 (IR-50: 3/4/14)
        ir50_width: float = 1.0             # channel multiplier of IR-50 (CPU profiles shrink it)
        embed_dim: int = 768
        depth: int = 8
        num_heads: int = 8
        mlp_ratio: float = 3.0
        keep_tokens: int = 160              # APP: top-k of the stage-3 tokens
        keep_rate: float = 0.9              # ATP: fraction of patch tokens kept per pooling block
        pool_blocks: int = 4                # ATP in the last blocks (5-8 of 8)
        drop_path: float = 0.0
        vit_weights: str = ""               # timm vit_small_p16_224-15ec54c9.pth (empty: random)

    def make_backbone(self, options: dict[str, Any]) -> nn.Module:
        """IR-50 stages 1-3 from this method's Config. Its face-recognition weights (face.evoLVe's
        backbone_ir50_ms1m_epoch120.pth) come from ``model.pretrained_path``; ``model.pretrained``
        without a file is an error, since no model hub has them."""
        c = self.config
        path = options.get("pretrained_path") or None
        widths = tuple(max(8, int(round(w * c.ir50_width))) for w in IR50_WIDTHS[:3])
        if path and c.ir50_width != 1.0:
            raise PretrainedWeightsError(f"IR-50 weights need methods.apvit.ir50_width=1 (got {c.ir50_width})")
        try:
            return IR50(stages=3, units=tuple(c.ir50_units), widths=widths, pretrained_path=path,
                        pretrained=bool(options.get("pretrained")))
        except PretrainedWeightsError as exc:
            raise PretrainedWeightsError(f"{exc}, or train IR-50 from scratch with --set model.pretrained=false") from None

    def build(self, num_classes: int, backbone: nn.Module) -> nn.Module:
        c = self.config
        net = APViTNet(backbone, num_classes, input_size=c.input_size, embed_dim=c.embed_dim, depth=c.depth,
                       num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, keep_tokens=c.keep_tokens,
                       keep_rate=c.keep_rate, pool_blocks=c.pool_blocks, drop_path=c.drop_path)
        if c.vit_weights:
            net.load_vit_weights(c.vit_weights)
        return net

    @classmethod
    def conformance_options(cls) -> dict[str, Any]:
        return {"image_size": 32, "model": {"backbone": "ir50", "pretrained": False},
                "method": {"input_size": 32, "ir50_units": [1, 1, 1], "ir50_width": 0.125, "embed_dim": 32,
                           "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "keep_tokens": 12, "pool_blocks": 1}}
