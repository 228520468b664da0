"""Transport benchmark: frames/s from one Sender (a child process) to one Receiver (this
process) over real sockets on 127.0.0.1, through transport.zmq_io's public API only.

For each frame size (200 B and 8 KB sealed Request frames, cmac-aes link MACs) the child
sends COUNT frames as fast as ``Sender.send`` takes them; this process drains them with
``Receiver.recv_batch(500, 50)`` (what an input stage does) and decodes every one. Printed:
receiver frames/s and MB/s (first to last frame), the sender's frames/s, frames the sender
dropped (peer full) and the receiver's drops by reason; a repeat of each size (median of
PASSES). Figures, never assertions. Quote them with ``uptime``'s load: the machine is shared.

Then a trickle (what a replica's input thread mostly sees between batches: each frame wakes
it): the child sends one 200 B frame every TRICKLE_GAP_S; this process drains as
InputStage.loop does (``recv_batch(64, 0)``, then ``recv_batch(64, 50)`` parked) and prints
its thread CPU per frame and the reads per drain (Receiver.reads / drains).

Environment: BENCH_TRANSPORT_PASSES (default 3), BENCH_TRANSPORT_SCALE (default 1.0:
multiplies the frame counts).

Must not live here: anything the runtime imports.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-transport"
SCHEME = "cmac-aes"
#: (label, sealed frame bytes, frames per pass)
SIZES = (("200 B", 200, 200_000), ("8 KB", 8192, 20_000))
#: the trickle pass: frames, and the gap between two sends (seconds)
TRICKLE_FRAMES = 3000
TRICKLE_GAP_S = 300e-6

SENDER_SCRIPT = r"""
import sys, time
from protocols.common import Request
from transport import auth, wire, zmq_io
base_port, count, txns_bytes, scheme, secret, gap_s = sys.argv[1:7]
count, txns_bytes, gap_s = int(count), int(txns_bytes), float(gap_s)
keys = auth.derive_keys(secret, 2, only_node=1)
link = auth.LinkAuth(scheme, 1, keys)
addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), int(base_port), "", 1)
ctx = zmq_io.new_context()
tx = zmq_io.Sender(ctx, addressing, 1, link, send_hwm=count + 10)
frames = [wire.encode(Request(1, i, b"t" * txns_bytes, b""), 1) for i in range(64)]
sys.stdin.readline()  # the receiver is bound
started = time.perf_counter()
for i in range(count):
    tx.send_frame(0, frames[i & 63])
    if gap_s:
        due = time.perf_counter() + gap_s
        while time.perf_counter() < due:
            time.sleep(gap_s / 4)
elapsed = time.perf_counter() - started
print(f"{count / elapsed:.0f} {sum(tx.send_drops.values())}", flush=True)
sys.stdin.readline()  # the receiver has what it will get
tx.close()
zmq_io.close_context(ctx)
"""


def _txns_bytes_for(sealed: int) -> int:
    """The txns length that makes a sealed Request frame ``sealed`` bytes long."""
    from protocols.common import Request
    from transport import auth, wire

    probe = len(wire.encode(Request(1, 0, b"", b""), 1)) + auth.TAG_BYTES[SCHEME]
    extra = 0
    while (
        len(wire.encode(Request(1, 0, b"t" * (sealed - probe - extra), b""), 1))
        + (auth.TAG_BYTES[SCHEME])
        > sealed
    ):
        extra += 1
    return sealed - probe - extra


def one_pass(
    count: int, txns_bytes: int, gap_s: float = 0.0
) -> tuple[float, float, float, int, dict[str, int], float, float]:
    """(receiver frames/s, receiver MB/s, sender frames/s, sender drops, receiver drops,
    receiver thread CPU µs per frame, reads per drain); ``gap_s``: the sender's pause after
    each frame (0: as fast as it can)."""
    from fabric.harness.ports import free_port_block
    from transport import auth, zmq_io

    base_port = free_port_block(16)
    keys = auth.derive_keys(SECRET, 2, only_node=0)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(ctx, addressing.address(0, 0), auth.LinkAuth(SCHEME, 0, keys))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [str(base_port), str(count), str(txns_bytes), SCHEME, SECRET, str(gap_s)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDER_SCRIPT, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        got = 0
        first = last = 0.0
        deadline = time.monotonic() + 60
        idle_since = time.monotonic()
        cpu_s = 0.0
        while got < count and time.monotonic() < deadline:
            cpu0 = time.thread_time()
            if gap_s:  # drain as an input stage does: what is there, else wait parked
                batch = rx.recv_batch(64, 0) or rx.recv_batch(64, 50)
            else:
                batch = rx.recv_batch(500, 50)
            cpu_s += time.thread_time() - cpu0
            now = time.perf_counter()
            if batch:
                if not got:
                    first = now
                got += len(batch)
                last = now
                idle_since = time.monotonic()
            elif got and time.monotonic() - idle_since > 2.0:
                break  # the sender dropped some: count what came
        sender_rate, sender_drops = proc.stdout.readline().split()
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(timeout=20)
        received_bytes = rx.received_bytes
        drops = dict(rx.drops)
        reads_per_drain = rx.reads / max(1, rx.drains)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        rx.close()
        zmq_io.close_context(ctx)
    span = max(last - first, 1e-9)
    cpu_us = cpu_s / max(1, got) * 1e6
    return (
        got / span,
        received_bytes / span / 1e6,
        float(sender_rate),
        int(sender_drops),
        drops,
        cpu_us,
        reads_per_drain,
    )


def main() -> None:
    passes = int(os.environ.get("BENCH_TRANSPORT_PASSES", "3"))
    scale = float(os.environ.get("BENCH_TRANSPORT_SCALE", "1.0"))
    print(
        f"   one Sender process -> one Receiver (recv_batch(500, 50) + decode), tcp 127.0.0.1, "
        f"{SCHEME}; median of {passes} passes; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for label, sealed, count in SIZES:
        count = max(1000, int(count * scale))
        txns_bytes = _txns_bytes_for(sealed)
        runs = [one_pass(count, txns_bytes) for _ in range(passes)]
        rx_rate = statistics.median(r[0] for r in runs)
        mb_s = statistics.median(r[1] for r in runs)
        tx_rate = statistics.median(r[2] for r in runs)
        drops = [r[3] for r in runs]
        rx_drops = [r[4] for r in runs if r[4]]
        print(
            f"   {label:>6} frames x {count:>7}: receiver {rx_rate:>9,.0f} frames/s "
            f"({mb_s:6.1f} MB/s)   sender {tx_rate:>9,.0f} frames/s   sender drops {drops}   "
            f"receiver drops {rx_drops or 'none'}",
            flush=True,
        )
    runs = [one_pass(TRICKLE_FRAMES, _txns_bytes_for(200), TRICKLE_GAP_S) for _ in range(passes)]
    print(
        f"   trickle, one 200 B frame every {TRICKLE_GAP_S * 1e6:.0f} us x {TRICKLE_FRAMES}: "
        f"receiver thread CPU {statistics.median(r[5] for r in runs):5.1f} us per frame, "
        f"{statistics.median(r[6] for r in runs):.2f} reads per drain",
        flush=True,
    )


if __name__ == "__main__":
    main()
