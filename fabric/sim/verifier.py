"""The simulator's fast fake signatures: unforgeable inside the sim, a hash instead of Ed25519.

Every node (replica 0..n-1, client n..n+c-1) has a secret derived from the run's seed.
A signature is ``sha256(secret_of_signer + payload)``. Honest protocol code only calls
``sign`` as itself; the simulator's Byzantine mutators never sign at all, so a Byzantine
replica can produce only its own signatures (and can only break, never forge, others').
Verification recomputes the hash (it plays the role of the public key).

Must not live here: real cryptography (transport.auth), anything random (secrets come
from the seed so a run replays exactly).
"""

from __future__ import annotations

import hashlib

from protocols import common
from protocols.common import Request, request_signing_payload


class SimKeys:
    """Per-node secrets of one simulated run, derived from its seed."""

    __slots__ = ("_seed", "_secrets")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._secrets: dict[int, bytes] = {}

    def secret(self, node: int) -> bytes:
        key = self._secrets.get(node)
        if key is None:
            key = hashlib.sha256(b"bft-sim-key|%d|%d" % (self._seed, node)).digest()
            self._secrets[node] = key
        return key

    def signature(self, node: int, payload: bytes) -> bytes:
        return hashlib.sha256(self.secret(node) + payload).digest()


class FakeVerifier:
    """``protocols.base.Verifier`` for one replica of the simulator (counts its calls)."""

    __slots__ = ("node", "_keys", "signs", "verifies")

    def __init__(self, node: int, keys: SimKeys) -> None:
        self.node = node
        self._keys = keys
        self.signs = 0
        self.verifies = 0

    def sign(self, payload: bytes) -> bytes:
        self.signs += 1
        return self._keys.signature(self.node, payload)

    def verify(self, signer: int, payload: bytes, signature: bytes) -> bool:
        self.verifies += 1
        if type(signer) is not int or signer < 0:
            return False
        return signature == self._keys.signature(signer, payload)

    def verify_request(self, request: Request) -> bool:
        self.verifies += 1
        if request.client_id < 0:
            return False
        expected = self._keys.signature(request.client_id, request_signing_payload(request))
        return request.signature == expected


def signed_request(keys: SimKeys, client_id: int, timestamp: int, txns: bytes) -> Request:
    """A client's request with its fake signature (protocols.common.signed_request)."""
    return common.signed_request(
        lambda payload: keys.signature(client_id, payload), client_id, timestamp, txns
    )
