"""GradCAM++ (Chattopadhyay et al., 2018), post-hoc on the CAM model.

α_k(i,j) = g² / (2g² + Σ_ab A_k(a,b) · g³) (0 where g = 0), w_k = Σ_ij α_k(i,j) ReLU(g_k(i,j)),
map = ReLU(Σ_k w_k A_k). pytorch-grad-cam computes exactly this (with 1e-6 added to the
denominator). The reference code's vendored torch-cam never divides: interpretable-fer-aus
``dlib/cams/gradcam.py``, ``GradCAMpp._get_weights``, runs ``alpha = grad_2`` then
``alpha[nan_mask].div_(denom[nan_mask])``, which divides a boolean-indexed copy, so its α stays g²:
a bug we do not reproduce. ``tests/test_mechanism_posthoc.py`` checks the map against this formula.
"""
from methods.posthoc import PostHocCAM
from methods.registry import register


@register
class GradCAMPlusPlus(PostHocCAM):
    name = "gradcampp"
    title = "GradCAM++"
    family = "cnn"
    extractor = "GradCAMPlusPlus"
