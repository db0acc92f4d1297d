"""The authors' ResNet classifiers (CAM, GradCAM, GradCAM++, LayerCAM, CutMix, ADL, WILDCAT, ACoL, PRM).

Their ``model.pt`` is ``{'encoder': encoder.state_dict(), 'classification_head': head.state_dict()}``
(interpretable-fer-aus ``dlib/learning/train_wsol.py``, ``Trainer._save_model``). Names, from their
definitions:

- encoder (``dlib/encoders/resnet.py``, a torchvision ResNet without ``fc``/``avgpool``): ``conv1``,
  ``bn1``, ``layer1``..``layer4`` of blocks with torchvision's names (``conv1``..``conv3``, ``bn1``..``bn3``,
  ``downsample.0/1``; ReLUs carry no weights). Ours is timm's ResNet with the same block names, under
  ``backbone.stem.0`` (conv1), ``backbone.stem.1`` (bn1) and ``backbone.stages.{0..3}`` (layer1..4).
- ADL: their encoder inserts weight-less ADL modules *into* each layer's ``nn.Sequential``
  (``_ADL_POSITION = [[], [], [], [0], [0, 2]]``, ``layers.insert(pos + 1, ADL(...))`` for ``pos`` in
  reversed order), so the blocks after an ADL have shifted indices: ResNet-50 ``layer3`` is
  [b0, ADL, b1..b5] (keys ``layer3.0``, ``layer3.2``..``layer3.6``) and ``layer4`` is
  [b0, ADL, b1, b2, ADL] (``layer4.0``, ``layer4.2``, ``layer4.3``). Ours hooks ADL without moving blocks.
- heads (``dlib/poolings/core.py``, ``wildcat.py``, ``div_classifiers/parts/acol.py``): WGAP ``fc``
  (Linear C->K; CAM, the post-hoc methods, CutMix, ADL) -> our ``fc``; WILDCAT ``to_modalities``
  (1x1 conv C->K·M, channel k·M+m) -> our ``transfer`` (same order); PRM ``conv`` (1x1 conv C->K) ->
  our ``response``; ACoL ``acol_pooler.classifier_A/B`` (conv3x3-ReLU-conv3x3-ReLU-conv1x1) -> our
  ``head_a``/``head_b`` (same Sequential indices 0, 2, 4).
"""
from __future__ import annotations

from torch import nn

from bench.importers.keymap import Source

WRAPPERS = ("encoder", "classification_head")

#: our head prefix -> theirs, per head kind.
HEADS = {
    "wgap": {"fc.": "classification_head.fc."},
    "wildcat": {"transfer.": "classification_head.to_modalities."},
    "prm": {"response.": "classification_head.conv."},
    "acol": {"head_a.": "classification_head.acol_pooler.classifier_A.",
             "head_b.": "classification_head.acol_pooler.classifier_B."},
}

#: Their ``_ADL_POSITION`` for layer1..layer4: ADL after these block indices.
ADL_POSITION = ([], [], [0], [0, 2])


def their_block_indices(blocks: int, split: list[int]) -> list[int]:
    """Index in their ``nn.Sequential`` of each of our ``blocks`` blocks, after their ADL insertion."""
    layers: list[object] = list(range(blocks))
    for pos in reversed(split):
        layers.insert(pos + 1, "ADL")
    return [i for i, item in enumerate(layers) if item != "ADL"]


def keymap(model: nn.Module, head: str, adl: bool) -> dict[str, Source]:
    """our key -> their (flattened) key, for every tensor of our model."""
    stages = model.backbone.stages
    index = [their_block_indices(len(stage), ADL_POSITION[s] if adl else []) for s, stage in enumerate(stages)]
    out = {}
    for ours in model.state_dict():
        out[ours] = Source.one(_their_key(ours, index, HEADS[head]))
    return out


def _their_key(ours: str, index: list[list[int]], head: dict[str, str]) -> str:
    if ours.startswith("backbone.stem.0."):
        return "encoder.conv1." + ours.removeprefix("backbone.stem.0.")
    if ours.startswith("backbone.stem.1."):
        return "encoder.bn1." + ours.removeprefix("backbone.stem.1.")
    if ours.startswith("backbone.stages."):
        stage, block, rest = ours.removeprefix("backbone.stages.").split(".", 2)
        return f"encoder.layer{int(stage) + 1}.{index[int(stage)][int(block)]}.{rest}"
    for mine, theirs in head.items():
        if ours.startswith(mine):
            return theirs + ours.removeprefix(mine)
    raise ValueError(f"no key-map rule for our parameter {ours} (bench/importers/keymap_resnet.py)")
