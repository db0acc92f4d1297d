"""CAM method plugins and their registry.

Built-in methods register themselves when this package is imported; third-party packages add
theirs through the entry-point group ``au_cam_bench.methods`` (see docs/plugins.md).
"""
from methods.base import Batch, Method, Output
from methods.registry import (BrokenPlugin, PluginError, UnknownMethodError, all_methods, broken_plugins,
                              get_method, method_names, plugin_origin, register)
from methods.posthoc import PostHocCAM
# Built-ins, in the paper's table order (the registry keeps this order).
from methods import cam, wildcat, gradcam, gradcampp, acol, prm, adl, cutmix, layercam  # noqa: F401,E401
from methods import tscam, apvit  # noqa: F401,E401  (the transformer rows)

__all__ = [
    "Batch", "BrokenPlugin", "Method", "Output", "PluginError", "PostHocCAM", "UnknownMethodError", "all_methods",
    "broken_plugins", "get_method", "method_names", "plugin_origin", "register",
]
