"""The paper profile is the paper's experiment: what `bench run --profile paper` resolves to, the
weights it asks for (loaded from a local file: offline), and its table of remaining deviations."""
import re

import pytest
import torch

from bench.config.settings import PROFILE_DIR, resolve
from bench.train.model import build_model, feature_sizes, make_method
from methods import method_names

PAPER = PROFILE_DIR / "paper.toml"


@pytest.mark.parametrize("dataset", ["rafdb", "affectnet", "synthetic"])
def test_every_cell_resolves_to_the_papers_backbone_and_crops(dataset):
    """What plan_sweep resolves for each (method, AU) cell of `bench run --profile paper`."""
    for method in method_names():
        for au in (False, True):
            config = resolve("paper", [], dataset, method, au)
            assert config.model.backbone == "resnet50.tv_in1k"
            assert config.model.pretrained and config.model.large_maps and config.model.width == 1.0
            assert config.data.image_size == 224
            assert config.data.rafdb_images == ("original" if dataset == "rafdb" else "aligned")
            assert config.au.weight == (9.0 if dataset == "affectnet" else 4.0)
    assert resolve("paper", [], "rafdb", "tscam").methods["tscam"]["model"] == "deit_small_patch16_224.fb_in1k"
    assert resolve("paper", [], "rafdb", "tscam").train.optimizer == "adamw"
    assert resolve("paper", [], "rafdb", "cam").train.optimizer == "sgd"
    ir50 = "pretrained-weights/backbone_ir50_ms1m_epoch120.pth"
    assert resolve("paper", [], "rafdb", "apvit").model.pretrained_path == ir50
    assert resolve("paper", [], "rafdb", "cam").model.pretrained_path == ""


def test_paper_resnet_loads_the_tagged_weights_from_a_local_file(tmp_path):
    """model.pretrained_path stands in for the download (offline): the file's tensors end up in the
    paper's ResNet-50, whose layer-5 map is 28x28 at 224 px."""
    import timm

    torch.manual_seed(0)
    source = timm.create_model("resnet50.tv_in1k", pretrained=False)
    weights = tmp_path / "resnet50_tv_in1k.pth"
    torch.save(source.state_dict(), weights)
    config = resolve("paper", [("model.pretrained_path", str(weights))], "rafdb", "cam", True)
    model = build_model(make_method("cam", config), config, 7)
    backbone = model.backbone
    assert torch.equal(backbone.stages[3][2].conv3.weight, source.layer4[2].conv3.weight)
    assert torch.equal(backbone.stem[0].weight, source.conv1.weight)
    sizes = feature_sizes(model, 224, torch.device("cpu"))
    assert sizes["layer5"] == (28, 28) and sizes["layer1"] == (112, 112)


def _deviation_rows() -> list[list[str]]:
    rows = []
    for line in PAPER.read_text().splitlines():
        if re.match(r"#\s*\|\s*\d+\s*\|", line):
            rows.append([cell.strip() for cell in line.lstrip("#").strip().strip("|").split("|")])
    return rows


def test_the_deviation_table_lists_each_deviation_with_its_reason():
    text = PAPER.read_text()
    header = text.index("# | # | what | paper / reference code | here | why |")
    assert header < text.index("[data]"), "the table sits at the top of the profile"
    rows = _deviation_rows()
    assert [int(row[0]) for row in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 15
    for row in rows:
        assert len(row) == 5 and all(len(cell) > 2 for cell in row[1:]), row
    topics = " ".join(row[1] for row in rows).lower()
    for topic in ("model selection", "augmentation", "au maps", "codebook", "landmarks", "rafdb", "precision",
                  "gradcam++", "wildcat", "adl", "prm", "ts-cam", "apvit", "post-hoc"):
        assert topic in topics.replace("raf-db", "rafdb"), topic
    # every "(deviation N)" a value's comment points to exists
    for number in re.findall(r"deviation (\d+)", text):
        assert 1 <= int(number) <= len(rows)
