"""Fig. 1 maps: the per-class averages kept by the evaluation pass match a hand computation, and the
PNGs have the size their grid implies."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from au import get_codebook
from bench.errors import UserError
from bench.metrics.base import evaluate, minmax
from bench.reporting.figures import CURVES_SIZE, DPI, _mean_curves, collect, grid_size, pooled_class_means, write_figures
from bench.store.settings import select_settings
from bench.store.records import RunStore
from methods import Output

CLASSES = ("Neutral", "Happiness", "Surprise", "Fear", "Anger", "Disgust", "Sadness")


class ChannelMethod:
    """A stand-in extractor: attention = image channel 0, CAM = image channel 1 (known by construction)."""

    name = "probe"
    needs_labels = False

    def explain(self, model, x, target):
        logits = torch.zeros(len(x), len(CLASSES))
        return Output(logits, {"layer5": x[:, :1]}), x[:, 1]


class ZeroModel(torch.nn.Module):
    """The clean forward the evaluator checks extractors against: the same zero logits as ``ChannelMethod``."""

    def forward(self, x, labels=None):
        return Output(torch.zeros(len(x), len(CLASSES)), {"layer5": x[:, :1]})


def _minmax_np(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return (a - a.min()) / max(a.max() - a.min(), 1e-8)


def test_evaluation_keeps_hand_computable_class_averages():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 8, 8, 3), dtype=torch.uint8, generator=g)
    labels = torch.tensor([1, 1, 2, 0, 1, 2, 3, 3, 0, 1])
    from bench.data.synthetic import TEMPLATE

    landmarks = torch.tensor(TEMPLATE * 2.5 + 4, dtype=torch.float32).expand(10, 68, 2).clone()
    landmarks[0] = float("nan")                       # the first Happiness face has no landmarks
    maps = {}
    evaluate(ZeroModel(), [ChannelMethod()], images, labels, landmarks, codebook=get_codebook("paper"),
             edge=0.35, class_names=CLASSES, batch_size=3, device=torch.device("cpu"), maps=maps, map_size=8)
    # Same size in and out: the upsampling is the identity, and min-max ignores the input normalisation,
    # so each face's attention is min-max(channel 0) and its CAM min-max(channel 1) of the raw image.
    for c in range(4):
        faces = [i for i in range(10) if labels[i] == c]
        att = np.mean([_minmax_np(images[i, :, :, 0].numpy()) for i in faces], axis=0)
        cam = np.mean([_minmax_np(images[i, :, :, 1].numpy()) for i in faces], axis=0)
        np.testing.assert_allclose(maps["probe.att_mean"][0, c].astype(np.float64), att, atol=1e-3)
        np.testing.assert_allclose(maps["probe.cam_mean"][c].astype(np.float64), cam, atol=1e-3)
        assert maps["probe.count"][c] == len(faces)
    assert np.isnan(maps["probe.att_mean"][0, 4:].astype(np.float64)).all()     # no Anger..Sadness faces
    # AU maps only from faces with a valid map: none for Neutral, 3 of the 4 Happiness faces.
    assert list(maps["au_count"][:4]) == [0, 3, 2, 2]
    # Gallery: the first face with landmarks of each non-neutral class, across batch boundaries.
    assert list(maps["gallery_index"]) == [1, 2, 6] and list(maps["gallery_label"]) == [1, 2, 3]
    np.testing.assert_array_equal(maps["gallery_image"], images[[1, 2, 6]].numpy())
    np.testing.assert_allclose(maps["probe.gallery_att"][2, 0].astype(np.float64),
                               _minmax_np(images[6, :, :, 0].numpy()), atol=1e-3)


def test_minmax_of_a_constant_map_is_zero():
    assert minmax(torch.full((1, 3, 3), 5.0)).abs().sum() == 0


def test_pooling_weights_classes_by_count():
    a = np.zeros((2, 2, 2)); a[1] = 0.2
    b = np.zeros((2, 2, 2)); b[1] = 0.8
    pooled = pooled_class_means([a, b], [np.array([0, 1]), np.array([0, 3])])
    assert np.isnan(pooled[0]).all()
    np.testing.assert_allclose(pooled[1], (0.2 * 1 + 0.8 * 3) / 4)


def _fake_arrays(value: float, curves: tuple[list, list] | None = None, fractions=(0.0, 0.5, 1.0)) -> dict:
    S, k, C = 8, 2, len(CLASSES)
    arrays = {
        "class_names": np.array(CLASSES), "map_size": np.array(S),
        "au_mean": np.full((C, S, S), 0.5, np.float16), "au_count": np.full(C, 2.0),
        "gallery_index": np.array([3, 5]), "gallery_label": np.array([1, 2]),
        "gallery_image": np.full((k, 16, 16, 3), 128, np.uint8), "gallery_au": np.zeros((k, S, S), np.float16),
        "cam.layers": np.array(["layer4", "layer5"]), "cam.count": np.full(C, 2.0),
        "cam.att_mean": np.full((2, C, S, S), value, np.float16), "cam.cam_mean": np.full((C, S, S), value, np.float16),
        "cam.gallery_att": np.full((k, 2, S, S), value, np.float16), "cam.gallery_cam": np.full((k, S, S), value, np.float16),
    }
    if curves is not None:
        arrays["curve_fractions"] = np.array(fractions, np.float32)
        arrays["cam.deletion_curve"], arrays["cam.insertion_curve"] = (np.array(c, np.float32) for c in curves)
    return arrays


def write_maps(run_dir: Path, trial_id: str, arrays: dict) -> None:
    """Maps beside a hand-written trial record (``<run>/maps/<id>.npz``, as ``bench run`` wrote them)."""
    path = run_dir / "maps" / f"{trial_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def _trial_id(au: bool, seed: int) -> str:
    return f"cam-{'w' if au else 'wo'}-{seed}"


def _fake_trial(store: RunStore, au: bool, seed: int, value: float, curves: tuple[list, list] | None = None) -> None:
    from test_report_settings import write_record

    write_maps(store.run_dir, _trial_id(au, seed), _fake_arrays(value, curves))
    row = {"method": "cam", "title": "CAM", "family": "cnn", "alignment_layers": "layer5", "cl": 50.0,
           "cam_cos": value, "att_cos_layer5": value}
    write_record(store.run_dir, _trial_id(au, seed), profile="smoke", au=au, seed=seed, rows=[row])


def test_figures_are_written_with_the_grid_size(tmp_path):
    store = RunStore(tmp_path / "run")
    for seed in (0, 1):
        for au in (False, True):
            _fake_trial(store, au, seed, 0.3 if au else 0.6)
    assert store.read_maps(_trial_id(True, 0))["cam.layers"].tolist() == [
        "layer4", "layer5"]
    paths = write_figures([store.run_dir], tmp_path / "fig")
    names = sorted(p.name for p in paths)
    assert names == ["averages-synthetic-cam.png", "gallery-synthetic-attention.png", "gallery-synthetic-cam.png"]
    sizes = {p.name: Image.open(p).size for p in paths}
    # Averages: 6 non-neutral classes; rows AU map + (attention, CAM) x (w/o, w/).
    assert sizes["averages-synthetic-cam.png"] == grid_size(5, 6)
    # Gallery: 2 faces; columns face, AU map, CAM w/o AU, CAM w/ AU.
    assert sizes["gallery-synthetic-cam.png"] == grid_size(2, 4)
    with pytest.raises(UserError, match="bad --layer"):
        write_figures([store.run_dir], tmp_path / "fig", layer="layer9")
    with pytest.raises(UserError, match="--methods: 'gradcam' not in"):
        write_figures([store.run_dir], tmp_path / "fig", methods=["gradcam"])


def test_run_without_maps_is_a_user_error(tmp_path):
    from test_report_settings import write_record

    store = RunStore(tmp_path / "old")
    write_record(store.run_dir, "t", profile="smoke", rows=[{"method": "cam", "cl": 1.0}])
    with pytest.raises(UserError, match="no saved maps"):
        write_figures([store.run_dir], tmp_path / "fig")


def test_curves_figure_per_dataset_from_extended_trials(tmp_path):
    store = RunStore(tmp_path / "run")
    for seed, (deletion, insertion) in enumerate([([1.0, 0.5, 0.0], [0.1, 0.6, 1.0]), ([0.8, 0.3, 0.0], [0.3, 0.8, 1.0])]):
        for au in (False, True):
            _fake_trial(store, au, seed, 0.5, curves=(deletion, insertion))
    paths = write_figures([store.run_dir], tmp_path / "fig")
    curves = [p for p in paths if p.name == "curves-synthetic.png"]
    assert len(curves) == 1
    assert Image.open(curves[0]).size == (round(CURVES_SIZE[0] * DPI), round(CURVES_SIZE[1] * DPI))
    # The plotted line is the mean over seeds, point by point.
    trials = [t for t in collect([store.run_dir]) if not t.au]
    fractions, mean, n = _mean_curves(trials, "deletion_curve")
    np.testing.assert_allclose(fractions, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(mean, [0.9, 0.4, 0.0], atol=1e-6)
    assert n == 2
    # A trial on another fraction grid is left out (with a warning), not averaged point by point.
    odd = dataclasses.replace(trials[1], arrays={**trials[1].arrays, "curve_fractions": np.array([0.0, 0.25, 1.0])})
    with pytest.warns(UserWarning, match="another fraction grid"):
        _, mean, n = _mean_curves([trials[0], odd], "deletion_curve")
    assert n == 1 and np.allclose(mean, trials[0].get("deletion_curve"))


def test_figures_use_the_selected_setting(tmp_path):
    from test_report_settings import write_record

    run = tmp_path / "paper"
    store = RunStore(run)
    row = {"method": "cam", "title": "CAM", "family": "cnn", "status": "ok", "alignment_layers": "layer5"}
    for trial_id, setting, value, mtime in (("old", "a1a1a1a1a1a1", 0.2, 1000.0), ("new", "b2b2b2b2b2b2", 0.7, 2000.0)):
        write_maps(run, trial_id, _fake_arrays(value))
        write_record(run, trial_id, setting=setting, rows=[row], mtime=mtime)
    assert [t.trial_id for t in collect([run], selection=select_settings([run]))] == ["new"]
    assert [t.trial_id for t in collect([run], selection=select_settings([run], "a1"))] == ["old"]
    failed_row = {**row, "status": "failed", "error": "boom"}
    write_record(run, "new", setting="b2b2b2b2b2b2", rows=[failed_row], mtime=2000.0)
    assert collect([run], selection=select_settings([run])) == []       # a failed extractor has no maps to show
