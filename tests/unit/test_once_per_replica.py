"""Issue 16 item 2: at one replica a client request is hashed once and its signature
verified once however many stages look at the same object (protocols.common memo slots,
fabric.runtime.stages.input.VerifiedCache), and the memo never changes an answer, the
wire shape or equality."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from fabric.runtime.stages.input import CachedVerifier, VerifiedCache
from protocols import codec, common
from protocols.common import Batch, Request, batch_is_valid, make_batch, signed_request, txns_digest


class CountingVerifier:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls = 0

    def verify_request(self, req: Request) -> bool:
        self.calls += 1
        return self.ok


def _req(ts: int = 1, txns: bytes = b"\x91\x01") -> Request:
    return Request(7, ts, txns, b"s" * 64)


def test_a_verified_object_is_not_hashed_or_verified_again(monkeypatch):
    inner = CountingVerifier()
    cache = VerifiedCache(inner)
    req = _req()
    hashes = []
    real = hashlib.sha256
    monkeypatch.setattr(common.hashlib, "sha256", lambda b=b"": hashes.append(1) or real(b))
    assert cache.check(req)  # the input stage's pre-verification
    assert CachedVerifier(inner, cache).verify_request(req)  # the protocol asks again
    assert cache.known(req)
    assert inner.calls == 1 and len(hashes) == 1
    # an equal request decoded anew (a re-sent frame): a lookup and one hash, no verify
    again = codec.decode_body(Request.KIND, codec.encode_body(req))
    assert again == req and again is not req
    assert cache.check(again) and inner.calls == 1 and len(hashes) == 2


def test_a_failed_signature_is_never_marked_and_another_cache_does_not_trust_the_mark():
    bad = VerifiedCache(CountingVerifier(ok=False))
    req = _req()
    assert not bad.check(req) and not bad.known(req)
    good = VerifiedCache(CountingVerifier())
    assert good.check(req)
    other = CountingVerifier(ok=False)
    assert not VerifiedCache(other).check(req) and other.calls == 1  # its own verdict


def test_memo_slots_are_not_fields_and_change_no_answer():
    req = _req()
    assert [f for f in Request.__dataclass_fields__] == [
        "client_id",
        "timestamp",
        "txns",
        "signature",
    ]
    body = codec.encode_body(req)
    assert txns_digest(req) == hashlib.sha256(req.txns).digest()
    assert codec.encode_body(req) == body and req == _req() and hash(req) == hash(_req())
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.txns = b""  # still frozen
    batch = make_batch((req,))
    assert batch_is_valid(batch)
    forged = Batch(requests=(req,), digest=b"x" * 32)
    assert not batch_is_valid(forged) and not batch_is_valid(forged)  # remembered, still False
    decoded = codec.decode_body(Batch.KIND, codec.encode_body(batch))
    assert decoded == batch and batch_is_valid(decoded)


def test_signed_request_builds_one_request_and_signs_the_payload():
    seen = []
    req = signed_request(lambda p: seen.append(p) or b"g" * 64, 5, 9, b"tx")
    assert seen == [common.request_signing_payload(req)] and req.signature == b"g" * 64
    with pytest.raises(ValueError, match="client_id"):
        signed_request(lambda p: b"", -1, 9, b"tx")
    with pytest.raises(ValueError, match="timestamp"):
        signed_request(lambda p: b"", 1, 2**64, b"tx")


def test_copies_work_and_do_not_carry_the_memo():
    """The simulator deep-copies protocol state holding requests (its twice-propose check):
    a frozen message with memo slots must copy, and a copy must earn its own marks."""
    import copy
    import pickle

    cache = VerifiedCache(CountingVerifier())
    req = _req()
    assert cache.check(req)
    batch = make_batch((req,))
    for clone in (copy.deepcopy(batch), pickle.loads(pickle.dumps(batch))):
        assert clone == batch and clone.requests[0] is not req
        assert getattr(clone.requests[0], "_verified_by", None) is None
        assert batch_is_valid(clone)
