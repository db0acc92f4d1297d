"""Key maps between another codebase's state dict and ours, with every key accounted for.

A key map is a dict ``our key -> Source``: the checkpoint key(s) our tensor comes from and, when
several of theirs make one of ours (APViT's two position embeddings), how they join and split.
``map_state`` applies it and refuses a partial load: a key of ours that the checkpoint lacks, a key
of the checkpoint that nothing uses, or a shape that differs is a ``KeyMapError`` naming the key.
``export_state`` is the inverse (our weights in their layout), used by the tests and by anyone who
wants to hand a model back to the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Source:
    """Where one of our tensors comes from in their checkpoint."""

    keys: tuple[str, ...]
    join: Callable[[list[Tensor]], Tensor] | None = None     # several of theirs -> ours
    split: Callable[[Tensor], list[Tensor]] | None = None    # ours -> several of theirs (inverse)

    @classmethod
    def one(cls, key: str) -> "Source":
        return cls((key,))


class KeyMapError(ValueError):
    """A checkpoint that does not fit the key map: ``missing``, ``unused`` and ``shapes`` say how."""

    def __init__(self, missing: list[tuple[str, str]], unused: list[str], shapes: list[tuple[str, str, tuple, tuple]]):
        self.missing = missing        # (their key, our key)
        self.unused = unused          # their keys
        self.shapes = shapes          # (their key(s), our key, their shape, our shape)
        super().__init__(self.summary())

    def summary(self) -> str:
        parts = []
        if self.missing:
            theirs, ours = self.missing[0]
            more = f" (and {len(self.missing) - 1} more)" if len(self.missing) > 1 else ""
            parts.append(f"missing key {theirs} (our {ours}){more}")
        if self.unused:
            more = f" (and {len(self.unused) - 1} more)" if len(self.unused) > 1 else ""
            parts.append(f"unused key {self.unused[0]}{more}")
        if self.shapes:
            theirs, ours, their_shape, our_shape = self.shapes[0]
            more = f" (and {len(self.shapes) - 1} more)" if len(self.shapes) > 1 else ""
            parts.append(f"key {theirs} has shape {list(their_shape)}, our {ours} needs {list(our_shape)}{more}")
        return "; ".join(parts)


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested dicts of tensors (``{'encoder': {...}, 'classification_head': {...}}``) -> dotted keys.

    Leaves that are not tensors are kept as they are, so the caller can name them.
    """
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def nest(flat: Mapping[str, Tensor], wrappers: tuple[str, ...]) -> dict:
    """Inverse of ``flatten`` for one level: keys under each wrapper go into their own dict."""
    if not wrappers:
        return dict(flat)
    out: dict[str, dict] = {w: {} for w in wrappers}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        out[head][rest] = value
    return out


def map_state(keymap: Mapping[str, Source], theirs: Mapping[str, Tensor],
              our_shapes: Mapping[str, torch.Size]) -> dict[str, Tensor]:
    """Their tensors under our names; raises ``KeyMapError`` unless every key on both sides is used
    exactly as the map says and every shape matches."""
    missing, shapes, out, used = [], [], {}, set()
    for ours, source in keymap.items():
        absent = [k for k in source.keys if k not in theirs]
        if absent:
            missing.append((absent[0], ours))
            continue
        used.update(source.keys)
        parts = [theirs[k] for k in source.keys]
        value = source.join(parts) if source.join else parts[0]
        if tuple(value.shape) != tuple(our_shapes[ours]):
            shapes.append(("+".join(source.keys), ours, tuple(value.shape), tuple(our_shapes[ours])))
            continue
        out[ours] = value.detach().clone().contiguous()
    unused = [k for k in theirs if k not in used]
    if missing or unused or shapes:
        raise KeyMapError(missing, unused, shapes)
    return out


def export_state(keymap: Mapping[str, Source], ours: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our tensors under their names (the inverse of ``map_state``)."""
    out: dict[str, Tensor] = {}
    for key, source in keymap.items():
        value = ours[key].detach().clone()
        parts = source.split(value) if source.split else [value]
        out.update({k: p.contiguous() for k, p in zip(source.keys, parts)})
    return out
