"""Typed protocol parameters: how a protocol declares its knobs once and builds them from
``ProtocolConfig.params``.

Each protocol declares a frozen dataclass (``protocols.pbft.params.PbftParams``,
``protocols.poe.params.PoeParams``, ``protocols.rcc.params.RccParams``) whose fields are
its parameters without their prefix, each with a type, a default and a one-line meaning;
``build(cls, params)`` reads the keys ``<prefix><field>`` from the mapping and checks them:

- a value of the wrong type (``bool`` for a bool field, ``int`` but not ``bool`` for an int
  field, ``str`` for a str one), a str outside the field's ``choices``, an int below its
  ``minimum``: ``ValueError`` naming the key and what is allowed;
- a key with this protocol's prefix that is no field of it, or a key that belongs to no
  protocol at all (not one of ``PREFIXES`` nor ``SHARED_KEYS``): ``ValueError`` naming the
  key and the known ones. Keys of the other protocols are theirs to check (the runtime
  hands every protocol the whole protocol section of the config).

config/default.yaml's protocol section lists every parameter declared here, with its
meaning. Bounds that are not tuning knobs (cache sizes, poll periods, view-change caps)
are not parameters: protocols/limits.py names them.

Must not live here: any protocol's own parameters (they stay with the protocol), IO.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

#: the key prefix of each protocol's parameters (pbft, poe, rcc, zyzzyva, hotstuff); a key
#: with none of them (and not in SHARED_KEYS) is refused as unknown by every protocol
PREFIXES = ("pbft_", "poe_", "rcc_", "zyzzyva_", "hotstuff_")
#: keys the runtime passes every protocol that are no protocol's parameter: the wall time of
#: a tick (``protocol.tick_ms``) and RCC's no-op timeout before its conversion to ticks
SHARED_KEYS = frozenset({"tick_ms", "rcc_noop_timeout_ms", "zyzzyva_commit_wait_ms"})

P = TypeVar("P")


def param(
    default: Any, meaning: str, *, choices: tuple[str, ...] = (), minimum: int | None = None
) -> Any:
    """A parameter field: its default, its one-line meaning and, for a str, its allowed
    values (``choices``), for an int its smallest allowed value (``minimum``)."""
    return dataclasses.field(
        default=default, metadata={"meaning": meaning, "choices": choices, "minimum": minimum}
    )


def _check(key: str, field: dataclasses.Field[Any], value: Any) -> Any:
    kind = field.type if isinstance(field.type, str) else field.type.__name__
    choices = field.metadata.get("choices", ())
    minimum = field.metadata.get("minimum")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{key}={value!r}: allowed: true | false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"{key}={value!r}: allowed: an integer"
                + (f" >= {minimum}" if minimum is not None else "")
            )
        if minimum is not None and value < minimum:
            raise ValueError(f"{key}={value!r}: allowed: an integer >= {minimum}")
        return value
    if kind == "str":
        if not isinstance(value, str) or (choices and value not in choices):
            raise ValueError(f"{key}={value!r}: allowed: {' | '.join(choices)}")
        return value
    raise TypeError(f"parameter field {field.name} has unsupported type {kind}")


def build(cls: type[P], params: Mapping[str, Any], prefix: str) -> P:
    """An instance of the parameter dataclass ``cls`` from ``params`` (keys ``prefix`` +
    field name; absent keys take the field's default); ValueError on a bad or unknown key."""
    fields = {prefix + f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in params.items():
        field = fields.get(key)
        if field is not None:
            values[field.name] = _check(key, field, value)
        elif key in SHARED_KEYS:
            continue
        elif key.startswith(prefix):
            raise ValueError(f"unknown protocol parameter {key!r}; known: {', '.join(fields)}")
        elif not key.startswith(PREFIXES):
            raise ValueError(
                f"unknown protocol parameter {key!r}: not a parameter of any protocol "
                f"(prefixes {', '.join(PREFIXES)}; shared: {', '.join(sorted(SHARED_KEYS))})"
            )
    return cls(**values)


def describe(cls: type[Any], prefix: str) -> dict[str, str]:
    """key -> one-line meaning (with its default) of every parameter of ``cls``."""
    return {
        prefix + f.name: f"{f.metadata['meaning']} (default {f.default!r})"
        for f in dataclasses.fields(cls)
    }


__all__ = ["PREFIXES", "SHARED_KEYS", "build", "describe", "param"]
