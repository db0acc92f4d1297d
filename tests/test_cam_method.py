import torch

from backbones import build_backbone
from methods import get_method


def _model():
    torch.manual_seed(0)
    method = get_method("cam")()
    return method, method.build(7, build_backbone("resnet18", large_maps=True, width=0.25)).eval()


def test_spatial_mean_of_cam_plus_bias_is_the_logit():
    method, model = _model()
    x = torch.randn(4, 3, 32, 32)
    target = torch.tensor([0, 3, 5, 6])
    output, cam = method.explain(model, x, target)
    expected = output.logits.gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(cam.mean((1, 2)) + model.fc.bias[target], expected, atol=1e-5, rtol=1e-5)


def test_batched_cam_equals_per_sample_cam():
    method, model = _model()
    x = torch.randn(3, 3, 32, 32)
    target = torch.tensor([1, 2, 4])
    batched = method.cam(model, x, target)
    single = torch.cat([method.cam(model, x[i:i + 1], target[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)
    assert batched.shape == (3, 4, 4)


def test_gradients_reach_the_backbone():
    method, model = _model()
    model.train()
    from methods import Batch

    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3])
    out = model(x)
    method.loss(out, Batch(x, y, torch.zeros(4, 68, 2))).backward()
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0
