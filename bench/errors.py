"""User-facing errors: one line saying what, where and how to fix; the CLI exits with code 2.

Lower layers raise their own exception types (``methods.UnknownMethodError``,
``backbones.PretrainedWeightsError``); they are recognised here without importing those packages,
so ``bench --help`` stays fast (no torch import).
"""
from __future__ import annotations

import sys


class UserError(Exception):
    """Bad input from the user (unknown name, bad option, missing or malformed data)."""


#: (module, class) of lower-layer exceptions whose message is a complete instruction for the user.
_LOWER_LAYER_USER_ERRORS = (
    ("methods.registry", "UnknownMethodError"),
    ("backbones.base", "PretrainedWeightsError"),
    ("methods.options", "OptionError"),
    ("methods.registry", "PluginError"),
)


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, UserError):
        return True
    for module, name in _LOWER_LAYER_USER_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
