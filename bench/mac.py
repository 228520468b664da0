"""MAC and signature benchmark: what authenticating a frame and a client batch costs.

Prints (median of 3 passes): seal+open µs per 200 B frame for cmac-aes, hmac-sha256
(and none, the floor); a prepared context copied per frame vs one built per frame;
Ed25519 sign and verify µs; and verify / seal+open throughput with 2 threads vs 1
(Ed25519 releases the GIL, the MACs do not). Figures, never assertions.
Must not live here: anything the runtime imports.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from protocols.common import Request
from transport import auth, wire

PASSES = 3
FRAME_BYTES = 200


def median_us(fn: Callable[[], object], iterations: int) -> float:
    """Median over PASSES passes of the mean µs per call of ``fn``."""
    fn()
    results = []
    for _ in range(PASSES):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(results)


def items_per_s(fn: Callable[[], object], iterations: int, threads: int) -> float:
    """Median over PASSES of the items/s when ``threads`` threads each call ``fn`` iterations
    times (all started together)."""

    def worker(start: threading.Barrier) -> None:
        start.wait()
        for _ in range(iterations):
            fn()

    results = []
    for _ in range(PASSES):
        barrier = threading.Barrier(threads + 1)
        pool = [threading.Thread(target=worker, args=(barrier,)) for _ in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in pool:
            t.join()
        results.append(threads * iterations / (time.perf_counter() - started))
    return statistics.median(results)


def frame_of(size: int) -> bytes:
    """A valid wire frame of exactly ``size`` bytes (a Request padded to fit)."""
    base = len(wire.encode(Request(1, 1, b"", b""), 1))
    for pad in range(size):  # msgpack length prefixes grow with the padding: search
        frame = wire.encode(Request(1, 1, b"t" * pad, b""), 1)
        if len(frame) >= size:
            return frame
    raise AssertionError(f"no frame of {size} B (base {base} B)")


def main() -> None:
    keys = auth.derive_keys("bench-secret", 2)
    frame = frame_of(FRAME_BYTES)
    print(f"link MAC, one {len(frame)} B frame (seal at node 1, open at node 0):", flush=True)
    seal_open: dict[str, Callable[[], object]] = {}
    for scheme in ("cmac-aes", "hmac-sha256", "none"):
        sender, receiver = auth.LinkAuth(scheme, 1, keys), auth.LinkAuth(scheme, 0, keys)
        assert receiver.open(sender.seal(0, frame)) == frame

        def both(s: auth.LinkAuth = sender, r: auth.LinkAuth = receiver) -> object:
            return r.open(s.seal(0, frame))

        seal_open[scheme] = both
        print(
            f"  {scheme:<12} tag {sender.tag_size:>2} B   seal {median_us(lambda s=sender: s.seal(0, frame), 50000):5.2f} µs"
            f"   seal+open {median_us(both, 50000):5.2f} µs",
            flush=True,
        )

    cmac_key, hmac_key = keys.link_key("cmac-aes", 0, 1), keys.link_key("hmac-sha256", 0, 1)
    assert cmac_key is not None and hmac_key is not None
    cmac_proto, hmac_proto = (
        CMAC(algorithms.AES(cmac_key)),
        crypto_hmac.HMAC(hmac_key, hashes.SHA256()),
    )

    def tag(ctx: CMAC | crypto_hmac.HMAC) -> bytes:
        ctx.update(frame)
        return ctx.finalize()

    print("one tag, prepared context copied vs built per frame:", flush=True)
    for name, copied, built in (
        ("cmac-aes", lambda: tag(cmac_proto.copy()), lambda: tag(CMAC(algorithms.AES(cmac_key)))),
        (
            "hmac-sha256",
            lambda: tag(hmac_proto.copy()),
            lambda: tag(crypto_hmac.HMAC(hmac_key, hashes.SHA256())),
        ),
    ):
        print(
            f"  {name:<12} copy {median_us(copied, 50000):5.2f} µs   new {median_us(built, 50000):5.2f} µs",
            flush=True,
        )

    verifier = auth.Ed25519Verifier(0, keys)
    payload = frame
    sig = verifier.sign(payload)
    assert verifier.verify(0, payload, sig)
    sign_us = median_us(lambda: verifier.sign(payload), 3000)
    verify_us = median_us(lambda: verifier.verify(0, payload, sig), 2000)
    print(
        f"Ed25519 ({len(payload)} B payload, libsodium via PyNaCl, what the fabric uses): "
        f"sign {sign_us:.1f} µs   verify {verify_us:.1f} µs"
    )
    # the same key through cryptography's OpenSSL binding: why transport.auth uses libsodium
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = auth.derive_keys("bench", 1).signing_key(0).encode()  # the 32-byte seed
    ossl = Ed25519PrivateKey.from_private_bytes(seed)
    ossl_pub = ossl.public_key()
    ossl_sig = ossl.sign(payload)
    assert ossl_sig == auth.Ed25519Verifier(0, auth.derive_keys("bench", 1)).sign(payload)
    ossl_sign = median_us(lambda: ossl.sign(payload), 3000)
    ossl_verify = median_us(lambda: ossl_pub.verify(ossl_sig, payload), 2000)
    print(
        f"Ed25519 (same key, OpenSSL via cryptography):              "
        f"sign {ossl_sign:.1f} µs   verify {ossl_verify:.1f} µs   "
        f"(libsodium verify x{ossl_verify / verify_us:.2f} faster)"
    )

    print("threads (items/s, 2 threads vs 1):", flush=True)
    for name, fn, n in (
        ("ed25519 verify", lambda: verifier.verify(0, payload, sig), 1500),
        ("cmac-aes seal+open", seal_open["cmac-aes"], 40000),
    ):
        one = items_per_s(fn, n, 1)
        two = items_per_s(fn, n, 2)
        print(
            f"  {name:<19} 1 thread {one:9.0f}/s   2 threads {two:9.0f}/s   x{two / one:.2f}",
            flush=True,
        )
    print(f"(median of {PASSES} passes)")


if __name__ == "__main__":
    main()
