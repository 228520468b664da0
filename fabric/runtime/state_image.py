"""The executor's whole state at one sequence number, as one value: ``StateImage``.

What a replica needs to continue executing from ``seq`` exactly as a replica that executed
1..seq itself: the ledger head (the chain continues from it), every written store record,
and the per-client replay state (each client's last results in insertion order, its
eviction floor, and how many results it ever inserted). ``Executor.export_image()`` makes
one, ``Executor.install_image(image)`` replaces the executor's state with one (a restarted
replica's durable state, or a snapshot fetched by state transfer).

The digest commits to all of it: ``state_digest(seq, head, store_acc, clients_acc)`` with
two order-independent accumulators (AdHash-style: the sum mod 2**512 of a BLAKE2b-512 of
each element), so the Executor keeps them current per write (O(writes) per batch, O(1) per
checkpoint) and an image recomputes them from its items (O(image)). The 512-bit sum keeps
the generalised-birthday attack on additive hashes out of reach for a peer that forges an
image. A store element is (key, value); a client contributes one element per kept result
(client, position, timestamp, result) and one for (client, floor, inserted): positions are
the insertion order, so the order that decides future evictions is committed too.

Encoding: a msgpack array (bins and ints only, no maps, no extensions, never pickle),
decoded with explicit bounds (``MAX_IMAGE_BYTES`` and per-array caps); ``ImageError`` on
anything malformed. Must not live here: how an image travels (fabric.runtime.state_transfer),
how it is applied (fabric.runtime.execute), storage on disk (fabric.runtime.storage).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

IMAGE_VERSION = 1
#: bytes of one encoded image at most (a YCSB store of 1M records x 100 B is ~110 MB)
MAX_IMAGE_BYTES = 512 * 1024 * 1024
#: store records one image may hold
MAX_IMAGE_RECORDS = 8 * 1024 * 1024
#: clients one image may hold (the executor's max_clients default is 65,536)
MAX_IMAGE_CLIENTS = 1 << 17
#: kept results per client (the executor's replay_window; configs stay far below)
MAX_IMAGE_RESULTS_PER_CLIENT = 1 << 16
#: bytes of one stored value (workloads.txn's value bound is 1 MiB)
MAX_IMAGE_VALUE_BYTES = 1 << 20

ACC_BITS = 512
ACC_MOD = 1 << ACC_BITS
ACC_BYTES = ACC_BITS // 8
ELEMENT_BYTES = 64  # one element: a BLAKE2b-512 digest

_blake = hashlib.blake2b
_from = int.from_bytes
_Q = struct.Struct("!Q")
_q = struct.Struct("!q")
_STORE_TAG = b"S"
_RESULT_TAG = b"R"
_CLIENT_TAG = b"C"
_STATE_TAG = b"bft-fabric/state/v1"
_STORE_HASH = _blake(_STORE_TAG)  # copied per store element (hashlib copies are thread-safe)


class ImageError(Exception):
    """An encoded image is malformed or exceeds a bound; ``reason`` is a short token."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- the accumulators' elements (the Executor updates with the same functions) ---------


def store_element(key: int, value: bytes) -> int:
    """The accumulator element of store record ``key`` holding ``value``: BLAKE2b-512 of
    (tag, key as signed 8 bytes, value), hashed from a copy of a hasher already fed the tag
    (the same digest as hashing the concatenation, without building it)."""
    h = _STORE_HASH.copy()
    h.update(_q.pack(key))
    h.update(value)
    return _from(h.digest(), "big")


def store_element_bytes(key: int, value: bytes) -> bytes:
    """``store_element(key, value)`` as its ``ELEMENT_BYTES`` big-endian bytes (the BLAKE2b-512
    digest itself), for a caller that keeps elements compactly (the Executor's memo)."""
    h = _STORE_HASH.copy()
    h.update(_q.pack(key))
    h.update(value)
    return h.digest()


def result_element(client: int, position: int, timestamp: int, result: bytes) -> int:
    """The element of ``client``'s result for ``timestamp``, its ``position``-th insertion.
    A timestamp is a u64 (protocols.common.Request): packed unsigned (the same bytes as
    signed below 2**63; a hostile 2**63 or more raised here and killed the execute stage)."""
    return _from(
        _blake(
            _RESULT_TAG + _q.pack(client) + _Q.pack(position) + _Q.pack(timestamp) + result
        ).digest(),
        "big",
    )


def _floor_bytes(floor: int) -> bytes:
    """A client's eviction floor: -1 (nothing evicted) or a u64 timestamp. Signed 8 bytes
    as before for -1..2**63-1; 9 bytes (a marker, then unsigned) above, so no two floors
    share their bytes (the element's input length tells the two forms apart)."""
    return _q.pack(floor) if floor < 1 << 63 else b"\x01" + _Q.pack(floor)


def client_element(client: int, floor: int, inserted: int) -> int:
    """The element of ``client``'s eviction floor and insertion count."""
    return _from(
        _blake(_CLIENT_TAG + _q.pack(client) + _floor_bytes(floor) + _Q.pack(inserted)).digest(),
        "big",
    )


def state_digest(seq: int, head: bytes, store_acc: int, clients_acc: int) -> bytes:
    """The checkpoint state digest: sha256 over seq, ledger head and both accumulators."""
    return hashlib.sha256(
        _STATE_TAG
        + _Q.pack(seq)
        + head
        + store_acc.to_bytes(ACC_BYTES, "big")
        + clients_acc.to_bytes(ACC_BYTES, "big")
    ).digest()


# --- the image -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientImage:
    """One client's replay state: results in insertion order (oldest first)."""

    client: int
    floor: int
    inserted: int  # results ever inserted (the next one's position)
    results: tuple[tuple[int, bytes], ...]  # (timestamp, result digest), oldest first

    def elements(self) -> int:
        """This client's contribution to the clients accumulator (mod ACC_MOD)."""
        first = self.inserted - len(self.results)
        acc = client_element(self.client, self.floor, self.inserted)
        for i, (ts, result) in enumerate(self.results):
            acc += result_element(self.client, first + i, ts, result)
        return acc % ACC_MOD


@dataclass(frozen=True, slots=True)
class StateImage:
    """The executor's state after ``seq`` (see the module comment)."""

    seq: int
    ledger_head: bytes
    store: tuple[tuple[int, bytes], ...]  # written records, sorted by key
    clients: tuple[ClientImage, ...]  # sorted by client id

    def accumulators(self) -> tuple[int, int]:
        """(store_acc, clients_acc), recomputed from the items (O(image))."""
        store_acc = 0
        for key, value in self.store:
            store_acc += store_element(key, value)
        clients_acc = 0
        for c in self.clients:
            clients_acc += c.elements()
        return store_acc % ACC_MOD, clients_acc % ACC_MOD

    def digest(self) -> bytes:
        """The state digest a checkpoint of this state carries (equal to the executor's)."""
        store_acc, clients_acc = self.accumulators()
        return state_digest(self.seq, self.ledger_head, store_acc, clients_acc)

    @staticmethod
    def decode(data: bytes) -> StateImage:
        """``decode_image(data)``: the image ``data`` encodes (ImageError if malformed)."""
        return decode_image(data)

    def encode(self) -> bytes:
        """msgpack bytes of this image (``decode_image`` reads them back)."""
        return msgpack.packb(
            [
                IMAGE_VERSION,
                self.seq,
                self.ledger_head,
                [[k, v] for k, v in self.store],
                [
                    [c.client, c.floor, c.inserted, [[t, r] for t, r in c.results]]
                    for c in self.clients
                ],
            ],
            use_bin_type=True,
        )


def _int(x: Any, what: str, low: int = -(1 << 63), high: int = (1 << 63) - 1) -> int:
    if type(x) is not int or not low <= x <= high:
        raise ImageError("bad_field", f"{what}: {x!r:.40}")
    return x


def _bin(x: Any, what: str, max_len: int) -> bytes:
    if type(x) is not bytes or len(x) > max_len:
        raise ImageError("bad_field", f"{what}: not bytes of at most {max_len}")
    return x


def _arr(x: Any, what: str, max_len: int, exact: int | None = None) -> list[Any]:
    if type(x) is not list or len(x) > max_len or (exact is not None and len(x) != exact):
        raise ImageError("bad_field", f"{what}: not an array of at most {max_len}")
    return x


def decode_image(data: bytes) -> StateImage:
    """The image ``data`` encodes; ``ImageError`` (never another exception) if malformed."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError("too_long", f"{len(data)} bytes > {MAX_IMAGE_BYTES}")
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=MAX_IMAGE_VALUE_BYTES,
            max_str_len=0,
            max_array_len=max(MAX_IMAGE_RECORDS, MAX_IMAGE_CLIENTS),
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types on hostile bytes
        raise ImageError("bad_msgpack", type(exc).__name__) from None
    top = _arr(raw, "image", 5, exact=5)
    if top[0] != IMAGE_VERSION:
        raise ImageError("bad_version", repr(top[0])[:20])
    seq = _int(top[1], "seq", 0)
    head = _bin(top[2], "ledger_head", 32)
    if len(head) != 32:
        raise ImageError("bad_field", "ledger_head: not 32 bytes")
    store = []
    last_key: int | None = None
    for item in _arr(top[3], "store", MAX_IMAGE_RECORDS):
        pair = _arr(item, "record", 2, exact=2)
        key = _int(pair[0], "key")
        if last_key is not None and key <= last_key:
            raise ImageError("unsorted", "store keys must be strictly increasing")
        last_key = key
        store.append((key, _bin(pair[1], "value", MAX_IMAGE_VALUE_BYTES)))
    clients = []
    last_cid: int | None = None
    for item in _arr(top[4], "clients", MAX_IMAGE_CLIENTS):
        c = _arr(item, "client", 4, exact=4)
        cid = _int(c[0], "client")
        if last_cid is not None and cid <= last_cid:
            raise ImageError("unsorted", "client ids must be strictly increasing")
        last_cid = cid
        floor = _int(c[1], "floor")
        inserted = _int(c[2], "inserted", 0)
        results = []
        seen: set[int] = set()
        for r in _arr(c[3], "results", MAX_IMAGE_RESULTS_PER_CLIENT):
            pair = _arr(r, "result", 2, exact=2)
            ts = _int(pair[0], "timestamp")
            if ts in seen:
                raise ImageError("duplicate", f"client {cid} timestamp {ts}")
            seen.add(ts)
            results.append((ts, _bin(pair[1], "result", 32)))
        if len(results) > inserted:
            raise ImageError("bad_field", f"client {cid}: more results than inserted")
        clients.append(ClientImage(cid, floor, inserted, tuple(results)))
    return StateImage(seq, head, tuple(store), tuple(clients))


__all__ = [
    "ACC_MOD",
    "ELEMENT_BYTES",
    "MAX_IMAGE_BYTES",
    "ClientImage",
    "ImageError",
    "StateImage",
    "client_element",
    "decode_image",
    "result_element",
    "state_digest",
    "store_element",
    "store_element_bytes",
]
