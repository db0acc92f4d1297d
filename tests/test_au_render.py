import math

import pytest
import torch

from au import get_codebook, render_au_maps
from au.landmarks import MIRROR, flip_landmarks
from au.regions import REGION_AUS
from au.render import render_ellipses

CB = get_codebook("paper")


def test_mirror_is_an_involution_with_known_pairs():
    assert all(MIRROR[MIRROR[i]] == i for i in range(68))
    assert MIRROR[36] == 45 and MIRROR[48] == 54 and MIRROR[8] == 8 and MIRROR[30] == 30


def test_every_codebook_au_has_a_region():
    for name in ("paper", "reference"):
        assert set(get_codebook(name).used_aus()) <= set(REGION_AUS)


def test_maps_in_unit_range_and_neutral_invalid(template_landmarks):
    lm = template_landmarks.expand(7, 68, 2)
    maps, valid = render_au_maps(lm, torch.arange(7), (64, 64), (64, 64), CB)
    assert maps.shape == (7, 64, 64)
    assert valid.tolist() == [False] + [True] * 6
    assert maps.min() >= 0 and maps.max() <= 1
    assert maps[0].abs().sum() == 0
    assert (maps[1:].flatten(1).amax(1) == 1).all()


def test_nan_landmarks_are_invalid(template_landmarks):
    lm = template_landmarks.clone()[None].repeat(2, 1, 1)
    lm[1, 10, 0] = math.nan
    maps, valid = render_au_maps(lm, torch.tensor([1, 1]), (64, 64), (32, 32), CB)
    assert valid.tolist() == [True, False]
    assert torch.isfinite(maps).all() and maps[1].sum() == 0


def test_face_outside_the_frame_is_invalid(template_landmarks):
    lm = (template_landmarks + 500)[None]
    _, valid = render_au_maps(lm, torch.tensor([1]), (64, 64), (64, 64), CB)
    assert not valid.item()


def test_flipped_landmarks_give_mirrored_maps(template_landmarks):
    torch.manual_seed(0)
    # An asymmetric face: jitter every point, shift it off centre.
    lm = (template_landmarks + torch.randn(68, 2) * 0.8 + torch.tensor([3.0, -2.0]))[None].repeat(7, 1, 1)
    labels = torch.arange(7)
    for out in ((64, 64), (16, 16), (28, 28)):
        maps, valid = render_au_maps(lm, labels, (64, 64), out, CB)
        flipped, valid_f = render_au_maps(flip_landmarks(lm, 64), labels, (64, 64), out, CB)
        assert torch.equal(valid, valid_f)
        torch.testing.assert_close(flipped, maps.flip(-1), atol=1e-4, rtol=0)


def test_low_resolution_map_matches_the_area_average_of_the_full_map(template_landmarks):
    lm = template_landmarks[None]
    full, _ = render_au_maps(lm, torch.tensor([4]), (64, 64), (64, 64), CB)
    low, _ = render_au_maps(lm, torch.tensor([4]), (64, 64), (16, 16), CB)
    pooled = torch.nn.functional.avg_pool2d(full[None], 4)[0]
    cos = torch.nn.functional.cosine_similarity(pooled.flatten(1), low.flatten(1)).item()
    assert cos > 0.97


def test_happiness_lights_the_mouth_corners_not_the_brows(template_landmarks):
    lm = template_landmarks[None]
    maps, _ = render_au_maps(lm, torch.tensor([1]), (64, 64), (64, 64), CB)
    x, y = template_landmarks[48].round().long().tolist()
    assert maps[0, y, x] == 1
    bx, by = template_landmarks[19].round().long().tolist()
    assert maps[0, by, bx] == 0


def test_classes_beyond_the_codebook_are_invalid(template_landmarks):
    lm = template_landmarks[None].repeat(2, 1, 1)
    maps, valid = render_au_maps(lm, torch.tensor([1, 7]), (64, 64), (16, 16), CB)   # 7: Contempt
    assert valid.tolist() == [True, False] and maps[1].sum() == 0


def _one_ellipse(cx, cy, ax, ay, ramp, size=(64, 64), out=(64, 64)):
    ellipses = torch.tensor([[[cx, cy, ax, ay]]])
    return render_ellipses(ellipses, torch.ones(1, 1, dtype=torch.bool), torch.tensor([ramp]), size, out)[0]


def test_an_ellipse_has_its_semi_axes_along_x_and_y_and_half_value_on_its_boundary():
    # Centre (x=32, y=20), semi-axes 10 along x and 5 along y, soft edge 2 px wide.
    m = _one_ellipse(32.0, 20.0, 10.0, 5.0, 2.0)
    assert (m[20] > 0).nonzero().flatten().tolist() == list(range(22, 43))      # x in [32 - 10, 32 + 10]
    assert (m[:, 32] > 0).nonzero().flatten().tolist() == list(range(15, 26))   # y in [20 - 5, 20 + 5]
    assert (m >= 0.5).sum(1).max() == 21 and (m >= 0.5).sum(0).max() == 11
    for x, y in [(42, 20), (22, 20), (32, 15), (32, 25), (38, 24), (26, 16)]:    # (dx/10)² + (dy/5)² = 1
        assert m[y, x].item() == pytest.approx(0.5, abs=1e-5), (x, y)
    for x, y in [(41, 20), (32, 24), (32, 20)]:                                   # one ramp half inside, centre
        assert m[y, x].item() == 1.0, (x, y)
    assert m[20, 43].item() == 0 and m[26, 32].item() == 0                       # one ramp half outside


def test_an_ellipse_centred_on_a_pixel_centre_reads_one_there():
    for ax, ay in [(3.0, 3.0), (6.0, 2.0), (1.5, 4.0)]:
        m = _one_ellipse(10.0, 12.0, ax, ay, 1.0)
        assert m[12, 10].item() == 1.0
    # at a quarter of the resolution, output pixel (row 2, column 3) has its centre at input (x 13.5, y 9.5)
    m = _one_ellipse(13.5, 9.5, 3.0, 3.0, 1.0, out=(16, 16))
    assert m[2, 3].item() == 1.0
