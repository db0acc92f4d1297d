"""PRM's peak stimulation: peaks, ties on plateaus, the median filter and the gradient."""
import pytest
import torch
import torch.nn.functional as F

from methods.prm import peak_mask, peak_stimulation


def _grid(rows):
    return torch.tensor([[rows]], dtype=torch.float32, requires_grad=True)


def _reference_rule(maps, window):
    """PRM's own test (peak_stimulation.py): the max-pool argmax of the window is the position."""
    pad = window // 2
    padded = F.pad(maps, (pad, pad, pad, pad), value=float("-inf"))
    H, W = padded.shape[-2:]
    index = torch.arange(H * W).view(1, 1, H, W)[..., pad:H - pad, pad:W - pad]
    _, argmax = F.max_pool2d(padded, window, stride=1, return_indices=True)
    median = maps.flatten(2).median(-1).values[..., None, None]
    return (argmax == index) & (maps >= median)


def test_peaks_on_a_hand_made_map():
    maps = _grid([[5.0, 1.0, 2.0], [1.0, 0.0, 1.0], [3.0, 1.0, 6.0]])
    assert peak_mask(maps)[0, 0].tolist() == [[True, False, True], [False, False, False], [True, False, True]]
    score = peak_stimulation(maps)
    assert score.item() == pytest.approx((5 + 2 + 3 + 6) / 4)
    score.sum().backward()
    # The mean's gradient: 1/|P| at each peak (PRM's own backward would give 1, not 1/4).
    assert maps.grad[0, 0].tolist() == [[0.25, 0, 0.25], [0, 0, 0], [0.25, 0, 0.25]]


def test_a_plateau_gives_one_peak_at_its_first_position():
    # A 2x2 plateau of 4s and a 1x2 plateau of 3s: one peak each (the first in row-major order),
    # plus the isolated 1. Counting every position equal to its window maximum would give 7 peaks.
    maps = _grid([[4.0, 4.0, 0.0, 0.0],
                  [4.0, 4.0, 0.0, 1.0],
                  [0.0, 0.0, 0.0, 0.0],
                  [0.0, 3.0, 3.0, 0.0]])
    assert peak_mask(maps)[0, 0].tolist() == [[True, False, False, False],
                                              [False, False, False, True],
                                              [False, False, False, False],
                                              [False, True, False, False]]
    score = peak_stimulation(maps)
    assert score.item() == pytest.approx((4 + 1 + 3) / 3)
    score.sum().backward()
    expected = torch.zeros(4, 4)
    expected[0, 0] = expected[1, 3] = expected[3, 1] = 1 / 3
    torch.testing.assert_close(maps.grad[0, 0], expected)


def test_a_flat_map_has_a_single_peak():
    maps = torch.zeros(1, 1, 5, 5)                       # e.g. a ReLU map that is all zero
    assert peak_mask(maps).sum().item() == 1 and peak_mask(maps)[0, 0, 0, 0]


def test_a_local_peak_below_the_median_does_not_count():
    # (0, 0) = 2 is the maximum of its window, but the median of the map is 5.
    maps = _grid([[2.0, 0.0, 5.0, 6.0, 7.0],
                  [0.0, 0.0, 5.0, 6.0, 8.0],
                  [0.0, 0.0, 5.0, 6.0, 9.0]])
    assert maps.flatten().median().item() == 5
    mask = peak_mask(maps)[0, 0]
    assert mask.nonzero().tolist() == [[2, 4]]
    assert peak_stimulation(maps).item() == 9        # (2 + 9) / 2 without the median filter


@pytest.mark.parametrize("window", [3, 5])
def test_peaks_match_prms_max_pool_index_rule_on_maps_with_ties(window):
    torch.manual_seed(0)
    # Rounded ReLU maps: plateaus of zeros and of equal values everywhere.
    maps = torch.randn(3, 4, 9, 11).mul(2).round().clamp_min(0)
    assert (maps[..., 1:, :] == maps[..., :-1, :]).float().mean() > 0.3     # the maps do tie
    reference = _reference_rule(maps, window)
    assert torch.equal(peak_mask(maps, window), reference)
    assert reference.sum() < (maps >= F.max_pool2d(F.pad(maps, (window // 2,) * 4, value=float("-inf")),
                                                   window, stride=1)).sum()
