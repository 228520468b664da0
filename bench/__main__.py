"""``make bench`` / ``python -m bench [name ...]``: print the fabric's figures.

Each benchmark module exposes ``main() -> None`` and prints its own figures,
ratios measured in the same run. Benchmarks never assert speed; they report it.
"""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = {
    "ring": "bench.ring",  # ring queue vs queue.SimpleQueue, idle CPU
    "codec": "bench.codec",  # encode+decode of a 100-transaction batch
    "mac": "bench.mac",  # MAC and signature costs per frame
    "ycsb": "workloads.ycsb",  # YCSB generation, µs per transaction
    "execute": "bench.execute",  # execute stage: serial µs/txn, engines x threads x contention x cost
    "transport": "bench.transport",  # frames/s one Sender process -> one Receiver, 200 B and 8 KB
    "cluster": "bench.cluster",  # default PBFT cluster vs the null-protocol baseline
    "persist": "bench.persist",  # persist stage: us per block per backend x sync policy
    "floor": "bench.floor",  # CPU per txn: a PBFT run's ledger against its measured floor
    "protocol": "bench.protocol",  # PBFT protocol logic and worker loop, us per batch, no cluster
    "attacks": "bench.attacks",  # issue 19 attack recipes vs an undisturbed PBFT run
    "ssh": "bench.ssh_hosts",  # PBFT on loopback vs across 3 namespace sshd hosts (and 2 regions)
}


def _usage() -> str:
    lines = ["usage: python -m bench [name ...]   (make bench runs them all)", "", "benchmarks:"]
    lines += [f"  {name:<10} {BENCHMARKS[name]}" for name in BENCHMARKS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(BENCHMARKS)
    if any(n in ("-h", "--help", "help") for n in names):
        print(__doc__.strip().splitlines()[0])
        print(_usage())
        return 0
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        importlib.import_module(BENCHMARKS[name]).main()
        print(f"   ({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
