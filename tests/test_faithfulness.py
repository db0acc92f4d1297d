"""Deletion / insertion AUC and ROAD: known answers on a model that reads one known pixel region."""
import pytest
import torch
from torch import nn

from bench.metrics.faithfulness import (ROAD_FRACTIONS, blur_baseline, curve_auc, deletion_insertion, impute_linear,
                                neighbour_sum, pixel_ranks, road, target_confidence)
from methods import Output

SIZE = 32
REGION = (slice(4, 20), slice(4, 20))       # the 16x16 patch the model reads (rows, cols)


class RegionReader(nn.Module):
    """Class 0 when the patch ``REGION`` has contrast (mean x² high), class 1 otherwise."""

    def __init__(self, gain: float = 10.0):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(gain))

    def forward(self, x, labels=None):
        s = x[:, :, REGION[0], REGION[1]].pow(2).mean((1, 2, 3))
        z = self.gain * (s - 0.5)
        return Output(logits=torch.stack([z, -z], 1), features={})


def checkerboard_faces(n: int = 8) -> torch.Tensor:
    """±1 checkerboard inside ``REGION`` (blur erases it), small noise elsewhere."""
    g = torch.Generator().manual_seed(0)
    x = 0.05 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    board = ((yy + xx) % 2 * 2 - 1).float()
    x[:, :, REGION[0], REGION[1]] = board[REGION[0], REGION[1]]
    return x


def bump(centre: tuple[float, float], n: int = 8) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
    d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    return torch.exp(-d2 / (2 * 6.0 ** 2)).expand(n, SIZE, SIZE)


def predictor(model):
    return lambda x: model(x).logits


ON_REGION, AWAY = bump((12, 12)), bump((31, 31))


def curves(cam, steps=20, gain=10.0):
    model, x = RegionReader(gain), checkerboard_faces(len(cam))
    target = torch.zeros(len(cam), dtype=torch.long)
    ranks = pixel_ranks(cam, torch.Generator().manual_seed(1))
    return deletion_insertion(predictor(model), x, target, ranks, blur_baseline(x), steps)


def test_blur_baseline_keeps_a_flat_image_and_erases_a_checkerboard():
    flat = torch.full((1, 3, SIZE, SIZE), 0.7)
    assert torch.allclose(blur_baseline(flat), flat, atol=1e-6)
    board = checkerboard_faces(1)
    assert blur_baseline(board)[:, :, 8:16, 8:16].abs().max() < 0.05     # the patch's inside: contrast gone


def test_deletion_falls_faster_when_the_cam_covers_the_region_the_model_reads():
    fractions = torch.linspace(0, 1, 21)
    del_on, ins_on = curves(ON_REGION)
    del_away, ins_away = curves(AWAY)
    assert del_on[:, 0].mean() > 0.99 and del_away[:, 0].mean() > 0.99        # the clean image: class 0
    # A quarter of the pixels, most of them the read patch, are gone on the left; none of it on the right.
    assert del_on[:, 5].mean() < 0.05 < 0.95 < del_away[:, 5].mean()
    assert curve_auc(del_on, fractions).mean() < 0.25 < 0.6 < curve_auc(del_away, fractions).mean()
    assert curve_auc(ins_on, fractions).mean() > 0.6 > 0.45 > curve_auc(ins_away, fractions).mean()


def test_a_constant_cam_gives_deletion_equal_to_insertion_up_to_noise():
    fractions = torch.linspace(0, 1, 21)
    flat = torch.zeros(16, SIZE, SIZE)
    deletion, insertion = curves(flat, gain=3.0)
    gap = (curve_auc(deletion, fractions).mean() - curve_auc(insertion, fractions).mean()).abs()
    assert gap < 0.03
    # The same check fails for a map that does rank the pixels (a broken "constant" CAM).
    deletion, insertion = curves(bump((12, 12), 16), gain=3.0)
    assert (curve_auc(deletion, fractions).mean() - curve_auc(insertion, fractions).mean()).abs() > 0.3


def test_ties_are_broken_at_random_not_by_position():
    flat = torch.zeros(1, SIZE, SIZE)
    ranks = pixel_ranks(flat, torch.Generator().manual_seed(0)).view(SIZE, SIZE).double()
    assert sorted(ranks.flatten().long().tolist()) == list(range(SIZE * SIZE))
    top, bottom = ranks[: SIZE // 2].mean(), ranks[SIZE // 2:].mean()
    assert abs(top - bottom) < 0.1 * SIZE * SIZE             # raster order would differ by SIZE²/2
    ordered = pixel_ranks(ON_REGION[:1], torch.Generator().manual_seed(0)).view(SIZE, SIZE)
    assert ordered[12, 12] == 0 and ordered[31, 31] == SIZE * SIZE - 1


def test_auc_is_the_trapezoid_area():
    assert curve_auc(torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([0.0, 0.5, 1.0])).item() == pytest.approx(0.5)
    assert curve_auc(torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([0.0, 0.5, 1.0])).item() == pytest.approx(0.75)


def test_target_confidence_is_the_softmax_of_the_target_class():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    conf = target_confidence(logits, torch.tensor([1, 0]))
    assert conf.tolist() == pytest.approx([0.5, 1 / (1 + torch.e ** -2)])


def test_neighbour_stencil_has_roads_weights():
    u = torch.zeros(1, 1, 5, 5)
    u[0, 0, 2, 2] = 12.0
    out = neighbour_sum(u)[0, 0]
    assert out[1:4, 1:4].flatten().tolist() == pytest.approx([1, 2, 1, 2, 0, 2, 1, 2, 1])
    assert out.sum() == pytest.approx(12.0)


def test_linear_imputation_matches_pytorch_grad_cams_imputer():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    missing = torch.rand(2, 1, 16, 16, generator=g) < 0.6
    missing[:, :, 3:10, 4:12] = True                        # and one big hole
    ours = impute_linear(x, missing, noise=0.0)
    reference = torch.stack([NoisyLinearImputer(noise=0.0)(x[i], (~missing[i, 0]).float()) for i in range(2)])
    assert torch.allclose(ours, reference, atol=1e-3)
    assert torch.equal(ours[~missing.expand_as(x)], x[~missing.expand_as(x)])     # known pixels untouched


#: The imputer's stated agreement with pytorch-grad-cam's direct solve up to 224 px (docs/metrics.md:
#: measured at most 1.9e-4, on a smooth image with 90 % of its pixels missing).
IMPUTER_GAP = 5e-4


@pytest.mark.parametrize("side", [64, 224])
@pytest.mark.parametrize("kind", ["white noise", "smooth"])
def test_linear_imputation_matches_the_library_at_the_sizes_we_run(side, kind):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    if kind == "white noise":
        x = torch.randn(1, 3, side, side, generator=g)
    else:
        x = torch.nn.functional.interpolate(torch.randn(1, 3, 6, 6, generator=g), size=(side, side), mode="bicubic",
                                            align_corners=True)
    relevance = torch.nn.functional.interpolate(torch.rand(1, 1, 7, 7, generator=g), size=(side, side), mode="bilinear")
    rank = relevance.flatten().argsort(descending=True).argsort().view(1, 1, side, side)
    missing = rank < 0.9 * side * side                      # ROAD's hardest step: MoRF at 90 %
    ours = impute_linear(x, missing, noise=0.0)
    reference = NoisyLinearImputer(noise=0.0)(x[0], (~missing[0, 0]).float())[None]
    assert (ours - reference).abs().max().item() <= IMPUTER_GAP


def test_road_rewards_a_cam_on_the_read_region_and_penalises_one_away_from_it():
    model, x = RegionReader(), checkerboard_faces(4)
    target = torch.zeros(len(x), dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    on = road(predictor(model), x, target, pixel_ranks(ON_REGION[:4], g), generator=g)
    away = road(predictor(model), x, target, pixel_ranks(AWAY[:4], g), generator=g)
    assert on.morf.shape == (len(x), len(ROAD_FRACTIONS))
    assert on.score.mean() > 0.3 > 0 > -0.1 > away.score.mean()
