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

Speed (every frame passes here): each class gets, at registration, an encoder (its field
values as a tuple, ``operator.attrgetter`` when no field needs converting) and a decoder
compiled for it (``_decoder``: inline checks of its scalar fields, the object built through
its slots); bodies are packed by the calling thread's msgpack Packer (``_pack``: a
per-thread scratch buffer, so encoding stays deterministic) and unpacked by a call with the
kind's limits written in (``_unpacker``). The bytes and the errors are the generic ones
(tests/unit/test_codec_golden.py pins both).

Kind ranges: 1-15 client/common, 16-47 PBFT, 48-79 PoE, 80-111 RCC, 112-127 HotStuff,
128-199 other protocols (Zyzzyva from 160), 200-255 runtime control.

Must not live here: frame headers and who may send what (transport.wire), MACs
(transport.auth), any protocol's messages (they register themselves).
"""

from __future__ import annotations

import dataclasses
import operator
import threading
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
                return tuple(map(item_check, v))

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
    to_plain: Callable[[Any], tuple]
    from_plain: Callable[[Any], Any]
    max_body: int | None = None  # the longest body this kind encodes to (None: unbounded)
    max_array: int | None = None  # the longest array anywhere in it (None: unbounded)
    max_bin: int | None = None
    max_str: int | None = None
    unpack_limits: dict[str, int] = dataclasses.field(default_factory=dict)
    # msgpack.unpackb with this kind's limits written into its call (_unpacker)
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
        to_plain = _encoder(cls, fields, plains)
        from_plain = _decoder(cls, [hints[name] for name in fields], checks)

        shape = _merge([_shape(hints[name]) for name in fields], None, len(fields))
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
        unpack = _unpacker(cls, limits)
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


# --- per-class encoders and decoders, generated once at registration ----------------------
#
# The hot path of every frame. A decoder checks the cheap scalar fields inline (exact type,
# length bound) and builds the object through its slots (object.__new__ and the slot
# descriptors, then __post_init__ as __init__ would call it: what a frozen dataclass's
# __init__ does, without its object.__setattr__ per field); a value that fails an inline
# check sends the whole array down the generic path (every field's check in order), so a
# malformed body fails with the same reason and detail whichever path saw it.

#: scalar field types a generated decoder checks inline (float is not: an int is converted)
_INLINE = (int, bool, bytes, str)


def _encoder(cls: type, fields: list[str], plains: list[Callable[[Any], Any] | None]) -> Any:
    """``to_plain`` of ``cls``: its field values in order (a tuple packs as an array)."""
    if not fields:
        return lambda obj: ()
    if all(p is None for p in plains):
        if len(fields) == 1:
            get = operator.attrgetter(fields[0])
            return lambda obj: (get(obj),)
        return operator.attrgetter(*fields)  # one C call for the whole tuple
    ns: dict[str, Any] = {f"_p{i}": p for i, p in enumerate(plains) if p is not None}
    items = [
        f"obj.{name}" if p is None else f"_p{i}(obj.{name})"
        for i, (name, p) in enumerate(zip(fields, plains, strict=True))
    ]
    src = f"def to_plain(obj):\n    return ({', '.join(items)},)\n"
    exec(compile(src, f"<codec encoder of {cls.__qualname__}>", "exec"), ns)
    return ns["to_plain"]


def _unpacker(cls: type, limits: dict[str, int]) -> Callable[[Any], Any]:
    """``msgpack.unpackb`` of a body of ``cls`` with its kind's limits as literal keywords
    (half the cost of a functools.partial holding them, which copies its keywords per call)."""
    keywords = ", ".join(f"{k}={int(v)}" for k, v in limits.items())
    src = (
        "def unpack(body):\n"
        "    return _unpackb(body, raw=False, use_list=False, strict_map_key=True, "
        f"{keywords})\n"
    )
    ns: dict[str, Any] = {"_unpackb": msgpack.unpackb}
    exec(compile(src, f"<codec unpacker of {cls.__qualname__}>", "exec"), ns)
    return ns["unpack"]


def _slot_setters(cls: type, fields: list[str]) -> list[Callable[[Any, Any], None]] | None:
    """The slot descriptors' setters of ``cls``'s fields, if its objects can be built
    through them as its dataclass __init__ would (else None: the decoder calls ``cls``)."""
    init = getattr(cls.__init__, "__code__", None)
    if cls.__new__ is not object.__new__ or init is None or init.co_filename != "<string>":
        return None  # a hand-written __init__ or __new__: call it
    setters = []
    for name in fields:
        slot = getattr(cls, name, None)
        if not isinstance(slot, types.MemberDescriptorType):
            return None  # no __slots__ (a dict-backed dataclass)
        setters.append(slot.__set__)
    return setters


def _decoder(cls: type, hints: list[Any], checks: list[_Check]) -> Callable[[Any], Any]:
    """``from_plain`` of ``cls`` (section note above)."""
    n = len(hints)
    shape_detail = f"{cls.__name__} needs an array of {n} fields"

    def generic(v: Any) -> Any:
        return cls(*[c(x) for c, x in zip(checks, v, strict=True)])

    fields = [f.name for f in dataclasses.fields(cls)]
    setters = _slot_setters(cls, fields)
    ns: dict[str, Any] = {
        "_DecodeError": DecodeError,
        "_shape_detail": shape_detail,
        "_generic": generic,
        "_cls": cls,
        "_new": object.__new__,
    }
    inline: list[str] = []
    nested: list[str] = []
    for i, tp in enumerate(hints):
        base = _scalar_base(tp)
        if base in _INLINE:
            ns[f"_t{i}"] = base
            inline.append(f"type(a{i}) is _t{i}")
            bound = _length_bound(tp)
            if bound is not None:
                inline.append(f"len(a{i}) <= {bound}")
        else:
            ns[f"_c{i}"] = checks[i]
            nested.append(f"a{i} = _c{i}(a{i})")
    names = [f"a{i}" for i in range(n)]
    body = [f"{', '.join(names)}, = v"] if n else []
    build = list(nested)
    if setters is None:
        build.append(f"return _cls({', '.join(names)})")
    else:
        build.append("o = _new(_cls)")
        for i, setter in enumerate(setters):
            ns[f"_s{i}"] = setter
            build.append(f"_s{i}(o, a{i})")
        if hasattr(cls, "__post_init__"):
            build.append("o.__post_init__()")
        build.append("return o")
    if inline:
        body.append(f"if {' and '.join(inline)}:")
        body.extend(f"    {line}" for line in build)
        body.append("return _generic(v)")
    else:
        body.extend(build)
    src = (
        "def from_plain(v):\n"
        f"    if type(v) is not tuple or len(v) != {n}:\n"
        "        raise _DecodeError('shape', _shape_detail)\n"
        + "".join(f"    {line}\n" for line in body)
    )
    exec(compile(src, f"<codec decoder of {cls.__qualname__}>", "exec"), ns)
    from_plain = ns["from_plain"]
    from_plain.inline_build = setters is not None  # type: ignore[attr-defined]
    return from_plain


def _scalar_base(tp: Any) -> Any:
    """``bytes`` for ``Annotated[bytes, Max(n)]``; any other type as it is."""
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _length_bound(tp: Any) -> int | None:
    if typing.get_origin(tp) is not Annotated:
        return None
    return next((m.n for m in typing.get_args(tp)[1:] if isinstance(m, Max)), None)


def _class_id(cls: type) -> tuple[str, str]:
    return (cls.__module__, cls.__qualname__)


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


#: a thread's Packer is replaced once it packed a body longer than this: its buffer grows
#: to the longest body it packed and never shrinks (bytes)
PACKER_KEEP_BYTES = 256 * 1024
_packers = threading.local()  # one msgpack.Packer per thread (a Packer is not thread-safe)


def _pack(plain: Any) -> bytes:
    """``msgpack.packb(plain, use_bin_type=True)`` (the same bytes) through the calling
    thread's Packer, not a new one per body (packb builds and frees one each call)."""
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    body = packer.pack(plain)  # on an error the Packer empties its buffer, then raises
    if len(body) > PACKER_KEEP_BYTES:
        _packers.packer = msgpack.Packer(use_bin_type=True)
    return body


def encode_body(msg: Any) -> bytes:
    """The msgpack body of a message (what a signature or digest may cover)."""
    return _pack(_SPECS[type(msg)].to_plain(msg))


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
    return spec.kind, _pack(spec.to_plain(msg))
