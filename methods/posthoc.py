"""Post-hoc gradient CAMs (GradCAM, GradCAM++, LayerCAM) through pytorch-grad-cam.

These methods do not change training: each declares ``trains_like = "cam"`` so the scheduler
evaluates them on the CAM model it trains anyway. Extraction is batched (one forward and one
backward for the whole batch, one target per sample = the true class). The backward stops at the
target layer: a hook hands the library a detached copy of that layer's output that starts a new
graph, so only the layers above it (for layer 5, the head) are differentiated; the gradient with
respect to the target activations is unchanged, and the backbone's backward is not paid.
The library's side effects are contained here: it needs gradients (we enable them even inside a
no-grad eval loop), its hooks live only inside a ``with`` block, and the parameter gradients its
backward leaves behind are cleared.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from methods.base import Output
from methods.cam import CAM


class _LogitsOnly(nn.Module):
    """pytorch-grad-cam expects ``model(x) -> logits``; keep our full Output for the caller."""

    def __init__(self, model: nn.Module, labels: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.labels = labels
        self.last: Output | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = self.model(x, labels=self.labels)
        return self.last.logits


def _start_graph_here(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return output.detach().requires_grad_(True)


@contextmanager
def _frozen(model: nn.Module):
    """No parameter gradients: autograd records only what the target-layer gradient needs."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class PostHocCAM(CAM):
    """Base for library extractors: trained like CAM, explained with ``extractor``."""

    trains_like = "cam"
    extractor: ClassVar[str]          # class name in pytorch_grad_cam

    @dataclass(frozen=True)
    class Config:
        target_layer: str = "layer5"  # the paper's layer 5 (torchvision layer4), as in the reference

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[Output, torch.Tensor]:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        was_training = model.training
        wrapper = _LogitsOnly(model, target if self.needs_labels else None)
        layer = model.backbone.layer_module(self.config.target_layer)
        extractor_cls = getattr(pytorch_grad_cam, self.extractor)
        targets = [ClassifierOutputTarget(int(c)) for c in target.tolist()]
        cut = layer.register_forward_hook(_start_graph_here)   # runs before the library's hooks
        try:
            with _frozen(model), torch.enable_grad(), extractor_cls(model=wrapper, target_layers=[layer]) as extractor:
                maps = extractor(input_tensor=x, targets=targets)
        finally:
            cut.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        output = wrapper.last
        detached = Output(logits=output.logits.detach(), features={k: v.detach() for k, v in output.features.items()},
                          cams=None, extras={})
        return detached, torch.from_numpy(maps).to(x.device)
