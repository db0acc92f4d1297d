import math

import numpy as np
import pytest
import torch

from bench.metrics.base import ClassAverager, attention_for_metric, macro_average, normalise_cam


def test_hand_built_macro_average_skips_neutral_and_empty_classes():
    avg = ClassAverager(7, torch.device("cpu"))
    labels = torch.tensor([0, 1, 1, 2, 3, 3, 3])
    values = torch.tensor([0.9, 0.2, 0.4, 0.6, 0.1, 0.2, 0.9])
    valid = torch.tensor([False, True, True, True, True, True, False])
    avg.add(values, labels, valid)
    pc = avg.per_class()
    assert pc[1] == pytest.approx(0.3) and pc[2] == pytest.approx(0.6) and pc[3] == pytest.approx(0.15)
    assert math.isnan(pc[0]) and math.isnan(pc[4])
    # classes 1, 2, 3 only: (0.3 + 0.6 + 0.15) / 3
    assert macro_average(pc) == pytest.approx(0.35)


def test_macro_average_of_nothing_is_nan():
    assert math.isnan(macro_average(np.full(7, np.nan)))


def test_cam_normalisation_is_min_max_at_image_resolution():
    cam = torch.tensor([[[1.0, 3.0], [5.0, 7.0]]])
    out = normalise_cam(cam, (8, 8))
    assert out.shape == (1, 8, 8)
    assert out.min().item() == 0.0 and out.max().item() == pytest.approx(1.0)
    const = normalise_cam(torch.ones(1, 2, 2), (4, 4))
    assert torch.isfinite(const).all() and const.abs().sum() == 0


def test_attention_is_shifted_when_negative():
    f = torch.tensor([[[[-1.0, 1.0], [0.0, 2.0]]]])
    att = attention_for_metric(f, (2, 2))
    torch.testing.assert_close(att, torch.tensor([[[0.0, 2.0], [1.0, 3.0]]]))
    pos = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    torch.testing.assert_close(attention_for_metric(pos, (2, 2)), pos[:, 0])


# --- per-face results and label-free predictions (issue 22) --------------------------------------------------
from au import NEUTRAL, get_codebook  # noqa: E402
from backbones import build_backbone  # noqa: E402
from bench.metrics.base import ExtractorError, evaluate  # noqa: E402
from methods import get_method  # noqa: E402
from methods.cam import CAM, GapLinearNet  # noqa: E402

CLASSES = ("Neutral", "Happiness", "Surprise", "Fear", "Anger", "Disgust", "Sadness")


@pytest.fixture(scope="module")
def test_faces():
    """24 synthetic test faces at 32 px (every class, landmarks; one face's landmarks removed)."""
    from bench.config.settings import resolve
    from bench.data import load_dataset

    test = load_dataset("synthetic", resolve("smoke").data, 0).test
    landmarks = torch.from_numpy(np.asarray(test.landmarks[:24])).float()
    landmarks[2] = float("nan")
    return (torch.from_numpy(np.asarray(test.images[:24])), torch.from_numpy(np.asarray(test.labels[:24])).long(),
            landmarks)


def tiny_model(method):
    torch.manual_seed(0)
    return method.build(7, build_backbone("resnet18", pretrained=False, large_maps=True, width=0.125)).eval()


def run_evaluate(model, methods, sample, **kwargs):
    images, labels, landmarks = sample
    return evaluate(model, methods, images, labels, landmarks, codebook=get_codebook("paper"), edge=0.35,
                    class_names=CLASSES, batch_size=5, device=torch.device("cpu"), **kwargs)


def macro_from_faces(values: np.ndarray, labels: np.ndarray) -> float:
    """The paper's recipe by hand: mean per class over faces with a value, then over non-neutral classes."""
    means = [values[(labels == c) & ~np.isnan(values)].mean() for c in range(7)
             if c != NEUTRAL and ((labels == c) & ~np.isnan(values)).any()]
    return float(np.mean(means))


def test_per_face_results_rebuild_the_reported_metrics(test_faces):
    methods = [get_method("cam")(), get_method("gradcam")()]
    faces = {}
    metrics = run_evaluate(tiny_model(methods[0]), methods, test_faces, layers=("layer4", "layer5"), faces=faces)
    labels = test_faces[1].numpy()
    assert set(faces) == {"cam", "gradcam"}
    for name, columns in faces.items():
        assert set(columns) == {"pred", "cam_cos", "att_cos_layer4", "att_cos_layer5"}
        assert columns["pred"].dtype == np.int64 and columns["cam_cos"].dtype == np.float32
        assert all(len(v) == len(labels) for v in columns.values())
        # No valid AU map: Neutral faces and the face without landmarks.
        no_map = (labels == NEUTRAL) | (np.arange(len(labels)) == 2)
        assert np.isnan(columns["cam_cos"][no_map]).all() and not np.isnan(columns["cam_cos"][~no_map]).any()
        m = metrics[name]
        assert m["cl"] == pytest.approx(100 * np.mean(columns["pred"] == labels))
        assert m["cam_cos"] == pytest.approx(macro_from_faces(columns["cam_cos"], labels), abs=1e-6)
        for layer in ("layer4", "layer5"):
            assert m[f"att_cos_{layer}"] == pytest.approx(macro_from_faces(columns[f"att_cos_{layer}"], labels), abs=1e-6)
        confusion = np.zeros((7, 7), dtype=int)
        np.add.at(confusion, (labels, columns["pred"]), 1)
        assert m["confusion"] == confusion.tolist()
    # Both extractors explain the same trained model: the same predictions and the same ATT-COS.
    assert np.array_equal(faces["cam"]["pred"], faces["gradcam"]["pred"])
    np.testing.assert_allclose(faces["cam"]["att_cos_layer5"], faces["gradcam"]["att_cos_layer5"], atol=1e-6)


def test_no_faces_argument_changes_nothing(test_faces):
    method = get_method("cam")()
    model = tiny_model(method)
    assert run_evaluate(model, [method], test_faces) == run_evaluate(model, [method], test_faces, faces={})


class PeekingNet(GapLinearNet):
    """Adds a bonus to the true class when labels are given."""

    def forward(self, x, labels=None):
        output = super().forward(x)
        if labels is not None:
            output.logits = output.logits + 5.0 * torch.nn.functional.one_hot(labels, output.logits.shape[1])
        return output


class DeclaredPeekingCAM(CAM):
    """Declares ``needs_labels`` and uses the labels for its logits: must never raise CL."""

    name = "fx_declared_peeking"
    title = "Declared label-peeking CAM (fixture)"
    needs_labels = True

    def build(self, num_classes, backbone):
        return PeekingNet(backbone, num_classes)


def test_labels_never_reach_the_predictions_even_when_a_method_needs_them(test_faces):
    method = DeclaredPeekingCAM()
    model = tiny_model(method)
    with pytest.raises(ExtractorError, match="without labels by up to .*must not depend on the labels"):
        run_evaluate(model, [method], test_faces)
    failures = {}
    assert run_evaluate(model, [method], test_faces, failures=failures) == {}
    assert "fx_declared_peeking" in failures


def test_acol_reads_labels_for_its_cam_only_and_its_cl_is_the_label_free_one(test_faces):
    method = get_method("acol")(get_method("acol").make_config({"hidden": 16}))
    model = tiny_model(method)
    faces = {}
    metrics = run_evaluate(model, [method], test_faces, faces=faces)
    images, labels, _ = test_faces
    from bench.data.transforms import to_input

    with torch.no_grad():
        pred = model(to_input(images)).logits.argmax(1).numpy()
    assert np.array_equal(faces["acol"]["pred"], pred)
    assert metrics["acol"]["cl"] == pytest.approx(100 * np.mean(pred == labels.numpy()))
