"""Keys, link MACs and signatures: who may send what to whom.

Three things live here:

- ``KeyStore``: the keys a process holds. Its constructor takes explicit keys
  (per-pair link keys per MAC scheme, Ed25519 private seeds, Ed25519 public
  keys), so it is the seam where a real deployment plugs in keys it exchanged at
  start-up -- ResilientDB's KEYEX step, in which every node sends each peer a
  fresh link key and its public key before the run. ``derive_keys`` is the
  benchmark's shortcut: it fills a KeyStore deterministically from
  ``crypto.cluster_secret`` with HKDF-SHA256, so every process of a run agrees
  on every key without a network round, and runs are reproducible. Anyone who
  knows the cluster secret knows every key: it is a benchmark, not a
  deployment.
- ``LinkAuth``: MACs on point-to-point links (``cmac-aes``, ``hmac-sha256`` or
  ``none``). ``seal`` appends a tag over the whole frame, header included, keyed
  by the sender/receiver pair's key; ``open`` reads the sender id from the frame
  header, checks the tag with that pair's key, and raises
  ``wire.DecodeError("mac" | "unknown_sender", ...)`` otherwise. Since only the
  two ends of a link hold its key, a verified tag binds the header's sender id:
  that is the authentication the protocols rely on. There is no replay
  protection at this layer (protocols tolerate duplicates).
- Signatures for transferable proofs: ``Ed25519Verifier`` (implements
  ``protocols.base.Verifier``), ``NullVerifier`` (signatures off),
  ``signer`` (a node's Ed25519 signing function: a client signs its requests with it)
  and ``make_verifier`` choosing by config value. Requests are checked over their own
  ``signing_payload()``: this module signs and verifies bytes and imports no protocol
  message (``SignedRequest`` names the three things it reads).

Costs on this machine (bench/mac.py): a prepared CMAC/HMAC context copied per
frame is 2-3x cheaper than building one, so LinkAuth prepares one context per
peer at construction. MACs hold the GIL; Ed25519 verify releases it.
Ed25519 runs on libsodium (PyNaCl): measured here, verify 40 µs and sign 15 µs against
83 µs and 25 µs for the same keys through cryptography's OpenSSL binding (bench/mac.py
prints both), with identical keys and signatures (RFC 8032 is deterministic); the
cluster verifies one client signature per request at every replica, so that is the
fabric's largest single CPU cost per transaction (README, CPU ledger).

Must not live here: sockets (transport.zmq_io), frame layout (transport.wire).
"""

from __future__ import annotations

import hmac as _hmac
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from transport import wire


class SignedRequest(Protocol):
    """What a verifier reads of a client request (protocols.common.Request has these)."""

    client_id: int
    signature: bytes

    def signing_payload(self) -> bytes: ...


#: link key length in bytes per MAC scheme (CMAC-AES-128: 16, HMAC-SHA256: 32)
LINK_KEY_BYTES = {"cmac-aes": 16, "hmac-sha256": 32}
#: tag length in bytes per MAC scheme
TAG_BYTES = {"cmac-aes": 16, "hmac-sha256": 32, "none": 0}
MAC_SCHEMES = ("cmac-aes", "hmac-sha256", "none")
SIGNATURE_SCHEMES = ("ed25519", "none")
#: derive_keys refuses more nodes than this (pairwise keys grow as nodes squared)
MAX_NODES = 4096

_SENDER = struct.Struct("!i")
_SENDER_OFFSET = struct.calcsize("!2sBH")  # magic, version, kind, then the sender (i32)
if wire.HEADER.format != "!2sBHiI":
    raise ImportError("transport.auth reads the sender at a fixed offset of wire.HEADER")


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a <= b else (b, a)


# --- keys ------------------------------------------------------------------------------


class KeyStore:
    """The keys one process holds. Explicit keys in; derive_keys is one way to fill it.

    ``link_keys[scheme][(a, b)]`` is the symmetric key of the link between nodes
    a and b (either order; it is stored under (min, max)). ``private_keys`` maps
    a node id to its 32-byte Ed25519 seed (a real process holds only its own);
    ``public_keys`` maps node ids to 32-byte raw Ed25519 public keys. Keys are
    loaded into key objects once, here.
    """

    def __init__(
        self,
        link_keys: Mapping[str, Mapping[tuple[int, int], bytes]],
        private_keys: Mapping[int, bytes],
        public_keys: Mapping[int, bytes],
    ) -> None:
        self._links: dict[str, dict[tuple[int, int], bytes]] = {}
        for scheme, pairs in link_keys.items():
            if scheme not in LINK_KEY_BYTES:
                raise ValueError(f"unknown MAC scheme {scheme!r}; choose from {MAC_SCHEMES}")
            size = LINK_KEY_BYTES[scheme]
            table: dict[tuple[int, int], bytes] = {}
            for (a, b), key in pairs.items():
                if len(key) != size:
                    raise ValueError(f"{scheme} key for link ({a}, {b}) must be {size} bytes")
                table[_pair(a, b)] = bytes(key)
            self._links[scheme] = table
        self._private = {node: SigningKey(bytes(seed)) for node, seed in private_keys.items()}
        self._public = {node: VerifyKey(bytes(raw)) for node, raw in public_keys.items()}

    def link_key(self, scheme: str, a: int, b: int) -> bytes | None:
        """The key of link a<->b under ``scheme`` (symmetric), or None if not held."""
        return self._links.get(scheme, {}).get(_pair(a, b))

    def peers(self, scheme: str, node: int) -> list[int]:
        """Every node that shares a ``scheme`` link key with ``node`` (itself included if held)."""
        out = []
        for a, b in self._links.get(scheme, {}):
            if a == node:
                out.append(b)
            elif b == node:
                out.append(a)
        return sorted(out)

    def signing_key(self, node: int) -> SigningKey | None:
        return self._private.get(node)

    def public_key(self, node: int) -> VerifyKey | None:
        return self._public.get(node)

    def public_key_bytes(self, node: int) -> bytes | None:
        key = self._public.get(node)
        return None if key is None else bytes(key)


def derive_keys(
    cluster_secret: str,
    node_count: int,
    *,
    only_node: int | None = None,
    schemes: Iterable[str] = ("cmac-aes", "hmac-sha256"),
) -> KeyStore:
    """Deterministic keys for nodes 0..node_count-1 (replicas, then clients) from a secret.

    Link key (a, b) = HKDF-Expand(PRK, "bft-fabric/link/<scheme>/<min>/<max>"), with
    PRK = HKDF-Extract(salt "bft-fabric/v1", secret), so key(a, b) == key(b, a).
    Node i's Ed25519 private key is the seed HKDF-Expand(PRK, "bft-fabric/ed25519/<i>").
    ``only_node`` keeps only that node's links and private key (what one process
    needs: O(n) instead of O(n^2) link keys); public keys are always all kept.
    """
    if not 1 <= node_count <= MAX_NODES:
        raise ValueError(f"node_count {node_count} not in 1..{MAX_NODES}")
    if only_node is not None and not 0 <= only_node < node_count:
        raise ValueError(f"only_node {only_node} not in 0..{node_count - 1}")
    schemes = tuple(schemes)
    for scheme in schemes:
        if scheme not in LINK_KEY_BYTES:
            raise ValueError(f"no link keys for scheme {scheme!r}")
    prk = _hkdf_extract(cluster_secret.encode("utf-8"))

    def expand(info: str, length: int) -> bytes:
        return HKDFExpand(hashes.SHA256(), length, info.encode("ascii")).derive(prk)

    nodes = range(node_count)
    link_keys: dict[str, dict[tuple[int, int], bytes]] = {}
    for scheme in schemes:
        size = LINK_KEY_BYTES[scheme]
        table: dict[tuple[int, int], bytes] = {}
        for a in nodes if only_node is None else (only_node,):
            for b in nodes:
                pair = _pair(a, b)
                if pair not in table:
                    table[pair] = expand(f"bft-fabric/link/{scheme}/{pair[0]}/{pair[1]}", size)
        link_keys[scheme] = table
    seeds = {i: expand(f"bft-fabric/ed25519/{i}", 32) for i in nodes}
    public = {i: bytes(SigningKey(seed).verify_key) for i, seed in seeds.items()}
    private = seeds if only_node is None else {only_node: seeds[only_node]}
    return KeyStore(link_keys, private, public)


def _hkdf_extract(secret: bytes) -> bytes:
    # HKDF-Extract(salt, ikm) is HMAC-SHA256(key=salt, msg=ikm) (RFC 5869 section 2.2);
    # extracting once makes each per-pair key a single HKDF-Expand (one HMAC).
    return _hmac.digest(b"bft-fabric/v1", secret, "sha256")


# --- link MACs -------------------------------------------------------------------------


class LinkAuth:
    """MAC every frame on the links of node ``node_id`` (one instance per thread or shared:
    seal/open only copy prepared contexts, they never mutate shared state)."""

    def __init__(self, scheme: str, node_id: int, keys: KeyStore | None) -> None:
        if scheme not in MAC_SCHEMES:
            raise ValueError(f"unknown MAC scheme {scheme!r}; choose from {MAC_SCHEMES}")
        self.scheme = scheme
        self.node_id = node_id
        self.tag_size: int = TAG_BYTES[scheme]
        self._min_size = wire.HEADER_SIZE + self.tag_size
        self._contexts: dict[int, Any] = {}
        if scheme == "none":
            return
        if keys is None:
            raise ValueError(f"scheme {scheme} needs a KeyStore")
        for peer in keys.peers(scheme, node_id):
            key = keys.link_key(scheme, node_id, peer)
            assert key is not None
            if scheme == "cmac-aes":
                self._contexts[peer] = CMAC(algorithms.AES(key))
            else:
                self._contexts[peer] = crypto_hmac.HMAC(key, hashes.SHA256())

    def knows(self, peer: int) -> bool:
        """True if a frame to/from ``peer`` can be sealed/opened (always True for none)."""
        return self.tag_size == 0 or peer in self._contexts

    def seal(self, to: int, frame: bytes) -> bytes:
        """``frame`` + tag over the whole frame, keyed by the (node_id, to) link key."""
        if self.tag_size == 0:
            return frame
        try:
            ctx = self._contexts[to].copy()
        except KeyError:
            raise KeyError(f"node {self.node_id} holds no {self.scheme} key for {to}") from None
        ctx.update(frame)
        return frame + ctx.finalize()

    def open(self, data: bytes) -> bytes:
        """Check the tag of ``data`` (a sealed frame) and return the frame without it.

        Raises wire.DecodeError with reason "mac" (short data, bad tag) or
        "unknown_sender" (the header's sender shares no key with this node).
        """
        if self.tag_size == 0:
            return data
        size = len(data)
        if size < self._min_size:
            raise wire.DecodeError("mac", f"{size} bytes < header + tag {self._min_size}")
        (sender,) = _SENDER.unpack_from(data, _SENDER_OFFSET)
        proto = self._contexts.get(sender)
        if proto is None:
            raise wire.DecodeError("unknown_sender", str(sender))
        end = size - self.tag_size
        ctx = proto.copy()
        frame = data[:end]
        ctx.update(frame)
        if not _hmac.compare_digest(ctx.finalize(), data[end:]):
            raise wire.DecodeError("mac", f"bad tag from {sender}")
        return frame


# --- signatures ------------------------------------------------------------------------


class Ed25519Verifier:
    """protocols.base.Verifier with Ed25519: signs as ``node_id``, verifies anyone it knows.

    Verification releases the GIL, so batch threads verifying in parallel really
    run in parallel.
    """

    def __init__(self, node_id: int, keys: KeyStore) -> None:
        self.node_id = node_id
        self._keys = keys
        self._signing = keys.signing_key(node_id)

    def sign(self, payload: bytes) -> bytes:
        if self._signing is None:
            raise KeyError(f"node {self.node_id} holds no Ed25519 private key")
        return self._signing.sign(payload).signature

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        key = self._keys.public_key(signer)
        if key is None or len(signature) != 64:
            return False
        try:
            key.verify(payload, signature)
        except CryptoError:  # BadSignatureError; a malformed input is a ValueError subclass
            return False
        return True

    def verify_request(self, request: SignedRequest) -> bool:
        return self.verify(request.client_id, request.signing_payload(), request.signature)


class NullVerifier:
    """Signatures off: sign returns b"" and everything verifies."""

    def __init__(self, node_id: int = -1, keys: KeyStore | None = None) -> None:
        self.node_id = node_id

    def sign(self, payload: bytes) -> bytes:
        return b""

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        return True

    def verify_request(self, request: SignedRequest) -> bool:
        return True


def signer(keys: KeyStore, node_id: int) -> Callable[[bytes], bytes]:
    """``node_id``'s Ed25519 signing function (a client signs its requests with it:
    ``protocols.common.signed_request(signer(keys, me), ...)``); KeyError without its key."""
    key = keys.signing_key(node_id)
    if key is None:
        raise KeyError(f"no Ed25519 private key for node {node_id}")
    sign = key.sign

    def sign_payload(payload: bytes) -> bytes:
        return sign(payload).signature

    return sign_payload


def make_verifier(
    scheme: str, node_id: int, keys: KeyStore | None
) -> Ed25519Verifier | NullVerifier:
    """The verifier named by ``crypto.client_signature``: ed25519 | none."""
    if scheme == "ed25519":
        if keys is None:
            raise ValueError("ed25519 needs a KeyStore")
        return Ed25519Verifier(node_id, keys)
    if scheme == "none":
        return NullVerifier(node_id, keys)
    raise ValueError(f"unknown signature scheme {scheme!r}; choose from {SIGNATURE_SCHEMES}")
