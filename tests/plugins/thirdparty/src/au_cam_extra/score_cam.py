"""Score-CAM (Wang et al., 2020), post-hoc on the CAM model, on au-cam-bench's public base.

Each channel of the target layer, upsampled and min-max scaled, masks the input; the channel's
weight is the softmax over channels of the target-class score of its masked input. The base
keeps the clean batch's logits for the metrics while the extractor runs its masked forwards.
"""
from __future__ import annotations

from methods import PostHocCAM


class ScoreCAMPlugin(PostHocCAM):
    name = "scorecam"
    title = "Score-CAM"
    family = "cnn"
    extractor = "ScoreCAM"       # pytorch_grad_cam.ScoreCAM

    def make_extractor(self, model, target_layer):
        extractor = super().make_extractor(model, target_layer)
        extractor.batch_size = 64    # masked inputs per forward (the library reads this attribute)
        return extractor
