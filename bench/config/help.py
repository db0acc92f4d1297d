"""``bench run --list-settings``: every key ``--set`` accepts, with its type and value in a profile.

Generated from the config dataclasses and each plugin's ``Config``, so it cannot drift from what
``--set`` validates.
"""
from __future__ import annotations

import dataclasses

from bench.config.settings import _SECTION_TYPES, resolve


def _type_label(annotation) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


def settings_table(profile: str) -> str:
    """Plain text, one key per line: ``key  type  value`` (the profile's value, or the default)."""
    from methods import all_methods
    from methods.options import field_types

    config = resolve(profile)
    lines = [f"# --set keys and their values in profile {profile!r} (tables [datasets.<name>.*], "
             "[per_method.<name>.*] and [per_au.on|off.*] of the profile may change them per cell)"]
    for name, cls in _SECTION_TYPES.items():
        types = field_types(cls)
        section = getattr(config, name)
        for f in dataclasses.fields(cls):
            lines.append(f"{name}.{f.name}\t{_type_label(types[f.name])}\t{getattr(section, f.name)!r}")
    for method, cls in all_methods().items():
        types = field_types(cls.Config)
        values = {**cls.defaults(), **config.methods.get(method, {})}
        for key, annotation in types.items():
            lines.append(f"methods.{method}.{key}\t{_type_label(annotation)}\t{values[key]!r}")
    width = max(len(line.split("\t")[0]) for line in lines[1:])
    out = [lines[0]]
    for line in lines[1:]:
        key, kind, value = line.split("\t")
        out.append(f"{key:<{width}}  {kind:<22}  {value}")
    return "\n".join(out) + "\n"
