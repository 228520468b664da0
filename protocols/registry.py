"""Protocols by name: the config's ``protocol.name`` selects one here.

Built-in protocols are imported lazily (so a broken optional module does not
break the others); third-party ones call ``register``.
"""

from __future__ import annotations

import importlib
import importlib.util

from protocols.base import Protocol

_BUILTIN_MODULES = {
    "pbft": "protocols.pbft",
    "poe": "protocols.poe",
    "rcc": "protocols.rcc",
    "hotstuff": "protocols.hotstuff",
    "null": "protocols.null",
    "zyzzyva": "protocols.zyzzyva",
}
_REGISTRY: dict[str, type[Protocol]] = {}


def register(cls: type[Protocol]) -> type[Protocol]:
    """Class decorator: make ``cls`` selectable by ``cls.name``."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"protocol {name!r} already registered by {_REGISTRY[name].__qualname__}")
    _REGISTRY[name] = cls
    return cls


def available() -> list[str]:
    """Names a config may use (built-ins whose module imports, plus registered ones)."""
    names = set(_REGISTRY)
    for name, module in _BUILTIN_MODULES.items():
        if importlib.util.find_spec(module) is not None:
            names.add(name)
    return sorted(names)


def describe() -> str:
    """The names a config may use, each known-unsafe one marked (for --help texts)."""
    parts = []
    for name in available():
        try:
            unsafe = get(name).unsafe
        except Exception:  # a built-in whose module fails to import: still listed
            unsafe = ""
        parts.append(f"{name} (KNOWN UNSAFE: needs protocol.allow_unsafe)" if unsafe else name)
    return " | ".join(parts)


def get(name: str) -> type[Protocol]:
    """The protocol class called ``name``; a clear error naming the choices otherwise."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; available: {', '.join(available())}") from None
