import math

import pytest
import torch

from au.align import alignment_loss, layer_attention, map_cosine, masked_mean


def test_cosine_of_a_map_with_itself_is_one():
    a = torch.rand(3, 7, 7)
    torch.testing.assert_close(map_cosine(a, a), torch.ones(3))


def test_hand_computed_cosines():
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert map_cosine(a, b).item() == pytest.approx(0.5)
    c = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    d = torch.tensor([[[4.0, 3.0], [0.0, 0.0]]])
    assert map_cosine(c, d).item() == pytest.approx(24 / 25)


def test_layer_attention_is_the_channel_mean():
    f = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    torch.testing.assert_close(layer_attention(f), f.mean(1))


def test_loss_is_zero_without_valid_samples():
    feats = {"layer5": torch.rand(4, 8, 5, 5, requires_grad=True)}
    maps = {(5, 5): torch.rand(4, 5, 5)}
    loss = alignment_loss(feats, maps, torch.zeros(4, dtype=torch.bool), ["layer5"], 9.0)
    assert loss.item() == 0.0
    loss.backward()
    assert feats["layer5"].grad.abs().sum() == 0


def test_loss_value_and_no_gradient_through_invalid_samples():
    feats = torch.rand(3, 4, 2, 2, requires_grad=True)
    target = torch.rand(3, 2, 2)
    valid = torch.tensor([True, False, True])
    loss = alignment_loss({"l": feats}, {(2, 2): target}, valid, ["l"], 2.0)
    cos = map_cosine(feats.mean(1), target)
    expected = 2.0 * ((1 - cos[0]) + (1 - cos[2])) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert feats.grad[1].abs().sum() == 0
    assert feats.grad[0].abs().sum() > 0


def test_loss_averages_over_layers():
    f1 = torch.ones(1, 2, 2, 2)
    f2 = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    valid = torch.tensor([True])
    loss = alignment_loss({"a": f1, "b": f2}, {(2, 2): target}, valid, ["a", "b"], 1.0)
    # cos(ones, e1) = 1/2; cos(e1, e1) = 1 -> mean of (0.5, 0)
    assert loss.item() == pytest.approx(0.25)


def test_masked_mean_ignores_nan_in_invalid_samples():
    values = torch.tensor([1.0, math.nan, 3.0])
    assert masked_mean(values, torch.tensor([True, False, True])).item() == 2.0
