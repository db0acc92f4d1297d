import pytest
import timm
import torch

from backbones import PretrainedWeightsError, build_backbone


def test_resnet_named_layers_and_strides():
    b = build_backbone("resnet18", large_maps=False, width=0.25)
    out = b(torch.zeros(1, 3, 64, 64))
    assert list(out) == ["layer1", "layer2", "layer3", "layer4", "layer5"]
    assert [v.shape[-1] for v in out.values()] == [32, 16, 8, 4, 2]
    assert {k: v.shape[1] for k, v in out.items()} == b.channels


def test_large_maps_gives_28x28_layer5_at_224():
    b = build_backbone("resnet18", large_maps=True, width=0.125).eval()
    with torch.no_grad():
        out = b(torch.zeros(1, 3, 224, 224))
    assert out["layer5"].shape[-2:] == (28, 28)
    assert out["layer4"].shape[-2:] == (28, 28)
    assert out["layer1"].shape[-2:] == (112, 112)


def test_large_maps_keeps_the_parameter_shapes():
    a = build_backbone("resnet50", large_maps=False)
    b = build_backbone("resnet50", large_maps=True)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert sum(p.numel() for p in b.parameters()) == 23_508_032


def test_pretrained_failure_is_one_actionable_line(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nName or service not known")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        build_backbone("resnet50", pretrained=True)
    msg = str(info.value)
    assert "\n" not in msg and "model.pretrained=false" in msg and "resnet50" in msg


def test_pretrained_path_reaches_timm_as_a_local_file(monkeypatch, tmp_path):
    seen = {}
    real = timm.create_model

    def spy(name, pretrained=False, pretrained_cfg_overlay=None, **kw):
        seen.update(pretrained=pretrained, overlay=pretrained_cfg_overlay)
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", spy)
    weights = tmp_path / "w.safetensors"
    build_backbone("resnet18", pretrained_path=str(weights))
    assert seen == {"pretrained": True, "overlay": {"file": str(weights)}}


def test_width_with_pretrained_is_refused():
    with pytest.raises(PretrainedWeightsError, match="model.width=1"):
        build_backbone("resnet18", pretrained=True, width=0.5)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="known: .*resnet18"):
        build_backbone("vgg99")


# --- timm weight tags (name.tag) -------------------------------------------------------------------
def test_tagged_pretrained_weights_load_from_a_local_file(tmp_path):
    """``resnet18.tv_in1k`` + a weight file: timm loads that file (offline), then the strides change."""
    torch.manual_seed(3)
    source = timm.create_model("resnet18.tv_in1k", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    b = build_backbone("resnet18.tv_in1k", pretrained=True, pretrained_path=str(tmp_path / "tv.pth"),
                       large_maps=True)
    assert torch.equal(b.stages[3][0].conv1.weight, source.layer4[0].conv1.weight)
    assert torch.equal(b.stem[1].running_var, source.bn1.running_var)
    fresh = build_backbone("resnet18.tv_in1k")
    assert not torch.equal(fresh.stages[3][0].conv1.weight, source.layer4[0].conv1.weight)
    with torch.no_grad():
        assert b.eval()(torch.zeros(1, 3, 64, 64))["layer5"].shape[-1] == 8     # large maps: /8, not /32


def test_the_tag_reaches_timm(monkeypatch):
    seen = []
    real = timm.create_model

    def spy(name, pretrained=False, pretrained_cfg_overlay=None, **kw):
        seen.append((name, pretrained))
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", spy)
    build_backbone("resnet50.tv_in1k", pretrained=True)
    assert seen == [("resnet50.tv_in1k", True)]


@pytest.mark.parametrize("name", ["resnet50.bogus", "resnet18.tv2_in1k"])
def test_unknown_tag_is_one_line_listing_the_known_tags(name):
    with pytest.raises(ValueError) as info:
        build_backbone(name)
    msg = str(info.value)
    assert "\n" not in msg and name.split(".")[1] in msg and "tv_in1k" in msg


def test_ir50_has_no_tags():
    with pytest.raises(ValueError, match="model.pretrained_path"):
        build_backbone("ir50.ms1m")


def test_vit_names_take_tags_too():
    from backbones.vit import ViTFeatures

    small = dict(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=3)
    assert ViTFeatures("deit_small_patch16_224.fb_in1k", **small).embed_dim == 48
    with pytest.raises(ValueError, match="fb_in1k"):
        ViTFeatures("deit_small_patch16_224.in21k", **small)
