"""What the live fuzzer found (``python -m fabric fuzz --set crypto.enabled=false``: without
client signatures a hostile Request is executed like any other), each of which stopped every
replica of the cluster within a second:

- a Request whose client_id was 182856 got executed and its Reply went to the output stage;
  the real Sender raised on that node's address (port out of range) and the output stage
  died. With MACs on, sealing for a node without a link key raised the same way (KeyError);
  an id inside the port range would have opened a socket (and a send queue) per id. The
  output stage now drops and counts a destination that is no node of the run.
- a Request with a timestamp of 2**63 or more (the wire allows a u64) reached the executor,
  whose replay-cache accumulator packed it as a signed i64: struct.error killed the execute
  stage. state_image now packs timestamps unsigned (the same bytes below 2**63).
"""

from __future__ import annotations

import time

import pytest

from fabric.runtime.execute import Executor
from fabric.runtime.ring import Ring
from fabric.runtime.stages import OutputStage, ReplicaShared
from protocols.common import Reply, Request, make_batch
from transport import auth, zmq_io
from workloads.txn import UPDATE, encode_txns

pytestmark = pytest.mark.timeout(30)
N = 4  # replicas; node 4 is the one client


@pytest.mark.parametrize("mac", ["none", "cmac-aes"])
def test_a_reply_to_a_client_id_outside_the_run_is_dropped_and_counted(
    base_port: int, mac: str
) -> None:
    addressing = zmq_io.Addressing("tcp", ("127.0.0.1",), base_port, "", 1)
    keys = auth.derive_keys("out-secret", N + 1, only_node=0) if mac != "none" else None
    ctx = zmq_io.new_context()
    sender = zmq_io.Sender(ctx, addressing, 0, auth.LinkAuth(mac, 0, keys))
    shared = ReplicaShared(0, N)
    ring = Ring(64, "output")
    stage = OutputStage("output-0", shared, sender, ring, nodes=N + 1)
    hostile = Reply(0, 3, 0, 182856, 9, b"r", False)
    good = Reply(0, 3, 0, N, 9, b"r", False)
    try:
        stage.start()
        ring.push_many([(182856, hostile), (N + 7, hostile), (N, good)])
        deadline = time.monotonic() + 10
        while sender.sent_frames < 1 and stage.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stage.is_alive() and not shared.fatal, shared.fatal
        assert stage.drops["send_to_unknown_node"] == 2
        assert sender.sent_frames == 1 and sender.sent_by_kind[Reply.KIND] == 1
    finally:
        shared.stop.set()
        ring.close()
        stage.join(5)
        assert zmq_io.close_context(ctx)


def test_a_request_with_a_timestamp_past_two_to_the_63_executes_and_is_remembered() -> None:
    def run() -> tuple[bytes, bytes]:
        ex = Executor(100, 16, replay_window=2)
        results = []
        for seq, ts in enumerate((2**63, 2**64 - 1, 5, 2**63 + 1), start=1):
            txns = encode_txns([(UPDATE, 3, b"v" * 16)])
            req = Request(client_id=7, timestamp=ts, txns=txns, signature=b"")
            ((_, result),) = ex.apply(seq, make_batch((req,)))
            results.append(result)
        return b"".join(results), ex.state_digest()

    first, second = run(), run()
    assert first == second  # deterministic: every replica agrees on it
