"""extended_metrics: the result's contract, the model left untouched, and known answers end to end."""
import numpy as np
import pytest
import torch

from au import get_codebook, render_au_maps
from backbones import build_backbone
from bench.metrics.extended import METRIC_DIRECTIONS, ExtendedResult, extended_metrics
from bench.metrics.localisation import au_region
from methods import get_method
from methods.cam import CAM

SIZE, STEPS = 32, 4


@pytest.fixture(scope="module")
def sample():
    """8 synthetic test faces at 32 px with landmarks, Neutral included."""
    from bench.config.settings import resolve
    from bench.data import load_dataset

    data = load_dataset("synthetic", resolve("smoke").data, 0)
    test = data.test
    return (torch.from_numpy(np.asarray(test.images[:8])), torch.from_numpy(np.asarray(test.labels[:8])).long(),
            torch.from_numpy(np.asarray(test.landmarks[:8])).float())


def tiny(method):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", pretrained=False, large_maps=True, width=0.125)
    return method.build(7, backbone)


def run(model, method, sample, **kwargs):
    images, labels, landmarks = sample
    return extended_metrics(model, method, images, labels, landmarks, codebook=get_codebook("paper"), edge=0.35,
                            num_classes=7, device=torch.device("cpu"), batch_size=8, steps=STEPS, **kwargs)


class AUMaskCAM(CAM):
    """Explains with the true class's AU region itself (the landmarks are handed over by the test)."""

    name = "au-mask"
    landmarks: torch.Tensor

    def explain(self, model, x, target):
        with torch.no_grad():
            output = model(x)
        maps, _ = render_au_maps(self.landmarks, target, (SIZE, SIZE), (SIZE, SIZE), get_codebook("paper"), 0.35)
        return output, au_region(maps).float()


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("name", ["cam", "gradcam"])
def test_result_contract_and_the_model_left_exactly_as_it_came(sample, name):
    method = get_method(name)()
    model = tiny(method).train()                      # in train mode on purpose: it must stay so
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    hooks = hook_count(model)
    result = run(model, method, sample)

    assert isinstance(result, ExtendedResult)
    assert set(result.metrics) == set(METRIC_DIRECTIONS)
    assert set(METRIC_DIRECTIONS.values()) <= {"higher", "lower"}
    assert METRIC_DIRECTIONS["deletion_auc"] == "lower" and METRIC_DIRECTIONS["sanity_rho_final"] == "lower"
    assert METRIC_DIRECTIONS["sanity_auc"] == "lower"
    for key in ("deletion_auc", "insertion_auc", "pointing", "relevance_mass", "relevance_rank",
                "sanity_rho_final", "sanity_auc"):
        assert 0.0 <= result.metrics[key] <= 1.0, key
    assert -0.5 <= result.metrics["road"] <= 0.5
    assert result.curves["curve_fractions"].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    for key in ("deletion_curve", "insertion_curve"):
        assert result.curves[key].shape == (STEPS + 1,)
    # Deletion ends where insertion starts (the blurred face), and vice versa (the clean face).
    assert result.curves["deletion_curve"][-1] == pytest.approx(result.curves["insertion_curve"][0], abs=1e-5)
    assert result.curves["deletion_curve"][0] == pytest.approx(result.curves["insertion_curve"][-1], abs=1e-5)

    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert hook_count(model) == hooks
    assert all(p.grad is None for p in model.parameters())


def test_a_cam_equal_to_the_au_mask_scores_mass_one_and_hits(sample):
    images, labels, landmarks = sample
    method = AUMaskCAM()
    method.landmarks = landmarks
    result = run(tiny(method).eval(), method, sample)
    assert result.metrics["relevance_mass"] == pytest.approx(1.0)
    assert result.metrics["pointing"] == pytest.approx(1.0)
    assert result.metrics["relevance_rank"] == pytest.approx(1.0)
    assert result.metrics["sanity_rho_final"] == pytest.approx(1.0)     # the mask ignores the weights
    assert result.metrics["sanity_auc"] == pytest.approx(1.0)
    assert result.details["n_localised"] == int((labels != 0).sum())   # Neutral faces have no AU map


def test_same_seed_same_numbers(sample):
    method = get_method("cam")()
    model = tiny(method).eval()
    first, second = run(model, method, sample, seed=3), run(model, method, sample, seed=3)
    assert first.metrics == second.metrics
    assert np.array_equal(first.curves["deletion_curve"], second.curves["deletion_curve"])


def test_an_empty_sample_is_an_error_not_a_number(sample):
    images, labels, landmarks = sample
    method = get_method("cam")()
    with pytest.raises(ValueError, match="no faces"):
        run(tiny(method), method, (images[:0], labels[:0], landmarks[:0]))


def macro(values: np.ndarray, labels: np.ndarray) -> float:
    keep = [c for c in range(1, 7) if ((labels == c) & ~np.isnan(values)).any()]
    return float(np.mean([values[(labels == c) & ~np.isnan(values)].mean() for c in keep]))


def test_per_face_scores_rebuild_every_headline_number(sample):
    method = get_method("cam")()
    result = run(tiny(method).eval(), method, sample)
    labels = sample[1].numpy()
    assert set(result.faces) == set(METRIC_DIRECTIONS)
    for key, values in result.faces.items():
        assert values.shape == (len(labels),) and values.dtype == np.float32, key
    for key in ("deletion_auc", "insertion_auc", "road", "sanity_rho_final", "sanity_auc"):
        assert result.metrics[key] == pytest.approx(float(result.faces[key].astype(np.float64).mean()), abs=1e-6), key
    for key in ("pointing", "relevance_mass", "relevance_rank"):
        assert np.isnan(result.faces[key][labels == 0]).all()       # Neutral: no AU map
        assert result.metrics[key] == pytest.approx(macro(result.faces[key], labels), abs=1e-6), key
    # The sanity curves: one point per cascade step; the headline is the last point of the |rho| curve.
    steps = result.curves["sanity_steps"]
    assert len(steps) == len(result.curves["sanity_abs_rho"]) == len(result.curves["sanity_signed_rho"]) >= 2
    assert result.metrics["sanity_rho_final"] == pytest.approx(float(result.curves["sanity_abs_rho"][-1]), abs=1e-6)
    assert (result.curves["sanity_abs_rho"] >= np.abs(result.curves["sanity_signed_rho"]) - 1e-6).all()


def test_the_predicted_target_scores_the_top1_class(sample):
    """A model that always predicts class 0 with certainty: scoring the true class (never 0 here but for
    Neutral faces) reads a confidence near 0, scoring the predicted class reads one near 1."""
    class Certain(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, labels=None):
            out = self.inner(x)
            out.logits = out.logits * 0 + torch.tensor([30.0] + [0.0] * 6)
            return out

        def class_map(self, output, target):
            return self.inner.class_map(output, target)

    method = get_method("cam")()
    model = Certain(tiny(method)).eval()
    labels = sample[1].numpy()
    true, predicted = run(model, method, sample), run(model, method, sample, target="predicted")
    assert predicted.details["faithfulness_target"] == "predicted"
    assert predicted.metrics["insertion_auc"] == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(true.faces["insertion_auc"][labels != 0], 0.0, atol=1e-6)
    # Localisation and sanity judge the true class's CAM in both modes.
    assert true.faces["relevance_mass"] == pytest.approx(predicted.faces["relevance_mass"], nan_ok=True)
    with pytest.raises(ValueError, match="faithfulness target 'top1'"):
        run(model, method, sample, target="top1")


def test_the_pointing_tolerance_reaches_the_extended_metrics(sample):
    """A CAM peaking a few pixels beside the AU region: a miss at tolerance 0, a hit with a tolerance."""
    images, labels, landmarks = sample

    class BesideCAM(CAM):
        name = "beside"

        def explain(self, model, x, target):
            with torch.no_grad():
                output = model(x)
            maps, _ = render_au_maps(landmarks, target, (SIZE, SIZE), (SIZE, SIZE), get_codebook("paper"), 0.35)
            region = au_region(maps)
            # Region grown by 2 px minus the region itself: every peak pixel lies 1-2 px outside it.
            from bench.metrics.localisation import dilate
            ring = dilate(region, 2.0) & ~dilate(region, 0.0)
            return output, ring.float()

    method = BesideCAM()
    model = tiny(method).eval()
    strict = run(model, method, sample)
    loose = run(model, method, sample, pointing_tolerance=2.0)
    assert strict.metrics["pointing"] == pytest.approx(0.0)
    assert loose.metrics["pointing"] == pytest.approx(1.0)
    assert loose.details["pointing_tolerance"] == 2.0
