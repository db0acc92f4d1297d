"""CAM method plugins and their registry.

Built-in methods register themselves when this package is imported; third-party packages add
theirs through the entry-point group ``au_cam_bench.methods`` (see README, "Add a method").
"""
from methods.base import Batch, Method, Output
from methods.registry import UnknownMethodError, all_methods, get_method, method_names, register
from methods import cam as _cam  # noqa: F401  (registers "cam")

__all__ = [
    "Batch", "Method", "Output", "UnknownMethodError", "all_methods", "get_method", "method_names",
    "register",
]
