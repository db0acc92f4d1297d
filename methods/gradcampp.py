"""GradCAM++ (Chattopadhyay et al., 2018), post-hoc on the CAM model.

α_k(i,j) = g² / (2g² + Σ_ab A_k(a,b) · g³) (0 where g = 0), w_k = Σ_ij α_k(i,j) ReLU(g_k(i,j)).
pytorch-grad-cam divides properly; the reference code's vendored torch-cam never divided (its α
stayed g²), a bug we do not reproduce.
"""
from methods.posthoc import PostHocCAM
from methods.registry import register


@register
class GradCAMPlusPlus(PostHocCAM):
    name = "gradcampp"
    title = "GradCAM++"
    family = "cnn"
    extractor = "GradCAMPlusPlus"
