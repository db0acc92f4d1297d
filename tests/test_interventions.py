"""Interventions (issue 23): known answers with hand-built models that read one known part of the picture.

The models below locate each face through a side channel: the top image row's middle, which no AU and
no patch ever touches, is looked up in a table the test fills from the faces' plans. So a model can
"read only the mouth" of every face, and a method can explain with exactly that region.
"""
import numpy as np
import pytest
import torch
from torch import nn

from au.regions import REGION_AUS, region_au_matrix
from bench.data.synthetic import SyntheticOptions, face_landmarks, patch_mask, plans_at, render_face
from bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from bench.metrics.interventions import (
    METRIC_DIRECTIONS, CheckTable, SyntheticSplit, Unit, check_rates, choose_threshold, intervention_metrics,
    rank_agreement, unit_masks,
)
from bench.metrics.region_deletion import region_deletion_metrics
from methods import Method
from methods.base import Output

S = 64
OPTIONS = SyntheticOptions(image_size=S)
TEST = SyntheticSplit("test", 70, 0, OPTIONS)
VAL = SyntheticSplit("val", 35, 0, OPTIONS)
MOUTH_AUS = {10, 12, 14, 15, 16, 17, 20, 23, 24, 25, 26, 27}


def pixels(x: torch.Tensor) -> torch.Tensor:
    """Normalised input (B, 3, H, W) -> the uint8 picture's values as float (B, H, W, 3)."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return torch.round((x * std + mean) * 255).permute(0, 2, 3, 1)


def key(picture: torch.Tensor) -> bytes:
    return picture[0, S // 3: 2 * S // 3].to(torch.uint8).numpy().tobytes()


def mouth_region(landmarks: np.ndarray) -> torch.Tensor:
    """(S, S) bool: the mouth ellipse (the region of AU23/24/26/27) of one face."""
    unit = Unit((26,), region_au_matrix()[:, REGION_AUS.index(26)].numpy())
    return unit_masks(torch.from_numpy(landmarks).float()[None], torch.zeros(1, dtype=torch.long), [[unit]],
                      (S, S))[0, 0]


class Lookup(nn.Module):
    """Base of the hand-built models: per-face masks found by the picture's top row."""

    def __init__(self, masks: dict[bytes, torch.Tensor]):
        super().__init__()
        self.masks = masks
        self.dummy = nn.Parameter(torch.zeros(()))        # has a parameter, like any model

    def mask_of(self, picture: torch.Tensor) -> torch.Tensor:
        return self.masks[key(picture)]


class MouthReader(Lookup):
    """Reads only the mouth ellipse: each class's logit is a fixed weight times the darkness there."""

    weights = torch.tensor([0.5, 1.0, 3.0, 2.0, 1.5, 2.5, 0.8])

    def forward(self, x, labels=None):
        out = []
        for picture in pixels(x):
            mask = self.mask_of(picture)
            darkness = (765 - picture.sum(-1))[mask].mean() / 765
            out.append(self.weights * darkness * 10)
        return Output(torch.stack(out), {})


class PatchReader(nn.Module):
    """Reads only the four patch squares: class j's logit is the share of its square's pixels that have
    class j's patch colour (up to brightness: the lighting scales it)."""

    def __init__(self):
        super().__init__()
        from bench.data.synthetic import _SHORTCUT_COLOURS

        self.colours = torch.tensor(_SHORTCUT_COLOURS, dtype=torch.float32)
        inner = []
        for c in range(7):                                          # the square shrunk by 1 px (no blur edge)
            box = torch.from_numpy(patch_mask(S, c))
            inner.append(box & ~nn.functional.max_pool2d((~box).float()[None, None], 3, 1, 1)[0, 0].bool())
        self.inner = torch.stack(inner)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, labels=None):
        out = []
        for picture in pixels(x):
            share = [(nn.functional.cosine_similarity(picture[m], self.colours[c][None], dim=1) > 0.99).float().mean()
                     for c, m in enumerate(self.inner)]
            out.append(50 * torch.stack(share))
        return Output(torch.stack(out), {})


class RegionCAM(Method):
    """Explains every face with a fixed region of it (found like the models find theirs)."""

    name = "region-cam"

    def __init__(self, masks: dict[bytes, torch.Tensor]):
        super().__init__()
        self.masks = masks

    def explain(self, model, x, target):
        with torch.no_grad():
            output = model(x)
        return output, torch.stack([self.masks.get(key(p), torch.zeros(S, S, dtype=torch.bool)).float()
                                    for p in pixels(x)])


def mouth_masks(*splits: SyntheticSplit) -> dict[bytes, torch.Tensor]:
    masks = {}
    for split in splits:
        for plan in plans_at(split.split, split.size, split.seed, split.options, range(split.size)):
            picture = torch.from_numpy(render_face(plan)).float()
            masks[key(picture)] = mouth_region(face_landmarks(plan))
    assert len(masks) == sum(s.size for s in splits)                 # the top rows tell all faces apart
    return masks


@pytest.fixture(scope="module")
def mouth_result():
    masks = mouth_masks(TEST, VAL)
    return intervention_metrics(MouthReader(masks), RegionCAM(masks), TEST, range(0, 70, 2), validation=VAL,
                                validation_indices=range(35), device="cpu", batch_size=16)


def test_a_model_that_reads_only_the_mouth_has_importance_on_the_mouth_aus_only(mouth_result):
    faces = mouth_result.faces
    drops = faces["au_drop_logit"]
    for j, au in enumerate(faces["region_aus"]):
        present = ~np.isnan(drops[:, j])
        if not present.any():
            continue
        if au in MOUTH_AUS:
            assert (drops[present, j] != 0).mean() > 0.8, au
        else:
            assert (drops[present, j] == 0).all(), au                  # exactly: the model never sees them


def test_a_cam_equal_to_the_region_the_model_reads_agrees_with_the_ground_truth(mouth_result):
    faces = mouth_result.faces
    surprise = faces["label"] == 2              # units AU1, AU2, AU5 (never read), AU26+27 (the mouth itself)
    assert surprise.sum() >= 3
    assert np.allclose(faces["agreement"][surprise], 1.0)
    # Units off the mouth get no importance and (the cheek ellipse touches the mouth's) almost no CAM mass.
    units = mouth_result.details["units"]
    for i, label in enumerate(faces["label"]):
        for j, name in enumerate(units[label]):
            if not {int(a) for a in name[2:].split("+")} & MOUTH_AUS:
                assert faces["unit_drop_logit"][i, j] == 0 and faces["unit_cam_mass"][i, j] < 0.05, name
    assert mouth_result.metrics["au_importance_agreement"] > 0.5
    assert mouth_result.details["threshold_chosen_on"] == "validation"


def test_a_model_that_reads_only_the_patch_relies_on_it_and_on_no_au():
    masks = mouth_masks(TEST)
    result = intervention_metrics(PatchReader(), RegionCAM(masks), TEST, range(0, 70, 5), validation=VAL,
                                  validation_indices=[], device="cpu", batch_size=16, threshold=0.5)
    # Near 1: the hair hides part of a top-corner patch on most faces and all of it on a few (a hidden
    # patch cannot be read); the bottom-corner patches (classes 2, 3, 6) are always seen and always win.
    assert result.metrics["shortcut_reliance"] > 0.85
    assert np.nanmean(result.faces["patch_moved"][:, [2, 3, 6]]) == 1.0
    drops = result.faces["au_drop_logit"]
    assert np.all(drops[~np.isnan(drops)] == 0)
    assert np.isnan(result.metrics["au_importance_agreement"])        # no AU matters: nothing to agree with
    assert result.metrics["shortcut_cam_mass"] == 0                    # this CAM shows the mouth, never the patch
    assert result.details["threshold_chosen_on"] == "given"


def test_rank_agreement_known_values():
    assert rank_agreement([0, 0, 1], [0, 0, 5]) == pytest.approx(1.0)
    assert rank_agreement([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)
    assert np.isnan(rank_agreement([1, 1, 1], [1, 2, 3]))            # no ranking in the truth
    assert rank_agreement([1, 2, 3], [4, 4, 4]) == 0.0                 # the explanation ranks nothing
    assert np.isnan(rank_agreement([1], [1]))


def test_the_threshold_is_chosen_on_the_table_it_is_given():
    """Two faces, 3 units each, relative CAM masses [1, 0.6, 0.1]; ``kept``/``changed`` by k = units marked
    important (top k). The chosen threshold marks the units whose removal matters, per validation table."""
    relative, n_units = np.array([[1.0, 0.6, 0.1]] * 2), np.array([3, 3])
    # The top two units matter: removing both keeps nothing; removing unit 3 alone keeps the prediction.
    two = CheckTable(relative, kept=np.array([[False, False, True, True]] * 2),
                     changed=np.array([[False, True, True, True]] * 2), n_units=n_units)
    t = choose_threshold(two)
    assert t <= 0.6 and (two.important_counts(t) == 2).all() and check_rates(two, t) == (1.0, 1.0)
    assert check_rates(two, 0.8) == (0.0, 1.0)                         # top unit only: removing 2 and 3 flips
    # Only the top unit matters (removing units 2 and 3 keeps the prediction, unit 3 alone does not).
    one = CheckTable(relative, kept=np.array([[False, True, False, True]] * 2),
                     changed=np.array([[False, True, True, True]] * 2), n_units=n_units)
    assert choose_threshold(one) > 0.6
    # A threshold that marks all three important still leaves the last one unimportant (and one that marks
    # none still marks the top one): "everything matters" does not pass preservation by removing nothing.
    assert check_rates(one, 0.05) == check_rates(one, 0.5) == (0.0, 1.0)
    assert check_rates(CheckTable(relative, one.kept, one.changed, np.array([3, 1])), 0.9) == (1.0, 1.0)
    assert choose_threshold(CheckTable(relative, np.zeros((2, 4), bool), np.zeros((2, 4), bool),
                                       np.array([0, 0]))) == 0.55       # no face with units: the middle one


def test_region_deletion_on_real_style_input_reads_the_mouth():
    """On pictures + landmarks (no plans), deleting a unit's region by imputation gives importance only
    where the model reads."""
    from au import get_codebook
    from bench.data.synthetic import generate

    arr = generate("test", 70, 0, OPTIONS)
    masks = mouth_masks(TEST)
    pick = np.flatnonzero(arr.labels == 2)[:4]                       # Surprise: one unit in the mouth
    result = region_deletion_metrics(MouthReader(masks), RegionCAM(masks), arr.images[pick], arr.labels[pick],
                                     arr.landmarks[pick], codebook=get_codebook("paper"), device="cpu",
                                     batch_size=4)
    drops, mass = result.faces["unit_drop_logit"], result.faces["unit_cam_mass"]
    assert np.all(drops[:, :3] == 0) and np.all(drops[:, 3] != 0)     # brows and lids unread; the mouth read
    assert np.all(mass[:, :3] == 0) and np.all(mass[:, 3] > 0.9)
    assert result.metrics["au_importance_agreement"] == pytest.approx(1.0)


def test_every_metric_has_a_direction(mouth_result):
    assert set(mouth_result.metrics) == set(METRIC_DIRECTIONS)


def test_the_area_floor_is_the_agreement_of_a_flat_cam(mouth_result):
    """A flat CAM's mass in a unit is the unit's area share, so its agreement is the area floor."""
    masks = mouth_masks(TEST)
    flat = {k: torch.ones_like(v) for k, v in masks.items()}
    for v in flat.values():
        v[0, 0] = False                      # a constant map min-maxes to 0: one corner pixel (in no region) at 0
    result = intervention_metrics(MouthReader(masks), RegionCAM(flat), TEST, range(0, 70, 2), validation=VAL,
                                  validation_indices=[], device="cpu", batch_size=16, threshold=0.5)
    faces = result.faces
    assert np.allclose(faces["agreement"], faces["area_agreement"], equal_nan=True)
    assert np.allclose(faces["area_agreement"], mouth_result.faces["area_agreement"], equal_nan=True)


def test_pictures_are_drawn_once_and_are_the_rendered_faces():
    from bench.metrics.interventions import Pictures

    plan = next(p for p in plans_at("test", 70, 0, OPTIONS, range(14)) if p.label == 2)
    shared, none = Pictures(), Pictures(0)
    first = shared.get(TEST, plan, frozenset({26, 27}))
    assert np.array_equal(first, render_face(plan, {26, 27}))
    assert shared.get(TEST, plan, frozenset({26, 27})) is first and len(shared.store) == 1
    assert np.array_equal(shared.get(TEST, plan, patch=3), render_face(plan, patch=3))
    assert np.array_equal(none.get(TEST, plan), render_face(plan)) and not none.store
