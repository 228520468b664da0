"""The client's sans-IO acceptance logic (fabric.runtime.client.ClientCore): no sockets, explicit times."""

from __future__ import annotations

import pytest

from fabric.runtime.client import MAX_KEYS_PER_REPLICA, ClientCore
from protocols import registry
from protocols.base import ReplyRule
from protocols.common import Reply

N, F = 4, 1
CID = 4  # clients are numbered after the replicas


def core(**kw) -> ClientCore:
    args = dict(
        client_id=CID,
        n=N,
        f=F,
        rule=ReplyRule(F + 1),
        max_in_flight_txn=300,
        request_timeout_s=2.0,
        max_retries=2,
    )
    args.update(kw)
    return ClientCore(**args)


def reply(
    replica: int,
    ts: int,
    result: bytes = b"r",
    view: int = 0,
    client: int = CID,
    seq: int | None = None,
    speculative: bool = False,
) -> Reply:
    return Reply(
        view=view,
        seq=ts if seq is None else seq,
        replica=replica,
        client_id=client,
        timestamp=ts,
        result=result,
        speculative=speculative,
    )


def send(c: ClientCore, now: float, txns: int = 100) -> int:
    ts = c.next_timestamp()
    c.record_sent(ts, f"req{ts}", txns, now)
    return ts


def test_pbft_quorum_f_plus_1_matching_replies_accepts_once():
    c = core()
    ts = send(c, 10.0)
    assert c.on_reply(0, reply(0, ts), 10.05) is None
    acc = c.on_reply(1, reply(1, ts), 10.08)
    assert acc is not None and acc.timestamp == ts and acc.txns == 100
    assert acc.latency_s == pytest.approx(0.08)
    # the third reply arrives after acceptance: late, not a second acceptance
    assert c.on_reply(2, reply(2, ts), 10.09) is None
    assert c.counters["late_replies"] == 1
    assert c.counters["requests_accepted"] == 1
    assert c.in_flight_txn == 0


def test_mismatched_results_do_not_form_a_quorum():
    c = core()
    ts = send(c, 0.0)
    assert c.on_reply(0, reply(0, ts, b"good"), 0.1) is None
    assert c.on_reply(3, reply(3, ts, b"evil"), 0.1) is None  # a Byzantine replica disagrees
    assert c.counters["mismatched_replies"] == 1
    acc = c.on_reply(1, reply(1, ts, b"good"), 0.2)
    assert acc is not None and acc.result == b"good"


def test_speculative_quorum_n_minus_f():
    c = core(rule=registry.get("poe").reply_rule(N, F))
    ts = send(c, 0.0)
    assert c.on_reply(0, reply(0, ts, speculative=True), 0.1) is None
    assert c.on_reply(1, reply(1, ts, speculative=True), 0.1) is None
    assert c.on_reply(2, reply(2, ts, speculative=True), 0.1) is not None


def test_pbft_ignores_speculative_replies():
    c = core(rule=registry.get("pbft").reply_rule(N, F))
    ts = send(c, 0.0)
    assert c.on_reply(0, reply(0, ts, speculative=True), 0.1) is None
    assert c.on_reply(1, reply(1, ts, speculative=True), 0.1) is None
    assert c.counters["speculative_replies_ignored"] == 2
    assert ts in c.outstanding


@pytest.mark.parametrize("protocol", ["pbft", "poe", "rcc"])
def test_never_accepts_replies_that_disagree_on_the_position(protocol):
    """Issue 13: an update-only request has the same result digest at any log position, so
    equal results alone do not show the replicas agree where it was ordered. Replies that
    differ in seq never count together, whatever the protocol's rule."""
    rule = registry.get(protocol).reply_rule(N, F)
    c = core(rule=rule)
    ts = send(c, 0.0)
    for r in range(N):  # every replica answers the same result, each at another position
        assert c.on_reply(r, reply(r, ts, seq=10 + r, speculative=rule.speculative), 0.1) is None
    assert ts in c.outstanding and c.counters["requests_accepted"] == 0


def test_pbft_accepts_replies_from_different_views_at_one_position():
    """Castro & Liskov 4.1: same t and r (and here the same seq); the view may differ."""
    c = core(rule=registry.get("pbft").reply_rule(N, F))
    ts = send(c, 0.0)
    assert c.on_reply(0, reply(0, ts, view=0, seq=7), 0.1) is None
    acc = c.on_reply(1, reply(1, ts, view=1, seq=7), 0.1)
    assert acc is not None and acc.seq == 7


def test_poe_needs_the_same_view_sequence_and_result():
    """PoE: n-f identical INFORM(v, k, r); replies from another view do not count together."""
    c = core(rule=registry.get("poe").reply_rule(N, F))
    ts = send(c, 0.0)
    assert c.on_reply(0, reply(0, ts, view=0, seq=3, speculative=True), 0.1) is None
    assert c.on_reply(1, reply(1, ts, view=0, seq=3, speculative=True), 0.1) is None
    assert c.on_reply(2, reply(2, ts, view=1, seq=3, speculative=True), 0.1) is None
    assert ts in c.outstanding
    # replica 0 rolled back and re-executed in view 1: its new reply counts for (1, 3, r)
    assert c.on_reply(0, reply(0, ts, view=1, seq=3, speculative=True), 0.2) is None
    acc = c.on_reply(3, reply(3, ts, view=1, seq=3, speculative=True), 0.3)
    assert acc is not None and (acc.view, acc.seq) == (1, 3)


def test_a_replica_votes_for_a_bounded_number_of_keys():
    c = core()
    ts = send(c, 0.0)
    for i in range(MAX_KEYS_PER_REPLICA + 3):
        c.on_reply(3, reply(3, ts, result=b"lie%d" % i), 0.1)  # a Byzantine replica
    assert c.counters["reply_keys_capped"] == 3
    assert len(c.outstanding[ts].votes) == MAX_KEYS_PER_REPLICA


def test_one_vote_per_replica_duplicates_ignored():
    c = core()
    ts = send(c, 0.0)
    assert c.on_reply(0, reply(0, ts), 0.1) is None
    assert c.on_reply(0, reply(0, ts), 0.1) is None  # same replica again: still one vote
    assert c.counters["duplicate_replies"] == 1
    assert ts in c.outstanding


def test_forged_or_foreign_replies_rejected():
    c = core()
    ts = send(c, 0.0)
    assert c.on_reply(1, reply(0, ts), 0.1) is None  # replica field differs from the sender
    assert c.on_reply(7, reply(7, ts), 0.1) is None  # not a replica
    assert c.on_reply(0, reply(0, ts, client=CID + 1), 0.1) is None  # another client's reply
    assert c.counters["bad_replies"] == 3
    assert c.outstanding[ts].votes == {}


def test_closed_loop_window_bounds_in_flight():
    c = core(max_in_flight_txn=300)
    for _ in range(3):
        assert c.send_due(0.0, 100)
        send(c, 0.0)
    assert not c.send_due(0.0, 100)
    assert c.in_flight_txn == 300
    c.on_reply(0, reply(0, 1), 0.1)
    c.on_reply(1, reply(1, 1), 0.1)
    assert c.send_due(0.1, 100)


def test_a_request_larger_than_the_window_still_goes_out_alone():
    c = core(max_in_flight_txn=50)
    assert c.send_due(0.0, 100)
    send(c, 0.0)
    assert not c.send_due(0.0, 100)


def test_timeout_resends_to_all_then_gives_up_after_max_retries():
    c = core(request_timeout_s=1.0, max_retries=2)
    ts = send(c, 0.0)
    assert c.next_deadline() == pytest.approx(1.0)
    assert c.due_retransmits(0.5) == []
    due = c.due_retransmits(1.0)
    assert [d.timestamp for d in due] == [ts] and due[0].payload == f"req{ts}"
    assert c.next_deadline() == pytest.approx(2.0)
    assert len(c.due_retransmits(2.0)) == 1
    assert c.counters["retransmissions"] == 2
    assert c.due_retransmits(3.0) == []  # retries exhausted: given up, window freed
    assert c.counters["requests_given_up"] == 1
    assert c.in_flight_txn == 0 and not c.outstanding
    assert c.next_deadline() is None


def test_latency_measured_from_the_first_send_across_retransmissions():
    c = core(request_timeout_s=1.0)
    ts = send(c, 0.0)
    c.due_retransmits(1.5)
    c.on_reply(2, reply(2, ts), 1.6)
    acc = c.on_reply(3, reply(3, ts), 1.7)
    assert acc is not None and acc.latency_s == pytest.approx(1.7)


def test_deadlines_stay_ordered_after_a_retransmission():
    c = core(request_timeout_s=1.0, max_retries=5)
    a = send(c, 0.0)
    b = send(c, 0.5)
    assert [d.timestamp for d in c.due_retransmits(1.0)] == [a]  # a re-armed to 2.0
    assert [d.timestamp for d in c.due_retransmits(1.5)] == [b]  # b re-armed to 2.5
    assert [d.timestamp for d in c.due_retransmits(2.0)] == [a]


def test_view_learnt_only_when_f_plus_1_replicas_claim_it():
    c = core()
    ts = send(c, 0.0)
    c.on_reply(3, reply(3, ts, view=50), 0.1)  # one (possibly Byzantine) replica: not enough
    assert c.view == 0
    c.on_reply(2, reply(2, ts, view=1), 0.1)
    assert c.view == 1  # two replicas claim >= 1
    ts2 = send(c, 0.2)
    c.on_reply(1, reply(1, ts2, view=50), 0.3)
    assert c.view == 50  # replicas 3 and 1 both claim 50: f+1 = 2 claims


def test_view_takes_the_f_plus_1_th_highest_claim():
    c = core()
    ts = send(c, 0.0)
    c.on_reply(0, reply(0, ts, view=3, result=b"a"), 0.1)
    assert c.view == 0
    c.on_reply(1, reply(1, ts, view=5, result=b"b"), 0.1)
    assert c.view == 3


def test_accepted_counts_per_second_and_latency_sample():
    c = core(max_in_flight_txn=10_000)
    stamps = [send(c, 100.0 + i * 0.4) for i in range(5)]
    for i, ts in enumerate(stamps):
        now = 100.2 + i * 0.4
        c.on_reply(0, reply(0, ts), now)
        c.on_reply(1, reply(1, ts), now)
    # accepted at 100.2, 100.6 (second 100), 101.0, 101.4, 101.8 (second 101)
    assert c.accepted_per_s.as_pairs() == [[100, 200], [101, 300]]
    assert len(c.latencies.items) == 5
    assert all(lat == pytest.approx(0.2) for _, lat in c.latencies.items)


def test_latency_sample_is_bounded():
    c = core(max_in_flight_txn=10**9, latency_capacity=10)
    for i in range(100):
        ts = send(c, float(i), txns=1)
        c.on_reply(0, reply(0, ts), i + 0.01)
        c.on_reply(1, reply(1, ts), i + 0.01)
    assert len(c.latencies.items) == 10
    assert c.latencies.seen == 100


def test_open_loop_paces_sends_at_the_rate():
    c = core(mode="open", rate_txn_s=1000.0, max_in_flight_txn=10_000)
    sent = 0
    now = 0.0
    while now < 1.0:  # one virtual second in 1 ms steps
        while c.send_due(now, 100):
            send(c, now)
            sent += 1
        now += 0.001
    assert sent == 10  # 1000 txn/s at 100 txns per request


def test_open_loop_capped_by_the_window_counts_skips():
    c = core(mode="open", rate_txn_s=100_000.0, max_in_flight_txn=200)
    now = 0.0
    for _ in range(100):
        if c.send_due(now, 100):
            send(c, now)
        now += 0.001
    assert c.in_flight_txn == 200
    assert c.counters["open_loop_skipped"] > 0


def test_duplicate_timestamp_refused():
    c = core()
    ts = send(c, 0.0)
    with pytest.raises(ValueError):
        c.record_sent(ts, "again", 100, 0.1)


def test_bad_parameters_refused():
    with pytest.raises(ValueError):
        core(rule=ReplyRule(N + 1))
    with pytest.raises(ValueError):
        ReplyRule(0)
    with pytest.raises(ValueError):
        ReplyRule(2, ("result",))  # a rule must fix the position
    with pytest.raises(ValueError):
        core(mode="sideways")
    with pytest.raises(ValueError):
        core(mode="open", rate_txn_s=0)


def test_every_generator_of_every_client_inserts_in_its_own_lane() -> None:
    """Two clients × 3 generator threads + their inline generators: 8 disjoint insert lanes
    (before, every client inserted record_count, record_count+1, ...: the same keys)."""
    from fabric.harness.config import config_from_mapping
    from fabric.harness.ports import free_port_block
    from fabric.runtime.client import GENERATORS_PER_CLIENT, ClientProcess
    from workloads.txn import INSERT

    cfg = config_from_mapping(
        {
            "cluster": {"clients": 2},
            "client": {"threads": 3},
            "workload": {"mix": "d"},
            # its own ports: a run on the default block (another test, a user) must not matter
            "transport": {"base_port": free_port_block(8 * 6)},
        }
    )
    procs = [ClientProcess(cfg, c) for c in cfg.client_ids]
    try:
        gens = [g for p in procs for g in (*p.generators, p.inline_generator)]
        assert {g.insert_lanes for g in gens} == {2 * GENERATORS_PER_CLIENT}
        assert len({g.insert_lane for g in gens}) == len(gens) == 8
        seen: set[int] = set()
        for g in gens:
            keys = {k for op, k, _ in g.next_txns(2000) if op == INSERT}
            assert keys and not keys & seen
            seen |= keys
    finally:
        for p in procs:
            p.shutdown(budget_s=1.0)


def test_io_thread_takes_bodies_in_chunks_so_a_parked_generator_wakes_once_per_chunk() -> None:
    """The IO thread takes BODY_CHUNK ready bodies at a time and sends them in ring order: a
    pop wakes the generator thread parked on the full ring, so it now refills a chunk per
    wake-up (before, it woke, pushed one body and parked again for every request)."""
    import time

    from fabric.harness.config import config_from_mapping
    from fabric.harness.ports import free_port_block
    from fabric.runtime.client import BODY_CHUNK, BODY_RING_CAPACITY, ClientProcess
    from workloads.factory import make_generator
    from workloads.txn import encode_txns

    cfg = config_from_mapping({"transport": {"base_port": free_port_block(5 * 6)}})
    proc = ClientProcess(cfg, cfg.client_ids[0])
    ring = proc.body_ring
    gen = proc.generators[0]
    twin = make_generator(cfg.workload, gen.seed, gen.insert_lane, gen.insert_lanes)
    thread = proc.threads[0]

    def wait_full() -> None:
        deadline = time.monotonic() + 10.0
        while len(ring) < BODY_RING_CAPACITY:
            assert time.monotonic() < deadline, "the generator thread did not fill the ring"
            time.sleep(0.001)

    try:
        thread.start()
        takes = []  # items each _next_body took from the ring (only this thread pops)
        for _ in range(4 * BODY_CHUNK):
            wait_full()  # the generator is ahead, as in a run
            before = ring.pops
            body = proc._next_body()
            takes.append(ring.pops - before)
            assert body == encode_txns(twin.next_txns(proc.txns_per_request))  # in order
        assert [t for t in takes if t] == [BODY_CHUNK] * 4
        assert proc.generated_inline == 0
    finally:
        proc.receiver.close()  # the IO thread, never started, owns these sockets
        proc.sender.close()
        proc.shutdown(budget_s=2.0)
    assert not thread.is_alive()
    assert proc.context_closed
