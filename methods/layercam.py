"""LayerCAM (Jiang et al., 2021), post-hoc on the CAM model.

Per-position weights: map = ReLU(Σ_k ReLU(g_k(i,j)) A_k(i,j)), as pytorch-grad-cam computes it and
as the reference code's vendored torch-cam does (interpretable-fer-aus ``dlib/cams/gradcam.py``,
``LayerCAM._get_weights`` returns ReLU(g)). On layer 5 of a GAP+FC head the gradient is
w_{c,k}/hw everywhere, so LayerCAM is the CAM restricted to positive weights.
"""
from methods.posthoc import PostHocCAM
from methods.registry import register


@register
class LayerCAM(PostHocCAM):
    name = "layercam"
    title = "LayerCAM"
    family = "cnn"
    extractor = "LayerCAM"
