"""Post-hoc fixture plugins: library extractors on the public base, and the pattern it replaces.

``FxScoreCAM`` and ``FxAblationCAM`` forward many times per batch (masked inputs, ablated
channels); on ``methods.PostHocCAM`` their ``Output`` is still the clean batch's.
``LastForwardScoreCAM`` is the issue's plugin: it wraps the model itself and returns whatever
the *last* forward produced (ScoreCAM's last 16 masked inputs), which is wrong at batch 16 and
a size mismatch elsewhere. ``FxFailingCAM``'s extractor fails on batches of more than 8 images.
"""
from __future__ import annotations

import numpy as np
import pytorch_grad_cam
import torch
from torch import nn

from methods import Output, PostHocCAM
from methods.posthoc import quiet_progress_bars


class NarrowConformance:
    """Multi-forward extractors cost a forward per channel: a narrower test model keeps tests fast."""

    @classmethod
    def conformance_options(cls):
        options = super().conformance_options()
        return {**options, "model": {**options["model"], "width": 0.0625}}


class FxScoreCAM(NarrowConformance, PostHocCAM):
    name = "fx_scorecam"
    title = "Score-CAM (fixture)"
    extractor = "ScoreCAM"          # by name


class FxAblationCAM(NarrowConformance, PostHocCAM):
    name = "fx_ablationcam"
    title = "Ablation-CAM (fixture)"
    extractor = pytorch_grad_cam.AblationCAM   # by class

    def make_extractor(self, model, target_layer):
        return self.extractor_class()(model=model, target_layers=[target_layer], batch_size=8)


class PositiveGradCAM(pytorch_grad_cam.GradCAM):
    """GradCAM whose channel weights average only the positive gradients (a small override)."""

    def get_cam_weights(self, input_tensor, target_layer, target_category, activations, grads):
        return np.maximum(grads, 0).mean(axis=(2, 3))


class FxPositiveGradCAM(PostHocCAM):
    name = "fx_posgradcam"
    title = "Positive GradCAM (fixture)"
    extractor = PositiveGradCAM


class LastForwardScoreCAM(NarrowConformance, PostHocCAM):
    """The issue's plugin: its own wrapper keeps the last forward's Output (the bug under test)."""

    name = "fx_lastforward"
    title = "Score-CAM, last forward (fixture)"

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[Output, torch.Tensor]:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        last: dict[str, Output] = {}

        class Wrapper(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, batch):
                last["output"] = self.model(batch)
                return last["output"].logits

        layer = model.backbone.layer_module(self.config.target_layer)
        targets = [ClassifierOutputTarget(int(c)) for c in target.tolist()]
        with torch.enable_grad(), quiet_progress_bars(), pytorch_grad_cam.ScoreCAM(Wrapper(), [layer]) as cam:
            maps = cam(input_tensor=x, targets=targets)
        out = last["output"]
        return (Output(out.logits.detach(), {k: v.detach() for k, v in out.features.items()}),
                torch.from_numpy(maps))


class DeliberatelyFailing:
    """An extractor (same constructor and call as pytorch-grad-cam's) that fails on batches of more
    than ``FAIL_ABOVE`` images, as one running out of memory would: a short dry run passes, the
    evaluation of a trained model fails."""

    FAIL_ABOVE = 8

    def __init__(self, model, target_layers):
        self.model = model

    def __call__(self, input_tensor, targets):
        if input_tensor.shape[0] > self.FAIL_ABOVE:
            raise RuntimeError(f"deliberately failing extractor (a batch of {input_tensor.shape[0]} images)")
        return np.zeros((input_tensor.shape[0], *input_tensor.shape[-2:]), np.float32)


class FxFailingCAM(PostHocCAM):
    name = "fx_failing"
    title = "Failing CAM (fixture)"
    extractor = DeliberatelyFailing
