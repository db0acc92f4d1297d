import math

import numpy as np
import pytest
import torch

from bench.metrics.base import ClassAverager, attention_for_metric, macro_average, normalise_cam


def test_hand_built_macro_average_skips_neutral_and_empty_classes():
    avg = ClassAverager(7, torch.device("cpu"))
    labels = torch.tensor([0, 1, 1, 2, 3, 3, 3])
    values = torch.tensor([0.9, 0.2, 0.4, 0.6, 0.1, 0.2, 0.9])
    valid = torch.tensor([False, True, True, True, True, True, False])
    avg.add(values, labels, valid)
    pc = avg.per_class()
    assert pc[1] == pytest.approx(0.3) and pc[2] == pytest.approx(0.6) and pc[3] == pytest.approx(0.15)
    assert math.isnan(pc[0]) and math.isnan(pc[4])
    # classes 1, 2, 3 only: (0.3 + 0.6 + 0.15) / 3
    assert macro_average(pc) == pytest.approx(0.35)


def test_macro_average_of_nothing_is_nan():
    assert math.isnan(macro_average(np.full(7, np.nan)))


def test_cam_normalisation_is_min_max_at_image_resolution():
    cam = torch.tensor([[[1.0, 3.0], [5.0, 7.0]]])
    out = normalise_cam(cam, (8, 8))
    assert out.shape == (1, 8, 8)
    assert out.min().item() == 0.0 and out.max().item() == pytest.approx(1.0)
    const = normalise_cam(torch.ones(1, 2, 2), (4, 4))
    assert torch.isfinite(const).all() and const.abs().sum() == 0


def test_attention_is_shifted_when_negative():
    f = torch.tensor([[[[-1.0, 1.0], [0.0, 2.0]]]])
    att = attention_for_metric(f, (2, 2))
    torch.testing.assert_close(att, torch.tensor([[[0.0, 2.0], [1.0, 3.0]]]))
    pos = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    torch.testing.assert_close(attention_for_metric(pos, (2, 2)), pos[:, 0])
