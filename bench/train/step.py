"""The training step: augment, render AU maps, mix, forward, loss, backward, update; no host sync."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from au import alignment_loss, get_codebook, render_au_maps
from bench.config.settings import Config
from bench.data.transforms import augment
from methods import Batch, Method


@dataclass
class TrainStep:
    """The hot path: augment, render AU maps, mix, forward, loss, backward, update. No host sync."""

    method: Method
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    config: Config
    device: torch.device
    align: bool
    align_layers: tuple[str, ...]
    layer_sizes: dict[str, tuple[int, int]]
    generator: torch.Generator

    def __post_init__(self):
        self.codebook = get_codebook(self.config.au.codebook)
        self.cuda = self.device.type == "cuda"
        self.channels_last = self.cuda and self.config.train.channels_last
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if self.cuda and self.config.train.amp else nullcontext())
        self.sizes = sorted({self.layer_sizes[name] for name in self.align_layers})

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """One update; returns the detached (classification, alignment) losses (``health.LOSS_TERMS``)."""
        t = self.config.train
        x, lm = augment(images, landmarks, self.generator, flip=t.flip, rotation=t.rotation,
                        crop_scale=t.crop_scale, jitter=t.jitter, channels_last=self.channels_last)
        batch = Batch(images=x, labels=labels, landmarks=lm)
        if self.align:
            H, W = x.shape[-2:]
            rendered = [render_au_maps(lm, labels, (H, W), size, self.codebook, self.config.au.edge)
                        for size in self.sizes]
            valid = rendered[0][1]
            for _, v in rendered[1:]:
                valid = valid & v
            batch = batch.replace(au_maps={s: m for s, (m, _) in zip(self.sizes, rendered)}, au_valid=valid)
        batch = self.method.mix(batch, self.generator)
        with self.autocast:
            output = self.model(batch.images, labels=batch.labels if self.method.needs_labels else None)
            method_loss = self.method.loss(output, batch)
            align_loss = (alignment_loss(output.features, batch.au_maps, batch.au_valid, self.align_layers,
                                         self.config.au.weight)
                          if self.align else torch.zeros((), device=method_loss.device))
        self.optimizer.zero_grad(set_to_none=True)
        (method_loss + align_loss).backward()
        self.optimizer.step()
        return torch.stack([method_loss.detach().float(), align_loss.detach().float()])
