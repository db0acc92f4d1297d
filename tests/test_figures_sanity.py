"""The model-randomisation figure: one mean-|rho| curve per method and AU mode, from the cascade the
extended evaluation saves with the maps; maps built by hand (no store, no training)."""
from __future__ import annotations

import numpy as np

from bench.reporting.figures import DPI, SANITY_SIZE, TrialMaps, sanity_figure

STEPS = np.array(["head", "layer5", "layer4", "layer3"])


def _maps(method: str, au: bool, seed: int, curve) -> TrialMaps:
    arrays = {f"{method}.sanity_abs_rho": np.asarray(curve, dtype=np.float32), f"{method}.sanity_steps": STEPS}
    return TrialMaps("run", f"{method}{au}{seed}", method, method.upper(), "cnn", "synthetic", au, seed, "layer5", arrays)


def test_sanity_figure_plots_each_method_and_mode_averaged_over_seeds(tmp_path):
    from PIL import Image

    trials = [_maps("cam", False, 0, [0.9, 0.6, 0.3, 0.1]), _maps("cam", False, 1, [0.7, 0.4, 0.1, 0.1]),
              _maps("cam", True, 0, [0.8, 0.5, 0.2, 0.0]), _maps("gradcam", True, 0, [1.0, 1.0, 0.9, 0.9])]
    path = sanity_figure(trials, tmp_path / "sanity-synthetic.png")
    assert path is not None and path.is_file()
    with Image.open(path) as image:
        assert image.size == (round(SANITY_SIZE[0] * DPI), round(SANITY_SIZE[1] * DPI))
    from bench.reporting.figures import _mean_sanity

    steps, mean, seeds = _mean_sanity([t for t in trials if t.method == "cam" and not t.au])
    assert steps == list(STEPS) and seeds == 2 and np.allclose(mean, [0.8, 0.5, 0.2, 0.1])


def test_no_cascade_no_figure(tmp_path):
    plain = TrialMaps("run", "x", "cam", "CAM", "cnn", "synthetic", False, 0, "layer5", {})
    assert sanity_figure([plain], tmp_path / "s.png") is None
