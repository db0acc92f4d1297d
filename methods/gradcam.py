"""GradCAM (Selvaraju et al., 2017), post-hoc on the CAM model.

Weights = spatial mean of ∂y_c/∂A; map = ReLU(Σ_k w_k A_k), min-max normalised. On a GAP+FC
head the gradient is constant per channel (w_{c,k}/hw), so GradCAM = ReLU(CAM) up to scale.
"""
from methods.posthoc import PostHocCAM
from methods.registry import register


@register
class GradCAM(PostHocCAM):
    name = "gradcam"
    title = "GradCAM"
    family = "cnn"
    extractor = "GradCAM"
