"""Configuration dataclasses whose fields carry their own description and range.

A core's config dataclass (``policy.safety.SafetyConfig``, ...) is the one definition of
each value: its default, what it means, and the range it must lie in. A ROS node composes its
parameters from such dataclasses: a field of a node's parameter dataclass whose default is
another config dataclass becomes one parameter per inner field, named ``outer.inner``
(``safety.max_speed``, the way Nav2 namespaces a plugin's parameters). This module flattens
and rebuilds those nested dataclasses without importing ROS, so the node, the stack's
parameter checks, ``slowfast params`` and in-process runners read the same list.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, NamedTuple


def described(default, help: str, lo: float | None = None, hi: float | None = None):  # noqa: A002
    """A dataclass field with a description and, for a number, an inclusive range
    (checked by :func:`check_ranges`). A list/dict/dataclass default is copied per instance."""
    meta = {"help": help}
    if lo is not None or hi is not None:
        meta["range"] = (lo, hi)
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_default(f: dataclasses.Field):
    """A field's default value (its factory's product for a list or a nested config)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def check_ranges(obj) -> None:
    """ValueError naming the first field of dataclass ``obj`` outside its declared range."""
    for f in dataclasses.fields(obj):
        rng = f.metadata.get("range")
        if rng is None:
            continue
        v, (lo, hi) = getattr(obj, f.name), rng
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{f.name}: {v!r} is not a number")
        if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):     # NaN is in no range
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            raise ValueError(f"{f.name}: {v:g} outside [{lo_s}, {hi_s}]")


class Flat(NamedTuple):
    """One parameter of a (possibly nested) parameter dataclass."""
    name: str                 # "max_speed" or "safety.max_speed"
    default: Any
    help: str
    range: tuple | None       # (lo, hi), either may be None


def _nested(default) -> bool:
    return dataclasses.is_dataclass(default) and not isinstance(default, type)


def flat_fields(spec, prefix: str = "") -> list[Flat]:
    """Every parameter of dataclass ``spec`` (class or instance), nested configs flattened to
    ``outer.inner`` (``outer.mid.inner`` for a config inside a config) with the inner
    dataclass's descriptions, ranges and the outer default's values (a node may set its own
    default for an inner value)."""
    out = []
    for f in dataclasses.fields(spec):
        default = getattr(spec, f.name) if not isinstance(spec, type) else field_default(f)
        if _nested(default):
            out += flat_fields(default, f"{prefix}{f.name}.")
        else:
            out.append(Flat(f"{prefix}{f.name}", default, f.metadata.get("help", ""), f.metadata.get("range")))
    return out


def build(spec, values: dict):
    """An instance of dataclass ``spec`` with the flat ``values`` (``{"safety.max_speed": 0.1,
    ...}``; absent names keep their defaults). Lists become tuples where the default is a
    tuple. A nested config's own validation error is reported with the parameter's full name
    (``safety.max_speed: ...``). KeyError for a name the dataclass does not have."""
    known = {fl.name for fl in flat_fields(spec)}
    for k in values:
        if k not in known:
            raise KeyError(k)
    return _build(spec, values, "")


def _build(spec, values: dict, prefix: str):
    cls = spec if isinstance(spec, type) else type(spec)
    kwargs = {}
    for f in dataclasses.fields(cls):
        default = getattr(spec, f.name) if not isinstance(spec, type) else field_default(f)
        name = f"{prefix}{f.name}"
        if _nested(default):
            if any(k.startswith(name + ".") for k in values):
                try:
                    kwargs[f.name] = _build(default, values, name + ".")
                except ValueError as exc:
                    raise ValueError(f"{f.name}.{exc}") from None
            else:
                kwargs[f.name] = default
        elif name in values:
            kwargs[f.name] = _like(default, values[name])
    if not isinstance(spec, type):   # an instance: its values are the defaults of what is not given
        return dataclasses.replace(spec, **kwargs)
    return cls(**kwargs)


def _like(default, value):
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
