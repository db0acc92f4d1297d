"""CutMix: the references' box sampling, one box for images and AU maps, the area λ in the loss."""
import pytest
import torch

from methods import Batch, get_method
from methods.base import Output
from methods.cutmix import Box, cutmix, random_box


def test_box_sampling_on_a_non_square_image():
    # λ = 0.75 -> ratio 0.5: 16 rows and 24 columns before clipping (half-sides 8 and 12).
    # u_y = 0.1 -> centre row int(3.2) = 3 -> rows [0, 11); u_x = 0.99 -> centre column 47 -> [35, 48).
    box = random_box(0.75, 0.1, 0.99, (32, 48))
    assert box.pixels(32, 48) == (0, 11, 35, 48)
    assert box.area(32, 48) == 11 * 13


def test_box_side_is_floored_to_an_even_number_of_pixels():
    # λ = 0.91 -> ratio 0.3: int(32 · 0.3) = 9, half 4 -> 8 rows around row 16 (not 9 or 10).
    box = random_box(0.91, 0.5, 0.5, (32, 32))
    assert box.pixels(32, 32) == (12, 20, 12, 20)
    # λ -> 1 gives an empty box, λ = 0 the whole image (centre ± n/2, clipped).
    assert random_box(1.0, 0.3, 0.7, (32, 32)).area(32, 32) == 0
    assert random_box(0.0, 0.5, 0.5, (32, 32)).pixels(32, 32) == (0, 32, 0, 32)


def test_same_box_for_image_and_au_maps():
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


def test_a_sampled_box_lands_on_every_map_size_as_the_same_fractions():
    box = random_box(0.6, 0.3, 0.8, (64, 64))          # rows [19 - 20, 19 + 20), cols [51 - 20, 64)
    assert box.pixels(64, 64) == (0, 39, 31, 64)
    images = torch.zeros(1, 3, 64, 64)
    maps = {(64, 64): torch.zeros(1, 64, 64), (28, 28): torch.zeros(1, 28, 28), (16, 16): torch.zeros(1, 16, 16)}
    donor = Batch(torch.ones(1, 3, 64, 64), torch.tensor([1]), torch.zeros(1, 68, 2),
                  au_maps={k: torch.ones_like(v) for k, v in maps.items()})
    both = Batch(torch.cat([images, donor.images]), torch.tensor([0, 1]), torch.zeros(2, 68, 2),
                 au_maps={k: torch.cat([v, donor.au_maps[k]]) for k, v in maps.items()})
    mixed = cutmix(both, box, torch.tensor([1, 0]))
    for (h, w), m in mixed.au_maps.items():
        rows, cols = m[0].nonzero()[:, 0], m[0].nonzero()[:, 1]
        top, bottom = rows.min().item() / h, (rows.max().item() + 1) / h
        left, right = cols.min().item() / w, (cols.max().item() + 1) / w
        # the pasted box, as fractions, is the image's box to within one map pixel
        assert abs(top - 0 / 64) <= 1 / h and abs(bottom - 39 / 64) <= 1 / h
        assert abs(left - 31 / 64) <= 1 / w and abs(right - 64 / 64) <= 1 / w
    assert torch.equal(mixed.images[0, 0].nonzero().min(0).values, torch.tensor([0, 31]))


def test_loss_uses_the_area_lambda():
    method = get_method("cutmix")()
    logits = torch.randn(2, 7)
    labels, labels_b = torch.tensor([0, 1]), torch.tensor([2, 3])
    batch = Batch(torch.zeros(2, 3, 4, 4), labels, torch.zeros(2, 68, 2),
                  extras={"cutmix": {"labels_b": labels_b, "lam": 0.25}})
    ce = torch.nn.functional.cross_entropy
    expected = 0.25 * ce(logits, labels) + 0.75 * ce(logits, labels_b)
    torch.testing.assert_close(method.loss(Output(logits, {}), batch), expected)
