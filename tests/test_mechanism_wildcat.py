"""WILDCAT's spatial pooling, its min term and where its dropout acts."""
import pytest
import torch
from torch import nn

from methods import get_method
from methods.wildcat import wildcat_pool


class _Features(nn.Module):
    """A backbone that hands its input on as the last map (so the head sees known features)."""

    channels = {"layer5": 2}
    last = "layer5"

    def forward(self, x):
        return {"layer5": x}


def test_pooling_on_a_hand_made_map():
    maps = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    # k+ = 0.5·4 = 2 -> mean(4, 3) = 3.5; k− = 0.25·4 = 1 -> 1; α = 0.5 -> 3.5 + 0.5 = 4.0
    assert wildcat_pool(maps, 0.5, 0.25, 0.5).item() == pytest.approx(4.0)
    assert wildcat_pool(maps, 1, 0, 0.7).item() == pytest.approx(4.0)          # k >= 1 is a count
    assert wildcat_pool(maps, 2, 2, 1.0).item() == pytest.approx(3.5 + 1.5)   # min term is real


def test_dropout_acts_on_the_sorted_region_scores():
    maps = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    # Top 2 of the sorted (4, 3, 2, 1), each dropped or doubled (p = 0.5), and not re-sorted:
    # (0|8 + 0|6) / 2 -> {0, 3, 4, 7}. Dropout on the map before the sort would let 2 move up (5, 2.5, ...).
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        seen.add(wildcat_pool(maps, 2, 0, 0.0, dropout=0.5, training=True).item())
    assert seen == {0.0, 3.0, 4.0, 7.0}
    assert wildcat_pool(maps, 2, 0, 0.0, dropout=0.5, training=False).item() == pytest.approx(3.5)


def test_dropout_leaves_the_class_maps_alone():
    """The reference's wc_dropout sits inside the pooling: the CAMs never see it."""
    torch.manual_seed(0)
    wildcat = get_method("wildcat")
    method = wildcat(wildcat.Config(maps=2, dropout=0.5))
    model = method.build(3, _Features()).train()
    x = torch.rand(4, 2, 5, 5) + 0.5
    with torch.no_grad():
        out = model(x)
        weight = model.transfer.weight.view(3, 2, 2)                      # (class, modality, channel)
        bias = model.transfer.bias.view(3, 2)
        expected = torch.einsum("bchw,kmc->bkmhw", x, weight) + bias[None, :, :, None, None]
        torch.testing.assert_close(out.cams, expected.mean(2))
        model.eval()
        assert torch.equal(model(x).logits, wildcat_pool(out.cams, 0.5, 0.1, 0.6))
        assert not torch.allclose(out.logits, model(x).logits)           # training: the scores did drop
