"""Pointing game, relevance mass and relevance rank against AU regions: hand-computed answers."""
import math

import pytest
import torch

from au import get_codebook, render_au_maps
from bench.metrics.localisation import au_region, pointing_game, relevance_mass, relevance_rank

HAPPINESS = 1


@pytest.fixture
def happy_region(template_landmarks):
    """The AU map of Happiness for the synthetic template face (64 px) and its region mask."""
    maps, valid = render_au_maps(template_landmarks[None], torch.tensor([HAPPINESS]), (64, 64), (64, 64),
                                 get_codebook("paper"), 0.35)
    assert valid.item()
    return maps, au_region(maps)


def test_a_cam_equal_to_the_au_mask_has_mass_one_and_a_pointing_hit(happy_region):
    _, region = happy_region
    cam = region.float()
    assert relevance_mass(cam, region).item() == pytest.approx(1.0)
    assert pointing_game(cam, region).item() == pytest.approx(1.0)
    assert relevance_rank(cam, region).item() == pytest.approx(1.0)


def test_the_soft_au_map_points_inside_but_spills_mass_over_the_ramp(happy_region):
    soft, region = happy_region
    assert pointing_game(soft, region).item() == pytest.approx(1.0)
    mass = relevance_mass(soft, region).item()
    assert 0.5 < mass < 1.0                      # the 0.5 → 0 ramp outside the ellipses carries the rest
    inside = soft[region].sum() / soft.sum()
    assert mass == pytest.approx(inside.item())


def test_a_flat_cam_scores_chance_the_regions_area(happy_region):
    _, region = happy_region
    area = region.float().mean().item()
    flat = torch.full((1, 64, 64), 0.3)
    assert 0 < area < 0.5
    assert pointing_game(flat, region).item() == pytest.approx(area)
    assert relevance_rank(flat, region).item() == pytest.approx(area)
    assert relevance_mass(flat, region).item() == pytest.approx(area)


def test_a_cam_peaking_off_the_face_misses(happy_region):
    _, region = happy_region
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    corner = torch.exp(-((yy - 0) ** 2 + (xx - 0) ** 2) / (2 * 3.0 ** 2))[None]
    assert pointing_game(corner, region).item() == 0.0
    assert relevance_mass(corner, region).item() < 0.01
    assert relevance_rank(corner, region).item() < 0.01


def test_hand_computed_two_by_two():
    cam = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    region = torch.tensor([[[False, True], [True, False]]])
    assert relevance_mass(cam, region).item() == pytest.approx((3 + 2) / 10)
    assert relevance_rank(cam, region).item() == pytest.approx(0.5)      # top-2 = {4, 3}: one inside
    assert pointing_game(cam, region).item() == 0.0                      # the 4 is outside


def test_ties_count_in_expectation():
    cam = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    region = torch.tensor([[[True, False], [False, False]]])
    assert pointing_game(cam, region).item() == pytest.approx(0.5)       # two peaks, one inside
    assert relevance_rank(cam, region).item() == pytest.approx(0.5)      # K = 1 among two tied pixels


def test_batched_and_undefined_cases():
    cam = torch.tensor([[[4.0, 3.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    region = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
    assert pointing_game(cam, region)[0].item() == 1.0
    assert relevance_mass(cam, region).tolist() == pytest.approx([0.4, 0.0])    # all-zero map: no mass anywhere
    ranks = relevance_rank(cam, region)
    assert ranks[0].item() == 1.0 and math.isnan(ranks[1].item())              # empty region: undefined


def test_region_is_the_inside_of_the_ellipses(happy_region):
    soft, region = happy_region
    assert bool((soft[region] >= 0.5).all()) and bool((soft[~region] < 0.5).all())
    assert (soft == 1).sum() > 0 and region.sum() > (soft == 1).sum()


def test_a_pointing_tolerance_turns_a_near_miss_into_a_hit():
    region = torch.zeros(1, 32, 32, dtype=torch.bool)
    region[0, 10:14, 10:14] = True                       # a 4x4 region
    cam = torch.zeros(1, 32, 32)
    cam[0, 12, 17] = 1.0                                 # peak 4 px right of the region's edge column 13
    assert pointing_game(cam, region).item() == 0.0
    assert pointing_game(cam, region, tolerance=3.9).item() == 0.0
    assert pointing_game(cam, region, tolerance=4.0).item() == 1.0
    cam = torch.zeros(1, 32, 32)
    cam[0, 17, 17] = 1.0                                 # diagonal: 4 px down and right of the corner (13, 13)
    assert pointing_game(cam, region, tolerance=5.0).item() == 0.0      # sqrt(32) = 5.66 px away
    assert pointing_game(cam, region, tolerance=5.7).item() == 1.0
    with pytest.raises(ValueError, match=">= 0 pixels"):
        pointing_game(cam, region, tolerance=-1)


def test_zhang_et_al_15_px_at_224_scales_with_the_input_side():
    """Documented scaling: 15 px at 224 is 15 * side / 224 at another side (4.29 px at 64)."""
    region = torch.zeros(1, 64, 64, dtype=torch.bool)
    region[0, 20:30, 20:30] = True
    cam = torch.zeros(1, 64, 64)
    cam[0, 25, 33] = 1.0                                 # 4 px outside
    assert pointing_game(cam, region, tolerance=15 * 64 / 224).item() == 1.0
    cam[0, 25, 33], cam[0, 25, 35] = 0.0, 1.0            # 6 px outside
    assert pointing_game(cam, region, tolerance=15 * 64 / 224).item() == 0.0
