"""The live fuzzer against real sockets: its frames into a real Receiver in this process
(every frame counted as its fate says), and ``python -m fabric fuzz`` against a real cluster
(50,000 hostile frames asked for while the clients run, and 20,000 with crypto off: the target
survives and counts every frame sent as its class predicts, the cluster commits, the audit
passes).

Every process the runner starts is gone when a test ends (the runner stops them by process
group; the fixture checks); every socket is closed in a finally block.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from fabric.harness import fuzz, fuzz_frames
from fabric.harness.config import load_config
from fabric.harness.paths import RunPaths
from fabric.runtime.replica import replica_frame_policy
from protocols import codec
from tests.integration.raw_peers import drain, raw_connect
from transport import auth, zmq_io

pytestmark = [pytest.mark.integration]


@pytest.mark.timeout(120)
def test_every_frame_of_the_source_is_counted_by_a_real_receiver_as_its_fate_says(
    base_port: int,
) -> None:
    cfg = load_config(None, [f"transport.base_port={base_port}"])
    target = fuzz.fuzz_target(cfg, 0, 1, frozenset(codec.registered_kinds()))
    genuine = fuzz_frames.genuine_messages("pbft", 4, 1, 0, seed=2)
    source = fuzz_frames.FrameSource(target, genuine, seed=2)
    keys = auth.derive_keys(cfg.crypto.cluster_secret, cfg.node_count, only_node=0)
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    endpoint = addressing.address(0, 0)
    ctx = zmq_io.new_context()
    rx = zmq_io.Receiver(
        ctx,
        endpoint,
        auth.LinkAuth(cfg.crypto.effective_link_mac, 0, keys),
        policy=replica_frame_policy(cfg),
    )
    expected: Counter[str] = Counter()
    try:
        for _ in range(60):
            burst = source.burst(5000)
            conn = raw_connect(endpoint)
            try:
                conn.sendall(b"".join(f.data for f in burst))
            finally:
                conn.close()
            expected.update(f.fate for f in burst)
        total = expected.total()
        drain(
            rx,
            lambda _got: rx.drops.total() + rx.received_by_kind.total() >= total,
            timeout_s=20,
        )
        drain(rx, lambda _got: False, timeout_s=0.3)
        refused = Counter({k: v for k, v in expected.items() if not k.startswith("accepted:")})
        accepted: Counter[str] = Counter()  # by class name (PBFT's and PoE's Fetch: one)
        for kind, count in rx.received_by_kind.items():
            accepted[codec.registered_kinds()[kind].__name__] += count
        want_accepted = Counter(
            {
                k.removeprefix("accepted:"): v
                for k, v in expected.items()
                if k.startswith("accepted:")
            }
        )
        assert rx.drops == refused
        assert accepted == want_accepted
        assert len(expected) >= 12  # many fates, not one
    finally:
        rx.close()
        assert zmq_io.close_context(ctx)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("crypto", "frames", "duration_s"),
    [
        ("true", 50_000, 7),  # 5 s of fuzzing: 50,000 frames at 10,000/s
        # signatures off: hostile Requests are executed (two such frames once stopped every
        # replica: tests/unit/test_fuzz_findings.py); no MACs: every body is decoded
        ("false", 20_000, 5),
    ],
)
def test_hostile_frames_into_a_live_primary(
    base_port: int, tmp_path, spawned, capsys, crypto: str, frames: int, duration_s: int
) -> None:
    code = fuzz.main(
        [
            f"--frames={frames}",
            "--rate=25000",
            "--no-baseline",
            "--quiet",
            "--warmup=1",
            f"--duration={duration_s}",
            f"--results-dir={tmp_path}",
            "--set",
            f"transport.base_port={base_port}",
            "--set",
            f"crypto.enabled={crypto}",
        ]
    )
    out = capsys.readouterr()
    # 3: DEGRADED, a backup ended behind; seen without any fuzzer on this loaded machine too
    assert code in (0, 3), out.err[-3000:]
    assert "every frame sent is counted by the target as its class predicts" in out.out
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    paths = RunPaths(folder)
    report = json.loads(paths.fuzz.read_text())
    summary = json.loads(paths.summary.read_text())
    # all of them unless the machine is very busy; whatever was sent is counted exactly
    assert report["sent"]["frames_sent"] >= frames // 2 and not report["problems"]
    assert set(report["sent"]["by_class"]) == set(fuzz_frames.CLASSES)
    assert summary["run"]["status"] in ("ok", "degraded") and summary["audit"]["ok"]
    assert summary["throughput_txn_s"] > 0 and summary["fuzz"] == report
    # the target counted the fuzzer's frames: many refused, many handed to the protocol
    counted = {row["reason"]: row["counted"] for row in report["drops"]}
    assert counted["mac" if crypto == "true" else "body"] > 1000 and counted["magic"] > 10
    assert sum(report["accepted_by_the_target"].values()) > 1000
    assert "Live fuzzing of replica 0" in paths.res_out.read_text()
    if os.geteuid() == 0:  # a packet socket on lo: the peer's real frames are replayed
        assert report["sent"]["genuine_frames"].startswith("captured on lo: "), report["sent"]
