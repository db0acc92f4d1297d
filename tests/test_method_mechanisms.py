"""Known-answer tests of CAM-family mechanisms: GradCAM and LayerCAM on a GAP+FC head, ACoL's erasing.

The other mechanisms have their own files: ``test_mechanism_<method>.py``.
"""
import cv2
import numpy as np
import torch

from backbones import build_backbone
from methods import get_method
from methods.acol import erase_mask


def _cam_model(seed=0):
    torch.manual_seed(seed)
    return get_method("cam")().build(7, build_backbone("resnet18", large_maps=True, width=0.25)).eval()


def _minmax(a):
    a = a - a.min()
    return a / (a.max() + 1e-7)


def _library_scaling(low_res, size):
    """pytorch-grad-cam's post-processing: min-max, bilinear resize, min-max at image size."""
    return _minmax(cv2.resize(_minmax(low_res).astype(np.float32), size))


def test_gradcam_equals_relu_cam_on_a_gap_fc_head():
    model = _cam_model()
    x = torch.randn(3, 3, 32, 32)
    target = torch.tensor([1, 4, 6])
    raw = get_method("cam")().cam(model, x, target)
    _, grad = get_method("gradcam")().explain(model, x, target)
    for i in range(3):
        expected = _library_scaling(raw[i].clamp_min(0).numpy(), (32, 32))
        np.testing.assert_allclose(grad[i].numpy(), expected, atol=1e-4)


def test_layercam_on_layer5_is_cam_with_positive_weights():
    model = _cam_model(1)
    x = torch.randn(2, 3, 32, 32)
    target = torch.tensor([2, 5])
    output, layer = get_method("layercam")().explain(model, x, target)
    for i in range(2):
        w = model.fc.weight[target[i]].clamp_min(0)
        positive_cam = torch.einsum("chw,c->hw", output.features["layer5"][i], w).detach()
        expected = _library_scaling(positive_cam.numpy(), (32, 32))
        np.testing.assert_allclose(layer[i].numpy(), expected, atol=1e-4)


def test_acol_erasing_mask():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 1] = torch.tensor([[0.0, 0.05], [0.5, 1.0]])
    maps[0, 0] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask = erase_mask(maps, torch.tensor([1]), threshold=0.1)
    assert mask.tolist() == [[[[1.0, 1.0], [0.0, 0.0]]]]
