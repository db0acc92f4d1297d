"""The public base of post-hoc CAM plugins: any pytorch-grad-cam extractor on the CAM model.

A post-hoc method does not change training (``trains_like = "cam"``: the scheduler evaluates it on
the CAM model it trains anyway); it only explains. Subclass :class:`PostHocCAM`, give it a
``name``, a ``title`` and an ``extractor`` (a ``pytorch_grad_cam`` class or its name, or your own
subclass of one, e.g. with other ``get_cam_weights``), and override ``make_extractor`` if the
extractor needs constructor arguments. GradCAM, GradCAM++ and LayerCAM are built this way.

What the base guarantees, whatever the extractor does:

* The ``Output`` (logits and features the metrics read) is the forward of the *unmodified* batch:
  the extractor's own first forward of the batch as given (every pytorch-grad-cam extractor starts
  with one), else one no-grad forward of ours. Extractors that forward again (ScoreCAM's masked
  inputs, AblationCAM's ablations) never reach the ``Output``; the extractor only makes the CAM.
* Gradient CAMs stay cheap: one forward and one backward per batch, and the backward stops at the
  target layer (a hook hands the library a detached copy of that layer's output that starts a new
  graph), so only the layers above it are differentiated and the backbone's backward is not paid.
* The library's side effects are contained: gradients are enabled even inside a no-grad eval loop,
  parameters are frozen while it runs and their gradients cleared after, its hooks live only for
  the call (released without its ``__exit__`` swallowing an ``IndexError``), the model's
  train/eval mode is restored, and its per-sample tqdm bars (ScoreCAM, AblationCAM) are silenced.

The CAM is the library's: (B, H, W) at the input size, min-max scaled (``cam_size = "input"``).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from methods.base import Output
from methods.cam import CAM


class _LogitsOnly(nn.Module):
    """pytorch-grad-cam expects ``model(x) -> logits``; keeps the Output of the unmodified batch."""

    def __init__(self, model: nn.Module, batch: torch.Tensor, labels: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.batch = batch
        self.labels = labels
        self.clean: Output | None = None

    def _is_clean(self, x: torch.Tensor) -> bool:
        b = self.batch
        return (x is b or (x.data_ptr() == b.data_ptr() and x.shape == b.shape and x.stride() == b.stride()
                           and x.dtype == b.dtype and x.device == b.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clean = self.clean is None and self._is_clean(x)
        output = self.model(x, labels=self.labels if clean else None)
        if clean:
            self.clean = output
        return output.logits


def _start_graph_here(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return output.detach().requires_grad_(True)


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """No parameter gradients: autograd records only what the target-layer gradient needs."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Every tqdm bar opened inside is disabled (ScoreCAM and AblationCAM open one per sample)."""
    try:
        from tqdm import std
    except ImportError:      # no tqdm, no bars
        yield
        return
    cls = std.tqdm
    original = cls.__dict__["__init__"]

    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        original.__get__(self, cls)(*args, **kwargs)

    cls.__init__ = quiet_init
    try:
        yield
    finally:
        cls.__init__ = original


class PostHocCAM(CAM):
    """Base of post-hoc extractor plugins: trained like CAM, explained with ``extractor``."""

    trains_like = "cam"
    cam_size = "input"
    #: A ``pytorch_grad_cam`` extractor class (or a subclass of your own), or its name in that package.
    extractor: ClassVar[type | str]

    @dataclass(frozen=True)
    class Config:
        target_layer: str = "layer5"  # the paper's layer 5 (torchvision layer4), as in the reference

    def extractor_class(self) -> type:
        """``extractor`` as a class (a name is looked up in ``pytorch_grad_cam``)."""
        chosen = getattr(type(self), "extractor", None)
        if chosen is None:
            raise ValueError(f"{type(self).__qualname__}.extractor is not set: name a pytorch_grad_cam class")
        if isinstance(chosen, str):
            import pytorch_grad_cam

            found = getattr(pytorch_grad_cam, chosen, None)
            if not isinstance(found, type):
                raise ValueError(f"{type(self).__qualname__}.extractor = {chosen!r} is not a class of pytorch_grad_cam")
            return found
        return chosen

    def target_module(self, model: nn.Module) -> nn.Module:
        """The module whose output the extractor explains (``Config.target_layer``)."""
        return model.backbone.layer_module(self.config.target_layer)

    def make_extractor(self, model: nn.Module, target_layer: nn.Module) -> Any:
        """The extractor on ``model`` (which returns logits); override to pass constructor options."""
        return self.extractor_class()(model=model, target_layers=[target_layer])

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[Output, torch.Tensor]:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        was_training = model.training
        labels = target if self.needs_labels else None
        wrapper = _LogitsOnly(model, x, labels)
        layer = self.target_module(model)
        targets = [ClassifierOutputTarget(int(c)) for c in target.tolist()]
        cut = layer.register_forward_hook(_start_graph_here)   # runs before the library's hooks
        try:
            with _frozen(model), torch.enable_grad(), quiet_progress_bars():
                extractor = self.make_extractor(wrapper, layer)
                try:
                    maps = extractor(input_tensor=x, targets=targets)
                finally:
                    release = getattr(extractor, "__exit__", None)   # releases its hooks
                    if release is not None:
                        release(None, None, None)
            output = wrapper.clean
            if output is None:         # the extractor never forwarded the batch as given
                model.eval()
                with torch.no_grad():
                    output = model(x, labels=labels)
        finally:
            cut.remove()
            model.zero_grad(set_to_none=True)
            model.train(was_training)
        detached = Output(logits=output.logits.detach(), features={k: v.detach() for k, v in output.features.items()},
                          cams=None, extras={})
        cam = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(maps)
        return detached, cam.to(x.device)
