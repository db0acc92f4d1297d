"""The intervention figure: class shares from per-face arrays (known values) and a PNG of the expected size."""
import sys

import numpy as np
import pytest

from bench.reporting.intervention_figure import class_unit_shares, intervention_figure, shares_from_faces


def test_class_shares_are_means_clipped_at_zero_and_normalised():
    labels = np.array([1, 1, 2, 0])
    values = np.array([[2.0, 0.0, np.nan], [4.0, 2.0, np.nan], [-1.0, 1.0, 3.0], [np.nan, np.nan, np.nan]])
    shares = class_unit_shares(labels, values, 4)
    assert shares[1].tolist() == pytest.approx([0.75, 0.25, 0.0])       # means 3, 1; padding is 0
    assert shares[2].tolist() == pytest.approx([0.0, 0.25, 0.75])       # the negative drop counts as 0
    assert shares[0].tolist() == [0.0, 0.0, 0.0]                        # no value at all: zeros
    assert np.isnan(shares[3]).all()                                    # no face: NaN


def test_figure_is_written_without_torch(tmp_path):
    rng = np.random.default_rng(0)
    faces = {"label": np.arange(21) % 7, "unit_drop_logit": rng.normal(size=(21, 7)),
             "unit_cam_mass": rng.random((21, 7))}
    units = [[], ["AU6", "AU12", "AU25"], ["AU1", "AU2"], ["AU1"], ["AU4", "AU5"], ["AU9"], ["AU1", "AU4"]]
    names = ["Neutral", "Happiness", "Surprise", "Fear", "Anger", "Disgust", "Sadness"]
    shares = {"w/o AU": shares_from_faces(faces, 7), "w/ AU": shares_from_faces(faces, 7)}
    had_torch = "torch" in sys.modules
    path = intervention_figure(tmp_path / "interventions-synthetic-cam.png", "CAM", names, units, shares)
    from PIL import Image

    with Image.open(path) as im:
        assert im.size == (1260, 650)                                   # 3 x 4.2 in, 2 x 2.8 + 0.9 in at 100 dpi
    assert had_torch or "torch" not in sys.modules
    with pytest.raises(ValueError, match="no evaluation"):
        intervention_figure(tmp_path / "x.png", "CAM", names, units, {})


def test_bench_figures_draws_it_from_the_saved_maps_and_skips_runs_without(tmp_path):
    """The evaluation saves per-face unit drops and masses in its maps; `bench figures` draws them."""
    import json as _json

    from bench.reporting.figures import TrialMaps, interventions_figure

    names = np.array(["Neutral", "Happiness", "Surprise"])
    units = [[], ["AU6", "AU12"], ["AU1", "AU26+27"]]

    def trial(au, with_interventions=True):
        arrays = {"class_names": names}
        if with_interventions:
            arrays.update({"cam.int_face_label": np.array([1, 2, 2]),
                           "cam.int_face_unit_drop_logit": np.array([[1.0, 0.5], [0.2, 2.0], [0.1, 1.0]]),
                           "cam.int_face_unit_cam_mass": np.array([[0.5, 0.5], [0.6, 0.4], [0.5, 0.5]]),
                           "cam.int_units": np.array([_json.dumps(units)])})
        return TrialMaps("run", f"id{au}", "cam", "CAM", "cnn", "synthetic", au, 0, "layer5", arrays)

    path = interventions_figure([trial(False), trial(True)], tmp_path / "interventions.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert interventions_figure([trial(False, False)], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
