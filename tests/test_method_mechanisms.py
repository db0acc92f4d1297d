"""One known-answer test per method mechanism."""
import cv2
import numpy as np
import pytest
import torch

from backbones import build_backbone
from methods import Batch, get_method
from methods.acol import erase_mask
from methods.cutmix import Box, cutmix
from methods.prm import peak_mask, peak_stimulation
from methods.wildcat import wildcat_pool


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


def test_gradcampp_alpha_on_a_hand_built_gradient():
    from pytorch_grad_cam import GradCAMPlusPlus

    activations = np.array([[[[1.0, 2.0], [3.0, 0.0]]]])           # Σ A = 6
    grads = np.array([[[[1.0, -1.0], [0.0, 2.0]]]])
    weights = GradCAMPlusPlus.get_cam_weights(None, None, None, None, activations, grads)
    # α = g² / (2g² + ΣA·g³): 1/8 at g=1, 4/56 at g=2, 0 at g=0; w = Σ α·ReLU(g) = 1/8 + 2·4/56
    assert weights[0, 0] == pytest.approx(1 / 8 + 8 / 56, rel=1e-4)
    # the reference's bug (α never divided) would give Σ g²·ReLU(g) = 1 + 8
    assert weights[0, 0] != pytest.approx(9.0)
    assert get_method("gradcampp").extractor == "GradCAMPlusPlus"


def test_wildcat_pooling_on_a_hand_made_map():
    maps = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    # k+ = 0.5·4 = 2 -> mean(4, 3) = 3.5; k− = 0.25·4 = 1 -> 1; α = 0.5 -> 3.5 + 0.5 = 4.0
    assert wildcat_pool(maps, 0.5, 0.25, 0.5).item() == pytest.approx(4.0)
    assert wildcat_pool(maps, 1, 0, 0.7).item() == pytest.approx(4.0)          # k >= 1 is a count
    assert wildcat_pool(maps, 2, 2, 1.0).item() == pytest.approx(3.5 + 1.5)   # min term is real


def test_acol_erasing_mask():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 1] = torch.tensor([[0.0, 0.05], [0.5, 1.0]])
    maps[0, 0] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask = erase_mask(maps, torch.tensor([1]), threshold=0.1)
    assert mask.tolist() == [[[[1.0, 1.0], [0.0, 0.0]]]]


def test_prm_peaks_on_a_hand_made_map():
    maps = torch.tensor([[[[5.0, 1.0, 2.0], [1.0, 0.0, 1.0], [3.0, 1.0, 6.0]]]], requires_grad=True)
    peaks = peak_mask(maps)
    assert peaks[0, 0].tolist() == [[True, False, True], [False, False, False], [True, False, True]]
    score = peak_stimulation(maps)
    assert score.item() == pytest.approx((5 + 2 + 3 + 6) / 4)
    score.sum().backward()
    assert maps.grad[0, 0].tolist() == [[0.25, 0, 0.25], [0, 0, 0], [0.25, 0, 0.25]]


def test_adl_is_identity_in_eval_and_active_in_training():
    torch.manual_seed(0)
    adl = get_method("adl")().build(7, build_backbone("resnet18", large_maps=True, width=0.25))
    plain = get_method("cam")().build(7, build_backbone("resnet18", large_maps=True, width=0.25))
    plain.load_state_dict(adl.state_dict())          # hooks add no parameters: same keys
    x = torch.randn(2, 3, 32, 32)
    adl.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(adl(x).logits, plain(x).logits)
        adl.train(), plain.train()
        assert not torch.allclose(adl(x).features["layer5"], plain(x).features["layer5"])


def test_cutmix_uses_the_same_box_for_image_and_au_maps():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16)
    full, half = torch.rand(4, 16, 16), torch.rand(4, 8, 8)
    valid = torch.tensor([True, True, False, True])
    labels = torch.tensor([1, 2, 3, 4])
    perm = torch.tensor([1, 2, 3, 0])
    box = Box(top=0.25, bottom=0.75, left=0.5, right=1.0)                # rows 4:12, cols 8:16
    batch = Batch(images, labels, torch.zeros(4, 68, 2), au_maps={(16, 16): full, (8, 8): half}, au_valid=valid)
    mixed = cutmix(batch, box, perm)
    inside = (slice(4, 12), slice(8, 16))
    assert torch.equal(mixed.images[:, :, inside[0], inside[1]], images[perm][:, :, inside[0], inside[1]])
    assert torch.equal(mixed.au_maps[(16, 16)][:, inside[0], inside[1]], full[perm][:, inside[0], inside[1]])
    assert torch.equal(mixed.au_maps[(8, 8)][:, 2:6, 4:8], half[perm][:, 2:6, 4:8])
    outside = torch.ones(16, 16, dtype=torch.bool)
    outside[inside] = False
    assert torch.equal(mixed.images[:, :, outside], images[:, :, outside])
    assert torch.equal(mixed.au_maps[(16, 16)][:, outside], full[:, outside])
    assert mixed.au_valid.tolist() == [True, False, False, True]   # sample 1 got 2's (invalid) patch
    assert mixed.extras["cutmix"]["lam"] == pytest.approx(1 - 64 / 256)
    assert mixed.extras["cutmix"]["labels_b"].tolist() == [2, 3, 4, 1]


def test_cutmix_loss_uses_the_area_lambda():
    method = get_method("cutmix")()
    logits = torch.randn(2, 7)
    labels, labels_b = torch.tensor([0, 1]), torch.tensor([2, 3])
    batch = Batch(torch.zeros(2, 3, 4, 4), labels, torch.zeros(2, 68, 2),
                  extras={"cutmix": {"labels_b": labels_b, "lam": 0.25}})
    from methods.base import Output

    ce = torch.nn.functional.cross_entropy
    expected = 0.25 * ce(logits, labels) + 0.75 * ce(logits, labels_b)
    torch.testing.assert_close(method.loss(Output(logits, {}), batch), expected)
