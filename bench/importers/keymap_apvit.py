"""The authors' APViT (``PoolingVitClassifier``): the full ``state_dict``, three top-level modules.

From interpretable-fer-aus ``dlib/diverse_models/``:

- ``extractor`` (``irse.py``, IR-50 stages 1-3): ``input_layer.{0,1,2}`` and ``body`` as a
  ``ModuleList`` of one ``Sequential`` per stage, so units are ``body.{stage}.{unit}`` with
  ``shortcut_layer.{0,1}`` and ``res_layer.{0..4}``. Ours (face.evoLVe's flat layout) numbers the units
  of all stages in one ``body.{n}``: stage s, unit u = our unit (units of the stages before s) + u.
- ``vit`` (``apvit_vit_vit_siam_merge.py``, ``PoolingViT``): ``projs.0`` (1x1 conv 256 -> D) -> our
  ``proj``; ``cls_token`` -> ``cls_token``; ``cls_pos_embed`` (1, 1, D) and ``patch_pos_embed``
  (1, 196, D) -> our ``pos_embed`` (1, 197, D), cls first (their forward adds ``cls_pos_embed`` to the
  cls token and ``patch_pos_embed`` to the patch tokens, as ours does with the two parts);
  ``blocks.{i}`` (``PoolingBlock``: ``norm1``, ``attn.qkv`` without bias, ``attn.proj``, ``norm2``,
  ``mlp.fc1``, ``mlp.fc2``) -> our ``blocks.{i}`` (timm names); ``norm`` -> ``norm``. The
  ``SUM_ABS_1`` attention and the poolings carry no weights.
- ``classification_head`` (``apvit_heads_linear_head.py``, ``LinearClsHead``): ``fc`` -> our ``head``.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.importers.keymap import Source

WRAPPERS: tuple[str, ...] = ()

POS_EMBED = Source(("vit.cls_pos_embed", "vit.patch_pos_embed"),
                   join=lambda parts: torch.cat(parts, dim=1),
                   split=lambda t: [t[:, :1], t[:, 1:]])


def keymap(model: nn.Module) -> dict[str, Source]:
    units = model.backbone.bounds          # (start, stop) of each stage in our flat body
    where = {n: (s, n - start) for s, (start, stop) in enumerate(units) for n in range(start, stop)}
    out = {}
    for ours in model.state_dict():
        out[ours] = _their_source(ours, where)
    return out


def _their_source(ours: str, where: dict[int, tuple[int, int]]) -> Source:
    if ours.startswith("backbone.input_layer."):
        return Source.one("extractor." + ours.removeprefix("backbone."))
    if ours.startswith("backbone.body."):
        unit, rest = ours.removeprefix("backbone.body.").split(".", 1)
        stage, inner = where[int(unit)]
        return Source.one(f"extractor.body.{stage}.{inner}.{rest}")
    if ours == "pos_embed":
        return POS_EMBED
    if ours.startswith("proj."):
        return Source.one("vit.projs.0." + ours.removeprefix("proj."))
    if ours == "cls_token" or ours.startswith(("blocks.", "norm.")):
        return Source.one("vit." + ours)
    if ours.startswith("head."):
        return Source.one("classification_head.fc." + ours.removeprefix("head."))
    raise ValueError(f"no key-map rule for our parameter {ours} (bench/importers/keymap_apvit.py)")
