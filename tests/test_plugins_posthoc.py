"""The public post-hoc base with multi-forward extractors (issue 11, problem 1) and overrides."""

import numpy as np
import pytest
from conftest import plugins_from_tests
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from bench.metrics.conformance import check_explain_output_is_clean, toy
from methods import get_method


@pytest.fixture(scope="module")
def fx():
    with plugins_from_tests("posthoc_plugins") as module:
        yield module


class LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def library_maps(extractor_cls, model, layer, x, y, **kwargs):
    """What pytorch-grad-cam itself gives on the same model (its own wrapper, no base)."""
    with torch.enable_grad(), extractor_cls(model=LogitsOnly(model), target_layers=[layer], **kwargs) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in y])
    model.zero_grad(set_to_none=True)
    return maps


@pytest.mark.parametrize("plugin, library, kwargs", [
    ("FxScoreCAM", pytorch_grad_cam.ScoreCAM, {}),
    ("FxAblationCAM", pytorch_grad_cam.AblationCAM, {"batch_size": 8}),
])
def test_multi_forward_extractors_match_the_library_and_keep_the_clean_output(fx, plugin, library, kwargs):
    t = toy(getattr(fx, plugin), batch=3)
    t.model.eval()
    x, y = t.x, t.labels
    with torch.no_grad():
        clean = t.model(x)
    output, cam = t.method.explain(t.model, x, y)
    assert cam.shape == (3, *x.shape[-2:])
    assert torch.equal(output.logits, clean.logits)            # exactly the clean batch's logits
    assert torch.equal(output.features["layer5"], clean.features["layer5"])
    reference = library_maps(library, t.model, t.model.backbone.layer_module("layer5"), x, y, **kwargs)
    np.testing.assert_allclose(cam.numpy(), reference, atol=1e-5)
    assert cam.flatten(1).std(1).max() > 0                     # real maps, not constants


def test_the_issues_last_forward_plugin_returns_wrong_logits_silently_at_batch_16(fx):
    """The bug: the Output of ScoreCAM's last masked forward; same shape at batch 16, wrong values."""
    t = toy(fx.LastForwardScoreCAM, batch=16)
    t.model.eval()
    with torch.no_grad():
        clean = t.model(t.x)
    output, _ = t.method.explain(t.model, t.x, t.labels)
    assert output.logits.shape == clean.logits.shape
    assert (output.logits - clean.logits).abs().max() > 1e-3
    with pytest.raises(AssertionError, match=r"expected explain's logits of shape \(8, 7\).*came \(16, 7\)"):
        check_explain_output_is_clean(fx.LastForwardScoreCAM)       # the suite's batch of 8


def test_progress_bars_of_the_extractor_are_silenced(fx, capfd):
    t = toy(fx.FxScoreCAM, batch=2)
    t.model.eval()
    library_maps(pytorch_grad_cam.ScoreCAM, t.model, t.model.backbone.layer_module("layer5"), t.x, t.labels)
    assert "it/s" in capfd.readouterr().err                         # the library alone: a bar per sample
    t.method.explain(t.model, t.x, t.labels)
    assert capfd.readouterr().err == ""


def test_a_weights_override_plugs_in_as_the_extractor(fx):
    """Positive-gradient GradCAM on a GAP+FC head: the gradient at layer 5 is w_c/hw everywhere, so
    averaging its positive part gives LayerCAM's map (ReLU(Σ_k ReLU(w_ck) A_k)) exactly."""
    t = toy(fx.FxPositiveGradCAM, batch=6)
    t.model.eval()
    _, positive = t.method.explain(t.model, t.x, t.labels)
    _, layercam = get_method("layercam")().explain(t.model, t.x, t.labels)
    _, gradcam = get_method("gradcam")().explain(t.model, t.x, t.labels)
    torch.testing.assert_close(positive, layercam, atol=1e-5, rtol=0)
    assert (positive - gradcam).abs().max() > 1e-2                 # the override changed the weights


def test_gradient_cams_run_one_forward_and_leave_no_trace(fx):
    t = toy("gradcam", batch=4)
    t.model.eval()
    calls = []
    handle = t.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        output, _ = t.method.explain(t.model, t.x, t.labels)
    finally:
        handle.remove()
    assert calls == [4]                                            # the clean forward is the library's one
    assert not t.model.training
    assert all(p.grad is None and p.requires_grad for p in t.model.parameters())
    assert not output.logits.requires_grad


def test_an_extractor_that_never_forwards_the_batch_gets_one_clean_forward_from_the_base(fx):
    class NoForward:
        def __init__(self, model, target_layers):
            pass

        def __call__(self, input_tensor, targets):
            return np.zeros((input_tensor.shape[0], *input_tensor.shape[-2:]), np.float32)

    class Silent(fx.FxScoreCAM):
        name = "fx_silent"
        title = "Silent"
        extractor = NoForward

    t = toy(Silent, batch=3)
    t.model.eval()
    with torch.no_grad():
        clean = t.model(t.x)
    output, cam = t.method.explain(t.model, t.x, t.labels)
    assert torch.equal(output.logits, clean.logits) and cam.shape == (3, 32, 32)


def test_a_failing_extractor_restores_the_model(fx):
    t = toy(fx.FxFailingCAM, batch=9)
    t.model.train()
    with pytest.raises(RuntimeError, match="deliberately failing extractor"):
        t.method.explain(t.model, t.x, t.labels)
    assert t.model.training
    assert all(p.requires_grad for p in t.model.parameters())
    assert sum(len(m._forward_hooks) for m in t.model.modules()) == 0
