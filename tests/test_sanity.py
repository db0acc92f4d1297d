"""Model-parameter randomisation (Adebayo et al., 2018): similarity measures, the cascade, its summary."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from backbones import build_backbone
from bench.data.transforms import to_input
from bench.metrics.extended import similarity_maps, randomisation_similarity
from bench.metrics.sanity import average_ranks, cascade_steps, cascade_summary, reinitialise, spearman, ssim
from methods import get_method
from methods.cam import CAM


class CentreBlob(CAM):
    """A deliberately weight-independent 'explanation': the same centre blob for every face."""

    name = "centre-blob"

    def explain(self, model, x, target):
        with torch.no_grad():
            output = model(x)
        H, W = x.shape[-2:]
        yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                                indexing="ij")
        blob = torch.exp(-((yy - H / 2) ** 2 + (xx - W / 2) ** 2) / (2 * (H / 6) ** 2))
        return output, blob.expand(x.shape[0], H, W)


def tiny_cam_model(method):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", pretrained=False, large_maps=True, width=0.125)
    return method.build(7, backbone).eval()


def faces(n=8, size=32):
    return torch.randint(0, 256, (n, size, size, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def cascade(method):
    model = tiny_cam_model(method)
    images, labels = faces(), torch.arange(8) % 7
    _, cam = method.explain(model, to_input(images), labels)
    trained = [similarity_maps(cam, (32, 32))]
    return randomisation_similarity(model, method, images, labels, trained, device=torch.device("cpu"),
                                    channels_last=False, batch_size=8, seed=0, size=(32, 32))


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 6, 6), generator=g).float()          # many ties
    b = torch.randint(0, 5, (3, 6, 6), generator=g).float()
    ours = spearman(a, b)
    for i in range(3):
        assert ours[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten()).statistic, abs=1e-5)


def test_spearman_known_values_and_flat_maps():
    ramp = torch.arange(16.0).view(1, 4, 4)
    assert spearman(ramp, ramp ** 3).item() == pytest.approx(1.0)     # monotone: same ranking
    assert spearman(ramp, -ramp).item() == pytest.approx(-1.0)
    flat = torch.zeros(1, 4, 4)
    assert spearman(flat, flat).item() == 1.0                       # unchanged flat map: identical
    assert spearman(flat, ramp).item() == 0.0                       # flat vs structured: nothing shared


def test_average_ranks_share_ties():
    assert average_ranks(torch.tensor([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[2.5, 0.0, 2.5, 1.0]]


def test_ssim_is_one_for_identical_maps_and_lower_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 32, 32, generator=g)
    assert ssim(a, a).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert (ssim(a, torch.rand(2, 32, 32, generator=g)) < 0.2).all()


def test_cascade_goes_from_the_head_down_the_backbone_stages():
    model = tiny_cam_model(get_method("cam")())
    names = [step.name for step in cascade_steps(model)]
    assert names == ["head", "layer5", "layer4", "layer3", "layer2", "layer1"]   # nothing left for "rest"


def test_cascade_without_a_backbone_uses_children_in_reverse_then_the_rest():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    model.register_parameter("scale", nn.Parameter(torch.ones(1)))
    assert [step.name for step in cascade_steps(model)] == ["2", "0", "rest"]


def test_reinitialise_changes_only_its_modules_and_keeps_the_global_rng():
    model = tiny_cam_model(get_method("cam")())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    reinitialise([model.fc], set(), 7)
    assert torch.equal(torch.get_rng_state(), state)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}


def test_a_weight_dependent_cam_moves_away_from_its_trained_self():
    result = cascade(get_method("cam")())
    assert len(result["spearman"]) == 6 and result["face_spearman"].shape == (6, 8)
    summary = cascade_summary(result["face_spearman"])
    assert summary["rho_final"] < 0.5 and summary["auc"] < 0.9
    assert result["abs_spearman"] == pytest.approx(list(summary["abs_curve"]))
    assert result["spearman"] == pytest.approx(list(summary["signed_curve"]))


def test_a_weight_independent_centre_blob_fails():
    result = cascade(CentreBlob())
    assert result["spearman"] == pytest.approx([1.0] * 6)
    assert result["ssim"] == pytest.approx([1.0] * 6, abs=1e-5)
    summary = cascade_summary(result["face_spearman"])
    assert summary["rho_final"] == pytest.approx(1.0) and summary["auc"] == pytest.approx(1.0)


def test_signs_cancel_in_a_signed_average_but_not_in_the_summary():
    """+0.9 at one step and -0.9 at the other (and faces split in sign): the old signed mean over faces
    and steps says 0, a "pass"; the maps kept (or mirrored) their ranking all along, and |rho| says 0.9."""
    rho = np.array([[0.9, 0.9, -0.9, -0.9],
                    [-0.9, -0.9, 0.9, 0.9]])           # (steps, faces)
    assert rho.mean() == pytest.approx(0.0)             # what sanity_similarity reported
    summary = cascade_summary(rho)
    assert summary["signed_curve"] == pytest.approx([0.0, 0.0])
    assert summary["abs_curve"] == pytest.approx([0.9, 0.9])
    assert summary["rho_final"] == pytest.approx(0.9)
    assert summary["auc"] == pytest.approx(0.9)
    assert summary["face_final"] == pytest.approx([0.9] * 4)


def test_summary_known_values():
    # Three steps, one face: |rho| 1 -> 0.5 -> 0; area over x = 0, 0.5, 1 by the trapezoid = 0.5.
    summary = cascade_summary(np.array([[1.0], [-0.5], [0.0]]))
    assert summary["rho_final"] == pytest.approx(0.0)
    assert summary["auc"] == pytest.approx(0.5)
    # Mean over faces of each face's area = area of the mean curve (linear), so per-face values add up.
    rho = np.random.default_rng(0).uniform(-1, 1, (5, 7))
    summary = cascade_summary(rho)
    x = np.linspace(0, 1, 5)
    curve = np.abs(rho).mean(1)
    assert summary["auc"] == pytest.approx(float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(x))))
    assert summary["auc"] == pytest.approx(summary["face_auc"].mean())
    assert cascade_summary(np.array([[-0.3, 0.3]]))["auc"] == pytest.approx(0.3)      # one step: its value
    assert np.isnan(cascade_summary(np.zeros((0, 3)))["rho_final"])
