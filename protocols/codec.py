"""The message codec: typed, frozen dataclasses <-> msgpack arrays, registered by kind.

A leaf module (it imports nothing of the project), shared by the two packages that must
not import each other: protocols/ declare their messages with ``@message(kind)`` and
field bounds (``Max``), and transport.wire puts the bodies this module encodes into
frames and hands received bodies back to ``decode_body``.

A body is a msgpack array holding the message's fields in declaration order (nested
messages are arrays too). Decoding validates the body's shape against the class's field
types and raises ``DecodeError`` (carrying a short reason token for drop counters) on
anything malformed; no other exception escapes ``decode_body``. Nothing is ever unpickled.

Bounds, cheapest first. A field may declare its bound with ``Annotated[bytes, Max(32)]``
(bytes, str: length; ``tuple[X, ...]``: items). From the bounds of its fields each kind
gets, once at registration, the largest body it can encode to (``max_body``: None if some
field is unbounded) and the largest array any part of it holds; ``check_body_length``
refuses a body longer than its kind's ``max_body`` (``too_long_for_kind``) before a byte
of it is parsed (transport.wire calls it on the frame header), and the msgpack Unpacker
is run with that kind's ``max_array_len`` / ``max_bin_len`` / ``max_str_len`` and no maps
or extensions, so one array header claiming millions of items fails in C before any
object is built.

Kind ranges: 1-15 client/common, 16-47 PBFT, 48-79 PoE, 80-111 RCC, 112-127 HotStuff,
128-199 other protocols (Zyzzyva from 160), 200-255 runtime control.

Must not live here: frame headers and who may send what (transport.wire), MACs
(transport.auth), any protocol's messages (they register themselves).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import msgpack

T = TypeVar("T")


class DecodeError(Exception):
    """A received frame is malformed. ``reason`` is a short token for counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class Max:
    """A field's bound at decode: ``Annotated[bytes, Max(32)]`` (bytes or str length) or
    ``Annotated[tuple[X, ...], Max(n)]`` (items)."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"bound {self.n} < 0")


#: unbounded, in the size arithmetic below
_UNBOUNDED = None
_INT_BYTES = 9  # msgpack int64/uint64: marker + 8
_HEAD_BYTES = 5  # msgpack array/bin/str header: marker + u32 length


@dataclasses.dataclass(slots=True)
class _Shape:
    """What a field type can encode to at most: body bytes (None: unbounded), the longest
    array, bin and str anywhere inside it (0: none; None: unbounded)."""

    size: int | None
    array: int | None = 0
    bin: int | None = 0
    str: int | None = 0


def _mx(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def _merge(shapes: Iterable[_Shape], size: int | None, array: int | None) -> _Shape:
    out = _Shape(size, array)
    for s in shapes:
        out.array = _mx(out.array, s.array)
        out.bin = _mx(out.bin, s.bin)
        out.str = _mx(out.str, s.str)
    return out


def _shape(tp: Any) -> _Shape:
    """The encoded bounds of a field type (mirrors _build)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        bound = next((m.n for m in meta if isinstance(m, Max)), None)
        inner = _shape(base)
        if bound is None:
            return inner
        if base is bytes:
            return _Shape(bound + _HEAD_BYTES, 0, bound, 0)
        if base is str:
            return _Shape(4 * bound + _HEAD_BYTES, 0, 0, 4 * bound)
        (item,) = typing.get_args(base)[:1]
        s = _shape(item)
        size = None if s.size is None else _HEAD_BYTES + bound * s.size
        return _merge([s], size, bound)
    if origin in (typing.Union, types.UnionType):
        (arg,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _shape(arg)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return _merge([_shape(args[0])], None, None)  # unbounded items
        shapes = [_shape(a) for a in args]
        sizes = [s.size for s in shapes]
        size = None if None in sizes else _HEAD_BYTES + sum(sizes)  # type: ignore[arg-type]
        return _merge(shapes, size, len(args))
    if isinstance(tp, type) and tp in _SPECS:
        spec = _SPECS[tp]
        return _Shape(spec.max_body, spec.max_array, spec.max_bin, spec.max_str)
    if tp in (int, float):
        return _Shape(_INT_BYTES)
    if tp is bool:
        return _Shape(1)
    if tp is bytes:
        return _Shape(None, 0, None, 0)
    if tp is str:
        return _Shape(None, 0, 0, None)
    return _Shape(None, None, None, None)


# --- field specs: a converter pair per field, built once per class -------------------

_Check = Callable[[Any], Any]  # validates a decoded value and returns the typed value


def _fail(expected: str, value: Any) -> typing.NoReturn:
    raise DecodeError("shape", f"expected {expected}, got {type(value).__name__}")


def _scalar_check(tp: type) -> _Check:
    if tp is int:

        def check_int(v: Any) -> int:
            if type(v) is not int:
                _fail("int", v)
            return v

        return check_int
    if tp is bool:

        def check_bool(v: Any) -> bool:
            if type(v) is not bool:
                _fail("bool", v)
            return v

        return check_bool
    if tp is float:

        def check_float(v: Any) -> float:
            if type(v) is float:
                return v
            if type(v) is int:
                return float(v)
            _fail("float", v)

        return check_float
    if tp is bytes:

        def check_bytes(v: Any) -> bytes:
            if type(v) is not bytes:
                _fail("bytes", v)
            return v

        return check_bytes
    if tp is str:

        def check_str(v: Any) -> str:
            if type(v) is not str:
                _fail("str", v)
            return v

        return check_str
    raise TypeError(f"unsupported wire field type {tp!r}")


_SCALARS = (int, bool, float, bytes, str)


def _bounded(check: _Check, bound: int, reason: str) -> _Check:
    def check_len(v: Any) -> Any:
        out = check(v)
        if len(out) > bound:
            raise DecodeError(reason, f"{len(out)} > bound {bound}")
        return out

    return check_len


def _build(tp: Any) -> tuple[Callable[[Any], Any] | None, _Check]:
    """Return (to_plain, check) for a field type. to_plain None means identity."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        plain, check = _build(base)
        bounds = [m.n for m in meta if isinstance(m, Max)]
        if not bounds:
            return plain, check
        if base in (bytes, str):
            return plain, _bounded(check, bounds[0], "field_too_long")
        if typing.get_origin(base) is tuple and typing.get_args(base)[1:] == (Ellipsis,):
            return plain, _bounded(check, bounds[0], "too_many_items")
        raise TypeError(f"Max bounds bytes, str or tuple[X, ...] fields, not {base!r}")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only X | None unions are supported on the wire, not {tp!r}")
        inner_plain, inner_check = _build(args[0])

        def check_opt(v: Any) -> Any:
            return None if v is None else inner_check(v)

        plain_opt = (
            None if inner_plain is None else (lambda v: None if v is None else inner_plain(v))
        )
        return plain_opt, check_opt
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item_plain, item_check = _build(args[0])

            def check_seq(v: Any) -> tuple:
                if type(v) is not tuple:
                    _fail("array", v)
                return tuple(item_check(x) for x in v)

            if item_plain is None:
                return None, check_seq
            return (lambda v: [item_plain(x) for x in v]), check_seq
        builds = [_build(a) for a in args]
        checks = [b[1] for b in builds]
        plains = [b[0] for b in builds]

        def check_fixed(v: Any) -> tuple:
            if type(v) is not tuple or len(v) != len(checks):
                _fail(f"array of {len(checks)}", v)
            return tuple(c(x) for c, x in zip(checks, v, strict=True))

        if all(p is None for p in plains):
            return None, check_fixed
        return (
            lambda v: [x if p is None else p(x) for p, x in zip(plains, v, strict=True)]
        ), check_fixed
    if isinstance(tp, type) and tp in _SPECS:
        spec = _SPECS[tp]
        return spec.to_plain, spec.from_plain
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        raise TypeError(f"{tp.__name__} must be registered with @message before use as a field")
    return None, _scalar_check(tp)


@dataclasses.dataclass(slots=True)
class _Spec:
    cls: type
    kind: int
    to_plain: Callable[[Any], list]
    from_plain: Callable[[Any], Any]
    max_body: int | None = None  # the longest body this kind encodes to (None: unbounded)
    max_array: int | None = None  # the longest array anywhere in it (None: unbounded)
    max_bin: int | None = None
    max_str: int | None = None
    unpack_limits: dict[str, int] = dataclasses.field(default_factory=dict)
    # msgpack.unpackb with this kind's limits bound once (decode_body's hot path: keyword
    # arguments are parsed at registration, not per message)
    unpack: Callable[[Any], Any] = msgpack.unpackb


_SPECS: dict[type, _Spec] = {}
_BY_KIND: dict[int, _Spec] = {}


def message(kind: int) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as a wire message under ``kind`` (1..65535)."""

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass")
        if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__name__} must be frozen")
        if not 1 <= kind <= 0xFFFF:
            raise ValueError(f"kind {kind} out of range 1..65535")
        # Re-registering the same class (a module reloaded) is allowed; another class under
        # a taken kind is not, even one with the same name in another module.
        taken = _BY_KIND.get(kind)
        if taken is not None and _class_id(taken.cls) != _class_id(cls):
            raise ValueError(
                f"kind {kind} already registered by {taken.cls.__module__}.{taken.cls.__qualname__}"
            )
        if cls in _SPECS and _SPECS[cls].kind != kind:
            raise ValueError(f"{cls.__name__} is already registered as kind {_SPECS[cls].kind}")
        if any(not f.init for f in dataclasses.fields(cls)):
            raise TypeError(f"{cls.__name__}: every field must be an __init__ field (init=True)")
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = [f.name for f in dataclasses.fields(cls)]
        builds = [_build(hints[name]) for name in fields]
        plains = [b[0] for b in builds]
        checks = [b[1] for b in builds]
        getters = [_attrgetter(name) for name in fields]
        nfields = len(fields)

        if all(p is None for p in plains):

            def to_plain(obj: Any) -> list:
                return [g(obj) for g in getters]
        else:

            def to_plain(obj: Any) -> list:
                return [
                    g(obj) if p is None else p(g(obj)) for g, p in zip(getters, plains, strict=True)
                ]

        # Fast path for the common all-scalar message (e.g. Request): when every value
        # already has its field's exact type, the per-field checks would pass unchanged.
        hinted = tuple(_scalar_base(hints[name]) for name in fields)
        exact = hinted if all(t in _SCALARS for t in hinted) else None
        lengths = tuple(
            (i, b) for i, name in enumerate(fields) if (b := _length_bound(hints[name])) is not None
        )

        def from_plain(v: Any) -> Any:
            if type(v) is not tuple or len(v) != nfields:
                raise DecodeError("shape", f"{cls.__name__} needs an array of {nfields} fields")
            if exact is not None and tuple(map(type, v)) == exact:
                for i, b in lengths:  # a plain loop: no generator per message (hot path)
                    if len(v[i]) > b:
                        break
                else:
                    return cls(*v)
            return cls(*[c(x) for c, x in zip(checks, v, strict=True)])

        shape = _merge([_shape(hints[name]) for name in fields], None, nfields)
        sizes = [_shape(hints[name]).size for name in fields]
        max_body = None if None in sizes else _HEAD_BYTES + sum(sizes)  # type: ignore[arg-type]
        limits = {"max_map_len": 0, "max_ext_len": 0}
        for key, value in (
            ("max_array_len", shape.array),
            ("max_bin_len", shape.bin),
            ("max_str_len", shape.str),
        ):
            if value is not None:
                limits[key] = value
        unpack = functools.partial(
            msgpack.unpackb, raw=False, use_list=False, strict_map_key=True, **limits
        )
        spec = _Spec(
            cls,
            kind,
            to_plain,
            from_plain,
            max_body,
            shape.array,
            shape.bin,
            shape.str,
            limits,
            unpack,
        )
        _SPECS[cls] = spec
        _BY_KIND[kind] = spec
        cls.KIND = kind  # type: ignore[attr-defined]
        return cls

    return register


def _scalar_base(tp: Any) -> Any:
    """``bytes`` for ``Annotated[bytes, Max(n)]``; any other type as it is."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _length_bound(tp: Any) -> int | None:
    if typing.get_origin(tp) is not Annotated:
        return None
    return next((m.n for m in typing.get_args(tp)[1:] if isinstance(m, Max)), None)


def _class_id(cls: type) -> tuple[str, str]:
    return (cls.__module__, cls.__qualname__)


def _attrgetter(name: str) -> Callable[[Any], Any]:
    def get(obj: Any) -> Any:
        return getattr(obj, name)

    return get


def registered_kinds() -> dict[int, type]:
    """Every registered kind and its class (for tests and docs)."""
    return {k: s.cls for k, s in _BY_KIND.items()}


def kind_of(msg: Any) -> int:
    return _SPECS[type(msg)].kind


def max_body_of(kind: int) -> int | None:
    """The longest body ``kind`` can encode to (None if a field of it is unbounded)."""
    return _BY_KIND[kind].max_body


def unbounded_fields(cls: type) -> list[str]:
    """Fields of a registered class (not nested ones) whose bytes, str or tuple[X, ...] has
    no ``Max`` bound (tests hold every protocol message to none)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is Annotated:
            continue
        if tp in (bytes, str) or (
            typing.get_origin(tp) is tuple and typing.get_args(tp)[1:] == (Ellipsis,)
        ):
            out.append(f.name)
    return out


# --- bodies -----------------------------------------------------------------------------


def encode_body(msg: Any) -> bytes:
    """The msgpack body of a message (what a signature or digest may cover)."""
    return msgpack.packb(_SPECS[type(msg)].to_plain(msg), use_bin_type=True)


def decode_body(kind: int, body: bytes | memoryview) -> Any:
    """The message of ``kind`` in ``body``; DecodeError if it is malformed."""
    spec = _BY_KIND.get(kind)
    if spec is None:
        raise DecodeError("unknown_kind", str(kind))
    try:
        plain = spec.unpack(body)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several types (ExtraData, ValueError, ...)
        raise DecodeError("body", f"{type(exc).__name__}: {exc}") from None
    try:
        return spec.from_plain(plain)
    except DecodeError:
        raise
    except Exception as exc:  # e.g. a dataclass __post_init__ rejecting a value
        raise DecodeError("shape", f"{type(exc).__name__}: {exc}") from None


def check_body_length(kind: int, length: int) -> None:
    """Refuse a body of ``length`` bytes for ``kind`` before reading it: an unknown kind
    (``unknown_kind``) or one longer than the kind can encode to (``too_long_for_kind``)."""
    spec = _BY_KIND.get(kind)
    if spec is None:
        raise DecodeError("unknown_kind", str(kind))
    if spec.max_body is not None and length > spec.max_body:
        raise DecodeError("too_long_for_kind", f"{length} > {spec.max_body} for kind {kind}")


def kind_and_body(msg: Any) -> tuple[int, bytes]:
    """A message's kind and msgpack body (one lookup: the frame encoder's hot path)."""
    spec = _SPECS[type(msg)]
    return spec.kind, msgpack.packb(spec.to_plain(msg), use_bin_type=True)
