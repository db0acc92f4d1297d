"""TS-CAM and APViT: known answers for their mechanisms and the paper-size builds (no training)."""
import pytest
import torch

from backbones import PretrainedWeightsError
from backbones.ir50 import IR50
from backbones.vit import ViTFeatures, cls_attention_map
from bench.config.settings import resolve
from bench.train.model import build_model, make_method
from bench.train.optim import make_optimizer
from methods import get_method
from methods.apvit import APViTNet, attentive_patch_pooling
from methods.tscam import couple

TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3)


def _tscam(**options):
    cls = get_method("tscam")
    base = cls.conformance_options()["method"]
    method = cls(cls.make_config({**base, **options}))
    torch.manual_seed(0)
    return method, method.build(7, method.make_backbone({"pretrained": False}))


def _tiny_apvit(input_size=112, **kw):
    torch.manual_seed(0)
    stem = IR50(stages=3, units=(1, 1, 1), widths=(8, 8, 16))
    opts = dict(input_size=input_size, embed_dim=16, depth=8, num_heads=2, mlp_ratio=2.0, keep_tokens=160,
                keep_rate=0.9, pool_blocks=4, drop_path=0.0)
    return APViTNet(stem, 7, **{**opts, **kw})


# --- TS-CAM ----------------------------------------------------------------------------------------
def test_coupling_on_hand_built_attention():
    """A* = Σ_blocks mean_heads of the cls row over patch columns; CAM = A* ⊙ S[target], per sample."""
    B, heads, grid = 2, 2, (2, 2)
    N = 1 + 4
    probs = []
    for block in range(2):
        p = torch.zeros(B, heads, N, N)
        for b in range(B):
            for h in range(heads):
                p[b, h, 0] = torch.tensor([0.2, 0.1, 0.2, 0.3, 0.2]) if (b + h + block) % 2 == 0 \
                    else torch.tensor([0.0, 0.4, 0.3, 0.2, 0.1])
        probs.append(p)
    att = cls_attention_map(probs, prefix=1, grid=grid)
    # each (sample, block) averages the two rows above once, so every sum is 2 x their mean
    expected = 2 * (torch.tensor([0.1, 0.2, 0.3, 0.2]) + torch.tensor([0.4, 0.3, 0.2, 0.1])) / 2
    assert att.shape == (B, 1, 2, 2)
    assert torch.allclose(att[:, 0].flatten(1), expected.expand(B, 4))
    semantic = torch.arange(B * 3 * 4, dtype=torch.float32).view(B, 3, 2, 2)
    target = torch.tensor([2, 0])
    cam = couple(att[:, 0], semantic, target)
    assert torch.allclose(cam[0], att[0, 0] * semantic[0, 2])
    assert torch.allclose(cam[1], att[1, 0] * semantic[1, 0])     # not semantic[:, 2] (the reference's bug)


def test_record_attention_only_when_asked_and_fast_path_unchanged():
    torch.manual_seed(0)
    vit = ViTFeatures("vit_tiny_patch16_224", **TINY_VIT).eval()
    x = torch.randn(3, 3, 32, 32)
    fused = [blk.attn.fused_attn for blk in vit.vit.blocks]
    with torch.no_grad():
        fast = vit(x)
        with vit.record_attention(keep_probs=True) as probs:
            slow = vit(x)
    assert "attention" not in fast and "attention" in slow
    assert len(probs) == 2 and probs[0].shape == (3, 3, 17, 17)
    assert torch.allclose(probs[0].sum(-1), torch.ones(3, 3, 17))            # post-softmax
    assert torch.allclose(slow["attention"], cls_attention_map(probs, 1, (4, 4)))
    for name in ("block1", "block2", "final"):
        assert torch.allclose(fast[name], slow[name], atol=1e-5)
    assert [blk.attn.fused_attn for blk in vit.vit.blocks] == fused
    assert not any(m._forward_hooks for m in vit.modules())


def test_grid_and_prefix_tokens_come_from_the_model():
    """A distilled DeiT has 2 prefix tokens; a 32x48 input gives a 4x6 grid (nothing assumes 14x14)."""
    torch.manual_seed(0)
    vit = ViTFeatures("deit_tiny_distilled_patch16_224", **TINY_VIT).eval()
    assert vit.prefix == 2
    with torch.no_grad(), vit.record_attention(keep_probs=True) as probs:
        maps = vit(torch.randn(2, 3, 32, 48))
    assert maps["final"].shape == (2, 48, 4, 6)
    assert probs[0].shape[-1] == 2 + 24
    assert torch.allclose(maps["attention"][:, 0].flatten(1),
                          sum(p[:, :, 0, 2:].mean(1) for p in probs))


def test_tscam_cam_is_per_sample_and_alignment_block_is_an_option():
    method, model = _tscam(align_block=1)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    target = torch.tensor([0, 1, 2, 3])
    output, cam = method.explain(model, x, target)
    for b in range(4):
        assert torch.allclose(cam[b], output.features["attention"][b, 0] * output.cams[b, target[b]])
    with torch.no_grad():
        maps = model.backbone(x)
    assert torch.allclose(output.features["tokens"], maps["block1"], atol=1e-5)
    model.train()
    assert "attention" not in model(x).features                       # training: fused path, no maps
    with pytest.raises(ValueError, match="align_block"):
        _tscam(align_block=3)


# --- APViT -----------------------------------------------------------------------------------------
def test_app_keeps_top_k_in_spatial_order():
    score = torch.tensor([[5., 1., 9.], [0.5, 7., 3.], [8., 2., 6.]])        # Σ|x| per position
    x = torch.stack([score, torch.zeros(3, 3)])[None]                            # (1, D=2, 3, 3)
    pos = torch.arange(9 * 2, dtype=torch.float32).view(1, 9, 2)
    tokens, index, a = attentive_patch_pooling(x, pos, keep=4)
    assert index.tolist() == [[2, 4, 6, 8]]                                      # 9, 7, 8, 6 -> spatial order
    assert torch.equal(a[0], score)
    expected = x.flatten(2).transpose(1, 2)[0, [2, 4, 6, 8]] + pos[0, [2, 4, 6, 8]]
    assert torch.equal(tokens[0], expected)


def test_app_and_atp_token_counts():
    net = _tiny_apvit().eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 112, 112))
    assert out.extras["token_counts"] == [160, 144, 129, 116, 104]
    index = out.extras["kept_index"]
    assert index.shape == (2, 104) and (index.diff(dim=1) > 0).all()            # still in spatial order
    assert out.features["stage3"].shape == (2, 16, 14, 14)


def test_atp_drops_the_lowest_cls_scores():
    """One pooling block keeping 3 of 4 tokens drops the token the cls query scores lowest."""
    net = _tiny_apvit(input_size=16, keep_tokens=4, depth=1, pool_blocks=1, keep_rate=0.75).eval()
    block = net.blocks[0]
    torch.manual_seed(1)
    x = torch.randn(2, 5, 16)
    index = torch.tensor([[3, 5, 7, 9], [0, 1, 2, 3]])
    attn = block.attn
    q, k, _ = attn.qkv(block.norm1(x)).reshape(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    score = ((q[:, :, 0] * attn.scale)[:, :, None] @ k.transpose(-2, -1)).sum(1)[:, 0, 1:]
    with torch.no_grad():
        _, kept = block(x, index, 0.75)
    for b in range(2):
        dropped = score[b].argmin().item()
        assert kept[b].tolist() == [i for j, i in enumerate(index[b].tolist()) if j != dropped]


def test_apvit_cam_is_class_agnostic():
    method = get_method("apvit")(get_method("apvit").make_config(get_method("apvit").conformance_options()["method"]))
    torch.manual_seed(0)
    model = method.build(7, method.make_backbone({"pretrained": False})).eval()
    x = torch.randn(2, 3, 32, 32)
    _, cam_a = method.explain(model, x, torch.tensor([0, 1]))
    out, cam_b = method.explain(model, x, torch.tensor([5, 6]))
    assert torch.equal(cam_a, cam_b)
    assert torch.allclose(cam_a, model.proj(out.features["stage3"]).abs().sum(1))


def test_weight_paths_fail_in_one_line_and_load(tmp_path):
    with pytest.raises(PretrainedWeightsError) as info:
        IR50(pretrained_path=str(tmp_path / "missing.pth"))
    assert "\n" not in str(info.value) and "missing.pth" in str(info.value)
    apvit = get_method("apvit")
    opts = {**apvit.conformance_options()["method"], "vit_weights": str(tmp_path / "vit.pth")}
    method = apvit(apvit.make_config(opts))
    with pytest.raises(PretrainedWeightsError) as info:
        method.build(7, method.make_backbone({"pretrained": False}))
    assert "\n" not in str(info.value) and "vit.pth" in str(info.value)
    tscam = get_method("tscam")
    method = tscam(tscam.make_config({**tscam.conformance_options()["method"], "pretrained_path": str(tmp_path / "d.pth")}))
    with pytest.raises(PretrainedWeightsError, match="methods.tscam.pretrained_path"):
        method.make_backbone({"pretrained": False})

    # round trips: IR-50 ignores extra units/output layer; APViT resamples the position grid
    torch.manual_seed(0)
    source = IR50(stages=3, units=(1, 1, 1), widths=(8, 8, 16))
    torch.save({**source.state_dict(), "output_layer.0.weight": torch.zeros(1)}, tmp_path / "ir.pth")
    loaded = IR50(stages=3, units=(1, 1, 1), widths=(8, 8, 16), pretrained_path=str(tmp_path / "ir.pth"))
    assert torch.equal(loaded.body[2].res_layer[1].weight, source.body[2].res_layer[1].weight)
    small = _tiny_apvit(input_size=32, keep_tokens=12, depth=2, pool_blocks=1)
    torch.save({**small.state_dict(), "patch_embed.proj.weight": torch.zeros(1), "head.weight": torch.zeros(1)},
               tmp_path / "vit.pth")
    large = _tiny_apvit(input_size=48, keep_tokens=30, depth=1, pool_blocks=1)
    large.load_vit_weights(str(tmp_path / "vit.pth"))
    assert torch.equal(large.blocks[0].attn.qkv.weight, small.blocks[0].attn.qkv.weight)
    assert large.pos_embed.shape == (1, 1 + 36, 16)


# --- paper sizes -----------------------------------------------------------------------------------
def _vit_params(D, depth, mlp, qkv_bias, tokens, patch=None):
    block = 4 * D + D * 3 * D + (3 * D if qkv_bias else 0) + D * D + D + D * mlp * D + mlp * D + mlp * D * D + D
    embed = 3 * patch * patch * D + D if patch else 0
    return embed + D + (tokens + 1) * D + depth * block + 2 * D


def _ir_unit(cin, d):
    return 2 * cin + cin * d * 9 + d + d * d * 9 + 2 * d + (cin * d + 2 * d if cin != d else 0)


def test_paper_profile_builds_both_at_paper_size():
    config = resolve("paper", [("model.pretrained", False), ("methods.apvit.vit_weights", "")])
    assert config.data.image_size == 224
    torch.manual_seed(0)

    tscam = make_method("tscam", config)
    model = build_model(tscam, config, 7).eval()
    deit_s = _vit_params(384, 12, 4, True, 196, patch=16)
    assert sum(p.numel() for p in model.parameters()) == deit_s + 384 * 7 * 9 + 7 == 21_689_863
    output, cam = tscam.explain(model, torch.randn(1, 3, 224, 224), torch.tensor([3]))
    assert output.logits.shape == (1, 7) and cam.shape == (1, 14, 14)
    assert output.features["tokens"].shape == (1, 384, 14, 14)
    assert output.features["attention"].shape == (1, 1, 14, 14)

    apvit = make_method("apvit", config)
    model = build_model(apvit, config, 7).eval()
    ir50 = 3 * 64 * 9 + 3 * 64 + sum(_ir_unit(a, b) for a, b in
                                     [(64, 64)] * 3 + [(64, 128)] + [(128, 128)] * 3 + [(128, 256)] + [(256, 256)] * 13)
    vit = _vit_params(768, 8, 3, False, 196)
    expected = ir50 + 256 * 768 + 768 + vit + 768 * 7 + 7
    assert sum(p.numel() for p in model.backbone.parameters()) == ir50
    assert sum(p.numel() for p in model.parameters()) == expected
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))                             # resized to 112 inside
    assert out.logits.shape == (1, 7)
    assert out.features["stage3"].shape == (1, 256, 14, 14)
    assert out.extras["token_counts"] == [160, 144, 129, 116, 104]


# --- optimiser parameter groups ------------------------------------------------------------------
def _decay_by_name(model, optimizer):
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert names[id(p)] not in decay, "a parameter in two groups"
            decay[names[id(p)]] = group["weight_decay"]
    assert set(decay) == {n for n, p in model.named_parameters() if p.requires_grad}
    return decay


def test_transformer_optimizer_skips_decay_on_norms_biases_pos_embed_and_cls_token():
    """TS-CAM's DeiT declares timm's no_weight_decay(): its groups follow timm; a zero-gradient AdamW
    step then shrinks exactly the decayed weights by (1 - lr·wd) and leaves the others alone."""
    config = resolve("smoke", [("train.optimizer", "adamw"), ("train.weight_decay", 0.05), ("train.lr", 0.1)],
                     "synthetic", "tscam")
    model = build_model(make_method("tscam", config), config, 7)
    optimizer, _ = make_optimizer(model, config)
    decay = _decay_by_name(model, optimizer)
    for name in ("backbone.vit.pos_embed", "backbone.vit.cls_token", "backbone.vit.blocks.0.norm1.weight",
                 "backbone.vit.blocks.0.norm1.bias", "backbone.vit.blocks.0.attn.qkv.bias", "backbone.vit.norm.weight",
                 "head.bias"):
        assert decay[name] == 0.0, name
    for name in ("backbone.vit.blocks.0.attn.qkv.weight", "backbone.vit.blocks.1.mlp.fc1.weight",
                 "backbone.vit.patch_embed.proj.weight", "head.weight"):
        assert decay[name] == 0.05, name
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        factor = 1 - 0.1 * decay[name]
        assert torch.allclose(p, before[name] * factor, rtol=1e-6, atol=1e-7), name


def test_cnn_optimizer_decays_every_parameter_as_the_reference():
    """A CNN declares nothing: one group, every parameter (BatchNorm and biases too), as torch.optim.SGD
    over model.parameters() in the reference."""
    config = resolve("smoke", [("train.optimizer", "sgd"), ("train.weight_decay", 5e-4)], "synthetic", "cam")
    model = build_model(make_method("cam", config), config, 7)
    optimizer, _ = make_optimizer(model, config)
    assert len(optimizer.param_groups) == 1
    assert set(_decay_by_name(model, optimizer).values()) == {5e-4}


def test_no_weight_decay_names_are_collected_from_nested_modules():
    from torch import nn

    from bench.train.optim import declared_no_weight_decay

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(1, 4, 3))

        def no_weight_decay(self):
            return {"pos"}

    outer = nn.Sequential(nn.Linear(3, 3), Inner())
    assert declared_no_weight_decay(outer) == {"1.pos"}
    assert declared_no_weight_decay(nn.Linear(3, 3)) is None


def test_apvit_optimizer_skips_decay_on_its_pos_embed_cls_token_norms_and_biases():
    config = resolve("smoke", [("train.optimizer", "sgd"), ("train.weight_decay", 5e-4)], "synthetic", "apvit")
    model = build_model(make_method("apvit", config), config, 7)
    decay = _decay_by_name(model, make_optimizer(model, config)[0])
    for name in ("pos_embed", "cls_token", "blocks.0.norm1.weight", "norm.bias", "head.bias",
                 "backbone.input_layer.1.weight", "backbone.input_layer.2.weight", "proj.bias"):
        assert decay[name] == 0.0, name
    for name in ("blocks.0.attn.qkv.weight", "head.weight", "proj.weight", "backbone.input_layer.0.weight"):
        assert decay[name] == 5e-4, name


def test_apvit_ir50_weights_come_through_model_pretrained_path(tmp_path):
    apvit = get_method("apvit")
    method = apvit(apvit.make_config({**apvit.conformance_options()["method"], "ir50_width": 1.0}))
    with pytest.raises(PretrainedWeightsError) as info:
        method.make_backbone({"pretrained": True, "pretrained_path": None})
    assert "\n" not in str(info.value) and "model.pretrained_path" in str(info.value)
    assert "model.pretrained=false" in str(info.value)
    torch.manual_seed(0)
    source = method.make_backbone({"pretrained": False})
    torch.save(source.state_dict(), tmp_path / "ir50.pth")
    torch.manual_seed(1)
    loaded = method.make_backbone({"pretrained": True, "pretrained_path": str(tmp_path / "ir50.pth")})
    assert torch.equal(loaded.body[0].res_layer[1].weight, source.body[0].res_layer[1].weight)
