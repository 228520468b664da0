"""Hypothesis strategies that build any registered wire message from its type hints.

Shared by the wire tests (round trips, malformed frames) and the protocol fuzz tests
(hostile messages). ``ints`` chooses the integers: the whole wire range by default; the
fuzz tests bias towards small values so views, sequence numbers and replica ids hit real
code paths instead of always falling outside every window.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from protocols import codec

INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1
WIRE_INTS = st.integers(INT64_MIN, UINT64_MAX)
SMALL_OR_WIRE_INTS = st.one_of(st.integers(-2, 12), st.integers(-2, 12), WIRE_INTS)


def strategy_for(
    tp: Any, depth: int = 0, ints: st.SearchStrategy[int] = WIRE_INTS
) -> st.SearchStrategy[Any]:
    """A strategy for values of a wire field type (the types codec._build accepts); values
    stay within a field's ``codec.Max`` bound (a longer one is a decode case, not a round trip)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        bound = next((m.n for m in meta if isinstance(m, codec.Max)), None)
        if bound is not None and base is bytes:
            return st.binary(max_size=min(48, bound))
        inner = strategy_for(base, depth, ints)
        return inner if bound is None else inner.filter(lambda v: len(v) <= bound)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.none() | strategy_for(inner, depth, ints)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            size = 4 if depth < 2 else 1
            return st.lists(strategy_for(args[0], depth + 1, ints), max_size=size).map(tuple)
        return st.tuples(*[strategy_for(a, depth + 1, ints) for a in args])
    if isinstance(tp, type) and tp in codec.registered_kinds().values():
        return message_strategy(tp, depth + 1, ints)
    scalars: dict[type, st.SearchStrategy[Any]] = {
        bool: st.booleans(),
        int: ints,
        float: st.floats(allow_nan=False),
        bytes: st.binary(max_size=48),
        str: st.text(max_size=24),
    }
    if tp in scalars:
        return scalars[tp]
    raise TypeError(f"no strategy for wire field type {tp!r}")


def message_strategy(
    cls: type, depth: int = 0, ints: st.SearchStrategy[int] = WIRE_INTS
) -> st.SearchStrategy[Any]:
    """Instances of the registered message class ``cls`` (values its __post_init__ refuses
    are not wire cases: the decoder refuses them too)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: strategy_for(hints[f.name], depth, ints) for f in dataclasses.fields(cls)}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        values = {name: draw(s) for name, s in fields.items()}
        try:
            return cls(**values)
        except (ValueError, TypeError):
            assume(False)

    return build()
