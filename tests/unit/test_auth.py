"""Keys, link MACs and signatures (transport.auth): round trips and every rejection.

Must not live here: sockets (integration/test_transport.py), frame decoding (test_wire.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.common import Request, request_signing_payload, signed_request
from transport import auth, wire

NODES = 6
KEYS = auth.derive_keys("test-secret", NODES)
MAC_SCHEMES = ["cmac-aes", "hmac-sha256"]


def frame_from(sender: int, txns: bytes = b"payload") -> bytes:
    return wire.encode(Request(max(sender, 0), 1, txns, b""), sender)  # the header carries sender


def reason_of(link: auth.LinkAuth, data: bytes) -> str:
    with pytest.raises(wire.DecodeError) as info:
        link.open(data)
    return info.value.reason


# --- key derivation ----------------------------------------------------------------------


def test_derivation_is_deterministic_and_symmetric() -> None:
    again = auth.derive_keys("test-secret", NODES)
    for scheme, size in (("cmac-aes", 16), ("hmac-sha256", 32)):
        seen = set()
        for a in range(NODES):
            for b in range(NODES):
                key = KEYS.link_key(scheme, a, b)
                assert key is not None and len(key) == size
                assert key == KEYS.link_key(scheme, b, a) == again.link_key(scheme, a, b)
                seen.add(key)
        assert len(seen) == NODES * (NODES + 1) // 2  # a distinct key per unordered pair
    for node in range(NODES):
        assert KEYS.public_key_bytes(node) == again.public_key_bytes(node)
    assert len({KEYS.public_key_bytes(i) for i in range(NODES)}) == NODES


def test_derivation_depends_on_the_secret_and_scheme() -> None:
    other = auth.derive_keys("another-secret", NODES)
    assert other.link_key("hmac-sha256", 0, 1) != KEYS.link_key("hmac-sha256", 0, 1)
    assert other.public_key_bytes(0) != KEYS.public_key_bytes(0)
    assert KEYS.link_key("cmac-aes", 0, 1) != KEYS.link_key("hmac-sha256", 0, 1)[:16]


def test_only_node_keeps_its_own_links_and_private_key() -> None:
    mine = auth.derive_keys("test-secret", NODES, only_node=2)
    assert mine.peers("cmac-aes", 2) == list(range(NODES))
    assert mine.link_key("cmac-aes", 2, 4) == KEYS.link_key("cmac-aes", 2, 4)
    assert mine.link_key("cmac-aes", 0, 1) is None
    assert mine.signing_key(2) is not None and mine.signing_key(0) is None
    assert mine.public_key_bytes(0) == KEYS.public_key_bytes(0)


def test_keystore_rejects_bad_explicit_keys() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        auth.KeyStore({"cmac-aes": {(0, 1): b"short"}}, {}, {})
    with pytest.raises(ValueError, match="unknown MAC scheme"):
        auth.KeyStore({"md5": {}}, {}, {})
    with pytest.raises(ValueError):
        auth.derive_keys("s", 0)


def test_explicit_keys_are_the_seam_for_key_exchange() -> None:
    key = bytes(range(16))
    store = auth.KeyStore({"cmac-aes": {(1, 0): key}}, {}, {})
    assert store.link_key("cmac-aes", 0, 1) == key == store.link_key("cmac-aes", 1, 0)
    sealed = auth.LinkAuth("cmac-aes", 1, store).seal(0, frame_from(1))
    assert auth.LinkAuth("cmac-aes", 0, store).open(sealed) == frame_from(1)


# --- link MACs ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", MAC_SCHEMES + ["none"])
def test_seal_open_round_trip(scheme: str) -> None:
    alice, bob = auth.LinkAuth(scheme, 1, KEYS), auth.LinkAuth(scheme, 4, KEYS)
    frame = frame_from(1)
    sealed = alice.seal(4, frame)
    assert alice.tag_size == {"cmac-aes": 16, "hmac-sha256": 32, "none": 0}[scheme]
    assert len(sealed) == len(frame) + alice.tag_size and sealed.startswith(frame)
    assert bob.open(sealed) == frame
    assert wire.decode(bob.open(sealed))[0] == 1


@pytest.mark.parametrize("scheme", MAC_SCHEMES)
@settings(deadline=None, max_examples=200)
@given(txns=st.binary(max_size=300), data=st.data())
def test_any_single_bit_flip_is_rejected(scheme: str, txns: bytes, data: st.DataObject) -> None:
    alice, bob = auth.LinkAuth(scheme, 1, KEYS), auth.LinkAuth(scheme, 4, KEYS)
    sealed = bytearray(alice.seal(4, frame_from(1, txns)))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    reason = reason_of(bob, bytes(sealed))
    in_sender_field = 5 * 8 <= bit < 9 * 8
    # a flipped sender id names another node: its key does not match (or it has none)
    assert reason == "mac" or (in_sender_field and reason == "unknown_sender")


@pytest.mark.parametrize("scheme", MAC_SCHEMES)
def test_wrong_key_and_wrong_claimed_sender_are_rejected(scheme: str) -> None:
    bob = auth.LinkAuth(scheme, 4, KEYS)
    frame = frame_from(1)
    # sealed by node 1 for node 3: the (1, 4) key does not verify it
    assert reason_of(bob, auth.LinkAuth(scheme, 1, KEYS).seal(3, frame)) == "mac"
    # a cluster with another secret: same ids, other keys
    stranger = auth.LinkAuth(scheme, 1, auth.derive_keys("other", NODES))
    assert reason_of(bob, stranger.seal(4, frame)) == "mac"
    # node 2 claims to be node 1: it can only MAC with its own (2, 4) key
    forged = wire.encode(Request(1, 1, b"payload", b""), 1)
    assert reason_of(bob, auth.LinkAuth(scheme, 2, KEYS).seal(4, forged)) == "mac"
    # the other scheme's tag
    other_scheme = "hmac-sha256" if scheme == "cmac-aes" else "cmac-aes"
    assert reason_of(bob, auth.LinkAuth(other_scheme, 1, KEYS).seal(4, frame)) == "mac"


@pytest.mark.parametrize("scheme", MAC_SCHEMES)
def test_short_data_and_unknown_senders(scheme: str) -> None:
    bob = auth.LinkAuth(scheme, 4, KEYS)
    sealed = auth.LinkAuth(scheme, 1, KEYS).seal(4, frame_from(1))
    for cut in (0, 1, wire.HEADER_SIZE, wire.HEADER_SIZE + bob.tag_size - 1):
        assert reason_of(bob, sealed[:cut]) == "mac"
    assert reason_of(bob, sealed[:-1]) == "mac"  # truncated tag
    assert reason_of(bob, frame_from(99) + b"\x00" * bob.tag_size) == "unknown_sender"
    assert reason_of(bob, frame_from(-1) + b"\x00" * bob.tag_size) == "unknown_sender"
    with pytest.raises(KeyError):
        bob.seal(99, frame_from(4))
    assert bob.knows(0) and not bob.knows(99)


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown MAC scheme"):
        auth.LinkAuth("rot13", 0, KEYS)


# --- signatures -----------------------------------------------------------------------------


def test_ed25519_sign_and_verify() -> None:
    v0, v1 = auth.Ed25519Verifier(0, KEYS), auth.Ed25519Verifier(1, KEYS)
    sig = v0.sign(b"prepare 7")
    assert len(sig) == 64
    assert v1.verify(0, b"prepare 7", sig)
    assert not v1.verify(0, b"prepare 8", sig)  # other payload
    assert not v1.verify(2, b"prepare 7", sig)  # other signer
    assert not v1.verify(99, b"prepare 7", sig)  # unknown signer
    assert not v1.verify(0, b"prepare 7", sig[:-1])  # short signature
    assert not v1.verify(0, b"prepare 7", bytes(64))
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not v1.verify(0, b"prepare 7", flipped)


def test_ed25519_is_rfc_8032_and_refuses_malformed_keys() -> None:
    """RFC 8032 §7.1 TEST 1 (empty message): the libsodium backend signs exactly the
    standard signature, so keys and signatures are those of any other Ed25519 library."""
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pub = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    keys = auth.KeyStore({}, {0: seed}, {0: pub})
    v = auth.Ed25519Verifier(0, keys)
    assert keys.public_key_bytes(0) == pub
    assert v.sign(b"") == sig == auth.signer(keys, 0)(b"")
    assert v.verify(0, b"", sig) and not v.verify(0, b"x", sig)
    with pytest.raises(ValueError):
        auth.KeyStore({}, {0: seed[:31]}, {})
    with pytest.raises(ValueError):
        auth.KeyStore({}, {}, {0: pub + b"x"})


def test_request_signing() -> None:
    client = 5
    req = signed_request(auth.signer(KEYS, client), client, 42, b"txns")
    replica = auth.make_verifier("ed25519", 0, auth.derive_keys("test-secret", NODES, only_node=0))
    assert replica.verify_request(req)
    assert replica.verify(client, request_signing_payload(req), req.signature)
    for bad in (
        Request(client, 43, req.txns, req.signature),  # replayed under a new timestamp
        Request(client, 42, b"txnz", req.signature),  # altered transactions
        Request(4, 42, req.txns, req.signature),  # claimed by another client
        Request(client, 42, req.txns, b""),  # unsigned
    ):
        assert not replica.verify_request(bad)
    assert wire.decode(wire.encode(req, client))[1] == req  # survives the wire


def test_signing_needs_the_private_key() -> None:
    only0 = auth.derive_keys("test-secret", NODES, only_node=0)
    with pytest.raises(KeyError):
        auth.signer(only0, 5)
    with pytest.raises(KeyError):
        auth.Ed25519Verifier(5, only0).sign(b"x")


def test_null_verifier_and_make_verifier() -> None:
    null = auth.make_verifier("none", 0, None)
    assert isinstance(null, auth.NullVerifier)
    assert null.sign(b"x") == b""
    assert null.verify(3, b"x", b"") and null.verify_request(Request(9, 1, b"", b"junk"))
    assert isinstance(auth.make_verifier("ed25519", 0, KEYS), auth.Ed25519Verifier)
    with pytest.raises(ValueError):
        auth.make_verifier("rsa", 0, KEYS)
    with pytest.raises(ValueError):
        auth.make_verifier("ed25519", 0, None)
