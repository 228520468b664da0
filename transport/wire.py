"""Wire frames: a fixed header in front of a message body, and who may send what.

A frame is a fixed 13-byte header followed by a msgpack body (protocols.codec):

    magic (2 bytes) | version (u8) | kind (u16) | sender (i32) | body length (u32) | body

Decoding validates the header first, cheapest check first: magic, version, the frame
bound, the kind and its body bound (``protocols.codec.check_body_length``), and
``FramePolicy`` (which kinds a client may send and how large), all before the MAC and
the body are touched; then ``protocols.codec.decode_body``. Anything malformed raises
``DecodeError`` with a short reason token for drop counters; no other exception escapes
``decode``. Nothing is ever unpickled.

This module reads only the codec and limits leaves of protocols/ (``protocols.codec``,
which imports nothing of the project), never a protocol.

Must not live here: the body codec and message registry (protocols.codec), MACs
(transport.auth), sockets (transport.zmq_io).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from protocols.codec import DecodeError, check_body_length, decode_body, kind_and_body

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "VERSION",
    "DecodeError",
    "FramePolicy",
    "check_header",
    "decode",
    "decode_body",
    "decode_header",
    "encode",
]

MAGIC = b"\xbf\x7a"
VERSION = 1
HEADER = struct.Struct("!2sBHiI")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class FramePolicy:
    """Who may send which kinds, checked on a frame's header before its MAC and body.

    Senders ``0..replicas-1`` are replicas and may send ``replica_kinds`` (None: any kind;
    a client's receiver takes only Replies); every other sender is a client, which may send
    only ``client_kinds`` in frames of at most ``max_client_frame_bytes``.
    The sender id is the header's claim (the MAC check that follows binds it): a frame
    refused here is either a hostile client's or a forgery, dropped either way.
    """

    replicas: int
    client_kinds: frozenset[int]
    max_client_frame_bytes: int
    replica_kinds: frozenset[int] | None = None

    def refuse(self, kind: int, sender: int, size: int) -> str | None:
        """The drop reason for a frame of ``kind`` from ``sender``, ``size`` bytes; None: ok."""
        if sender < 0:
            return "bad_sender"
        if sender < self.replicas:
            if self.replica_kinds is not None and kind not in self.replica_kinds:
                return "replica_kind"
            return None
        if kind not in self.client_kinds:
            return "client_kind"
        if size > self.max_client_frame_bytes:
            return "client_too_long"
        return None


# --- frames -----------------------------------------------------------------------------


def encode(msg: Any, sender: int) -> bytes:
    """A whole frame: header + body."""
    kind, body = kind_and_body(msg)
    return HEADER.pack(MAGIC, VERSION, kind, sender, len(body)) + body


def decode_header(
    frame: bytes | memoryview, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> tuple[int, int, int]:
    """Validate the header; return (kind, sender, body_length)."""
    size = len(frame)
    if size < HEADER_SIZE:
        raise DecodeError("short", f"{size} bytes < header {HEADER_SIZE}")
    if size > max_frame_bytes:
        raise DecodeError("too_long", f"{size} bytes > bound {max_frame_bytes}")
    magic, version, _, _, length = HEADER.unpack_from(frame, 0)
    if magic == MAGIC and version == VERSION and length != size - HEADER_SIZE:
        raise DecodeError("length", f"header says {length}, frame has {size - HEADER_SIZE}")
    return check_header(frame, 0, max_frame_bytes)


def check_header(
    data: bytes | bytearray | memoryview, offset: int, max_frame_bytes: int
) -> tuple[int, int, int]:
    """Validate the header at ``data[offset:]`` before any of its body is there (a stream
    reader calls it to learn how many bytes to wait for); return (kind, sender,
    body_length). ``data`` must hold HEADER_SIZE bytes from ``offset``."""
    magic, version, kind, sender, length = HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        raise DecodeError("magic", repr(bytes(magic)))
    if version != VERSION:
        raise DecodeError("version", str(version))
    if HEADER_SIZE + length > max_frame_bytes:
        raise DecodeError("too_long", f"{HEADER_SIZE + length} bytes > bound {max_frame_bytes}")
    check_body_length(kind, length)
    return kind, sender, length


def decode(
    frame: bytes | memoryview, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> tuple[int, Any]:
    """Decode a whole frame into (sender, message); raise DecodeError if malformed."""
    kind, sender, length = decode_header(frame, max_frame_bytes)
    return sender, decode_body(kind, memoryview(frame)[HEADER_SIZE:])
