"""GradCAM++ and LayerCAM through ``Method.explain`` against their formulas computed by hand.

The tiny model's head (1x1 conv, ReLU, sum, linear) makes the gradient vary over positions and
channels, so per-position weights (LayerCAM) and the α of GradCAM++ both matter. The maps keep
the input's size, so the library's resize is the identity and only its min-max scaling remains.
"""
import copy

import torch
from torch import nn

from methods import get_method
from methods.base import Output


class _TinyBackbone(nn.Module):
    channels = {"layer5": 4}
    last = "layer5"

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())

    def layer_module(self, name):
        return self.block

    def forward(self, x):
        return {"layer5": self.block(x)}


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _TinyBackbone()
        self.hidden = nn.Conv2d(4, 5, 1)
        self.fc = nn.Linear(5, 3)

    def head(self, a):
        return self.fc(torch.relu(self.hidden(a)).sum((2, 3)))

    def forward(self, x, labels=None):
        a = self.backbone(x)["layer5"]
        return Output(self.head(a), {"layer5": a})


def _setup():
    torch.manual_seed(0)
    model = _TinyNet().eval()
    with torch.no_grad():
        model.fc.weight.mul_(20)     # gradients of order 1: the library's eps (1e-6) next to g² stays negligible
    x = torch.randn(3, 3, 8, 8)
    target = torch.tensor([0, 2, 1])
    return model, x, target


def _activations_and_gradients(model, x, target):
    """A and g = d logit_target / dA, in float64 with autograd (independent of the library)."""
    model64 = copy.deepcopy(model).double()
    a = model64.backbone(x.double())["layer5"].detach().requires_grad_(True)
    logits = model64.head(a)
    (g,) = torch.autograd.grad(logits[torch.arange(len(target)), target].sum(), a)
    return a.detach(), g


def _minmax(m):
    m = m - m.amin((1, 2), keepdim=True)
    return m / (m.amax((1, 2), keepdim=True) + 1e-7)


def _gradcampp_by_hand(a, g, divide=True):
    sum_a = a.sum((2, 3), keepdim=True)
    alpha = g ** 2 / (2 * g ** 2 + sum_a * g ** 3) if divide else g ** 2
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = torch.where(g > 0, alpha * g, torch.zeros_like(g)).sum((2, 3))      # Σ α · ReLU(g)
    return _minmax(torch.relu((weights[:, :, None, None] * a).sum(1)))


def test_gradcampp_is_the_closed_form_alpha_on_a_tiny_model():
    model, x, target = _setup()
    a, g = _activations_and_gradients(model, x, target)
    assert (g > 0).any() and (g < 0).any() and g.abs().min() < g.abs().max() / 2   # g varies in sign and size
    _, cam = get_method("gradcampp")().explain(model, x, target)
    expected = _gradcampp_by_hand(a, g)
    torch.testing.assert_close(cam.double(), expected, atol=2e-5, rtol=0)
    # The reference's bug (α left at g²) gives another map: the test can tell them apart.
    assert (_gradcampp_by_hand(a, g, divide=False) - expected).abs().max() > 0.05


def test_layercam_is_relu_grad_times_activation_on_a_tiny_model():
    model, x, target = _setup()
    a, g = _activations_and_gradients(model, x, target)
    _, cam = get_method("layercam")().explain(model, x, target)
    expected = _minmax(torch.relu((torch.relu(g) * a).sum(1)))
    torch.testing.assert_close(cam.double(), expected, atol=2e-5, rtol=0)
    # Channel-averaged gradients (GradCAM) would give another map here.
    gradcam = _minmax(torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1)))
    assert (gradcam - expected).abs().max() > 0.05
