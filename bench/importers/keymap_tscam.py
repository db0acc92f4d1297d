"""The authors' TS-CAM (``deit_tscam_*_patch16_224``): the full ``state_dict`` of their ``TSCAM`` model.

Their ``TSCAM`` (interpretable-fer-aus ``dlib/div_classifiers/deit.py``) subclasses TS-CAM's vendored
timm-0.3 ``VisionTransformer``: ``patch_embed.proj``, ``cls_token``, ``pos_embed`` (1, 1 + h·w, D),
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``, and ``head``
replaced by ``Conv2d(D, K, 3, padding=1)`` (``avgpool`` and dropouts carry no weights). Ours is a
current timm ViT with the same names under ``backbone.vit.`` and the same conv head as ``head``.
"""
from __future__ import annotations

from torch import nn

from bench.importers.keymap import Source

WRAPPERS: tuple[str, ...] = ()

#: their encoder name -> (our timm model, patch, embed dim, depth, heads) (their deit.py constructors).
ENCODERS = {
    "deit_tscam_tiny_patch16_224": ("deit_tiny_patch16_224", 16, 192, 12, 3),
    "deit_tscam_small_patch16_224": ("deit_small_patch16_224", 16, 384, 12, 6),
    "deit_tscam_base_patch16_224": ("deit_base_patch16_224", 16, 768, 12, 12),
}


def keymap(model: nn.Module) -> dict[str, Source]:
    out = {}
    for ours in model.state_dict():
        if ours.startswith("backbone.vit."):
            out[ours] = Source.one(ours.removeprefix("backbone.vit."))
        elif ours.startswith("head."):
            out[ours] = Source.one(ours)
        else:
            raise ValueError(f"no key-map rule for our parameter {ours} (bench/importers/keymap_tscam.py)")
    return out
