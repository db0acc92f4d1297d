"""Typed options: a value from the command line or a TOML file, checked against a dataclass field.

Plugin ``Config`` fields and the harness's own config sections go through the same coercion, so
``--set methods.cutmix.prob=abc`` fails exactly like ``--set train.lr=abc``: one line, before
anything runs. Values arrive as TOML literals (``true``, ``2``, ``0.5``, ``[1, 2]``) or bare
strings; nothing is guessed (``"maybe"`` is not a bool, ``2.5`` is not an int).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class OptionError(ValueError):
    """A value that does not fit its field's type (the message is one line for the user)."""


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` converted to ``annotation`` (bool, int, float, str, tuple[...], X | None), or OptionError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except OptionError as exc:
                errors.append(str(exc))
        raise OptionError(f"bad value {value!r} for {where}: expected {_type_name(annotation)}")
    if annotation in (tuple, list):      # unparameterised: keep the items as given, nested lists as tuples
        items = value if isinstance(value, (list, tuple)) else [v.strip() for v in str(value).split(",") if v.strip()]
        return tuple(tuple(v) if isinstance(v, list) else v for v in items)
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [v.strip() for v in str(value).split(",") if v.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(items))
        if args and len(args) != len(items):
            raise OptionError(f"bad value {value!r} for {where}: expected {len(args)} items ({_type_name(annotation)})")
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args))) if args else tuple(items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif annotation is Any:
        return value
    else:
        raise OptionError(f"{where}: fields of type {_type_name(annotation)} cannot be set from the command line")
    raise OptionError(f"bad value {value!r} for {where}: expected {_type_name(annotation)}")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (works with ``from __future__ import annotations``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """``cls(**values)`` with every value coerced to its field's type; unknown keys are errors."""
    types_ = field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise OptionError(f"unknown option {where}.{unknown[0]}; {where} options: {', '.join(types_) or '(none)'}")
    return cls(**{k: coerce(v, types_[k], f"{where}.{k}") for k, v in values.items()})
