"""ADL: the drop mask, the importance map, the reference's draw rule and where the layers sit."""
import pytest
import torch

from backbones import build_backbone
from methods import get_method
from methods.adl import adl, selects_drop_mask

ATTENTION = torch.tensor([[1.0, 2.0], [3.0, 4.0]])


def _features(scale=1.0):
    """(1, 2, 2, 2) features whose channel mean is scale · ATTENTION."""
    offset = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    return (scale * torch.stack([ATTENTION + offset, ATTENTION - offset]))[None]


def test_the_drop_mask_removes_the_positions_above_gamma_times_the_max():
    f = _features()
    # γ = 0.6: 0.6 · max(A) = 2.4 -> A = 1, 2 kept, A = 3, 4 dropped.
    out = adl(f, drop_rate=1.0, threshold=0.6, draw=0.0)
    torch.testing.assert_close(out, f * torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    # γ = 0.8: 3.2 -> only A = 4 dropped.
    out = adl(f, drop_rate=1.0, threshold=0.8, draw=0.0)
    torch.testing.assert_close(out, f * torch.tensor([[1.0, 1.0], [1.0, 0.0]]))


def test_the_threshold_uses_each_samples_own_maximum():
    f = torch.cat([_features(), _features(10.0)])       # the second sample's max is 40
    out = adl(f, drop_rate=1.0, threshold=0.6, draw=0.0)
    keep = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(out, f * keep)


def test_the_importance_map_is_the_sigmoid_of_the_attention():
    f = _features()
    out = adl(f, drop_rate=0.0, threshold=0.6, draw=0.5)
    torch.testing.assert_close(out, f * torch.sigmoid(ATTENTION))


@pytest.mark.parametrize("draw, drop_rate, drops", [
    (0.0, 0.4, False), (0.3, 0.4, False), (0.59, 0.4, False),   # u < 1 − p: importance map
    (0.61, 0.4, True), (0.99, 0.4, True),                        # u >= 1 − p: drop mask
    (0.0, 1.0, True), (0.999, 0.0, False),
])
def test_the_draw_selects_the_drop_mask_when_u_is_at_least_one_minus_p(draw, drop_rate, drops):
    assert selects_drop_mask(draw, drop_rate) is drops


def test_identity_in_eval_and_weights_keys_unchanged():
    torch.manual_seed(0)
    model = get_method("adl")().build(7, build_backbone("resnet18", large_maps=True, width=0.25))
    plain = get_method("cam")().build(7, build_backbone("resnet18", large_maps=True, width=0.25))
    plain.load_state_dict(model.state_dict())          # hooks add no parameters: same keys
    x = torch.randn(2, 3, 32, 32)
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, plain(x).logits)


@pytest.mark.parametrize("drop_rate", [1.0, 0.0])
def test_layers_sit_after_layer3_0_layer4_0_and_layer4_last(drop_rate):
    """A plain CAM model with hand-written ADL after torchvision's layer3[0], layer4[0] and
    layer4[-1] gives the ADL model's training forward exactly, and other positions do not."""
    torch.manual_seed(0)
    adl_cls = get_method("adl")
    model = adl_cls(adl_cls.Config(drop_rate=drop_rate, threshold=0.9)).build(
        7, build_backbone("resnet18", large_maps=True, width=0.25))
    for m in model.modules():            # timm zero-inits each block's last BN: blocks start as identities
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    plain = get_method("cam")().build(7, build_backbone("resnet18", large_maps=True, width=0.25))
    plain.load_state_dict(model.state_dict())

    def by_hand(module, inputs, out):
        a = out.mean(1, keepdim=True)
        if drop_rate == 1.0:
            return out * (a < 0.9 * a.amax((2, 3), keepdim=True)).float()
        return out * torch.sigmoid(a)

    def forward_with_hooks(blocks, x):
        handles = [b.register_forward_hook(by_hand) for b in blocks]
        try:
            return plain(x)
        finally:
            for h in handles:
                h.remove()

    stages = plain.backbone.stages
    x = torch.randn(2, 3, 64, 64)
    model.train(), plain.train()
    with torch.no_grad():
        out = model(x)
        expected = forward_with_hooks([stages[2][0], stages[3][0], stages[3][-1]], x)
        torch.testing.assert_close(out.features["layer4"], expected.features["layer4"])
        torch.testing.assert_close(out.features["layer5"], expected.features["layer5"])
        torch.testing.assert_close(out.logits, expected.logits)
        kept = (out.features["layer5"].abs().sum(1) > 0).float().mean()
        assert 0 < kept < 1 if drop_rate == 1.0 else kept == 1          # the mask did drop, not everything
        for shifted in ([stages[2][-1], stages[3][0], stages[3][-1]], [stages[2][0], stages[3][-1]]):
            other = forward_with_hooks(shifted, x)
            assert not torch.allclose(out.features["layer5"], other.features["layer5"], atol=1e-4)
