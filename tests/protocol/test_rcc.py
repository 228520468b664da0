"""RCC (Gupta, Hellings, Sadoghi, ICDE 2021) replicas joined by a fake link: client assignment,
rounds over real PBFT instances, no-ops, failure of an instance primary, catch-up, checkpoints.

``RccCluster`` is a tiny deterministic driver: a FIFO link, virtual ticks for timers (fired
only by ``advance``), an execute stage that chains a digest per delivered seq and feeds
``executed`` back. No sockets, threads or sleeps.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from fabric.sim.lanes import SplitLanes
from protocols import base, registry
from protocols.base import (
    Broadcast,
    CancelTimer,
    Deliver,
    ProtocolConfig,
    Send,
    SetTimer,
    StableCheckpoint,
)
from protocols.checkpoints import checkpoint_payload
from protocols.common import NULL_BATCH, Batch, Request, make_batch
from protocols.pbft import Checkpoint, PrePrepare
from protocols.rcc import Rcc, RccLane, instance_count
from tests.protocol.scenario import FakeVerifier, signed_request

GENESIS = hashlib.sha256(b"rcc-test-genesis").digest()
MAX_EVENTS = 200_000


class RccCluster:
    """n RCC replicas on an in-memory FIFO link with virtual-time timers."""

    def __init__(
        self,
        n: int = 4,
        *,
        m: int = 0,
        checkpoint_period: int = 4,
        watermark_window: int = 8,
        view_change_ticks: int = 40,
        noop_ticks: int = 3,
        permute: bool = True,
        feed_executed: bool = True,
        workers: int = 1,
    ) -> None:
        self.n = n
        self.feed_executed = feed_executed
        params = {"rcc_instances": m, "rcc_noop_ticks": noop_ticks, "rcc_permute_rounds": permute}
        self.replicas = [
            Rcc(
                ProtocolConfig(
                    replica_id=i,
                    n=n,
                    checkpoint_period=checkpoint_period,
                    watermark_window=watermark_window,
                    view_change_ticks=view_change_ticks,
                    params=params,
                ),
                FakeVerifier(i),
            )
            for i in range(n)
        ]
        self.m = self.replicas[0].m
        if workers > 1:  # the lanes split over worker threads, as fabric.runtime.replica runs them
            self.replicas = [SplitLanes(r, workers) for r in self.replicas]  # type: ignore[misc]
        self.now = 0
        self.queue: deque[tuple[str, int, int, Any]] = deque()
        self.timers: list[dict[Hashable, int]] = [{} for _ in range(n)]
        self.crashed: set[int] = set()
        self.drop: Callable[[int, int, Any], bool] | None = None
        self.delivered: list[list[Deliver]] = [[] for _ in range(n)]
        self.heads: list[list[bytes]] = [[GENESIS] for _ in range(n)]
        self.stable: list[list[StableCheckpoint]] = [[] for _ in range(n)]
        self.new_views: list[list[base.ViewEntered]] = [[] for _ in range(n)]
        self.set_timers: list[list[tuple[int, SetTimer]]] = [[] for _ in range(n)]
        self.sent: Counter[str] = Counter()
        self.log: list[str] = []  # "r<i> <Kind>" per message sent, in order
        self._ts: Counter[int] = Counter()

    # --- inputs ----------------------------------------------------------------------

    def request(self, client: int) -> Request:
        self._ts[client] += 1
        ts = self._ts[client]
        return signed_request(client, ts, b"c%d-t%d" % (client, ts))

    def client_of(self, instance: int, k: int = 1) -> int:
        """A client id (>= n) assigned to ``instance``."""
        return self.m * (self.n + k) + instance

    def propose(self, r: int, batch: Batch) -> None:
        self.apply(r, self.replicas[r].propose(batch))

    def client_send(self, r: int, req: Request) -> None:
        self.apply(r, self.replicas[r].receive(req.client_id, req))

    def crash(self, r: int) -> None:
        self.crashed.add(r)
        self.timers[r].clear()

    # --- the link --------------------------------------------------------------------

    def apply(self, r: int, actions: list[Any]) -> None:
        for a in actions:
            t = type(a)
            if t is Send:
                self._send(r, a.to, a.msg)
            elif t is Broadcast:
                for dst in range(self.n):
                    if dst != r:
                        self._send(r, dst, a.msg)
            elif t is Deliver:
                self._deliver(r, a)
            elif t is SetTimer:
                self.timers[r][a.timer] = self.now + a.ticks
                self.set_timers[r].append((self.now, a))
            elif t is CancelTimer:
                self.timers[r].pop(a.timer, None)
            elif t is StableCheckpoint:
                self.stable[r].append(a)
            elif t is base.ViewEntered:
                self.new_views[r].append(a)
            else:
                raise AssertionError(f"unexpected action {a!r}")

    def _send(self, src: int, dst: int, msg: Any) -> None:
        if src in self.crashed or dst >= self.n:
            return
        self.sent[type(msg).__name__] += 1
        self.log.append(f"r{src} {type(msg).__name__}")
        if dst in self.crashed or (self.drop is not None and self.drop(src, dst, msg)):
            return
        self.queue.append(("msg", src, dst, msg))

    def _deliver(self, r: int, d: Deliver) -> None:
        assert d.seq == len(self.delivered[r]) + 1, (
            f"r{r}: seq {d.seq} after {len(self.delivered[r])}"
        )
        self.delivered[r].append(d)
        head = hashlib.sha256(self.heads[r][-1] + d.seq.to_bytes(8, "big") + d.batch.digest)
        self.heads[r].append(head.digest())
        if self.feed_executed:
            self.queue.append(("exec", r, d.seq, head.digest()))

    def run(self) -> None:
        for _ in range(MAX_EVENTS):
            if not self.queue:
                return
            kind, a, b, c = self.queue.popleft()
            if kind == "msg":
                if b not in self.crashed:
                    self.apply(b, self.replicas[b].receive(a, c))
            elif a not in self.crashed:
                self.apply(a, self.replicas[a].executed(b, c))
        raise AssertionError("the link never went quiet")

    def advance(self) -> bool:
        """Jump to the next timer deadline, fire every timer due then, run the link."""
        live = [
            (t, r, k)
            for r in range(self.n)
            if r not in self.crashed
            for k, t in self.timers[r].items()
        ]
        if not live:
            return False
        self.now = max(self.now, min(t for t, _, _ in live))
        for r in range(self.n):
            due = [k for k, t in self.timers[r].items() if t <= self.now]
            for k in sorted(due, key=repr):
                if self.timers[r].get(k, -1) <= self.now and k in self.timers[r]:
                    del self.timers[r][k]
                    self.apply(r, self.replicas[r].timeout(k))
        self.run()
        return True

    def settle(self, until: Callable[[], bool], max_ticks: int = 2000) -> None:
        start = self.now
        self.run()
        while not until():
            assert self.now - start <= max_ticks, f"not settled after {max_ticks} ticks"
            assert self.advance(), "no timer left and not settled"

    # --- reading ---------------------------------------------------------------------

    def live(self) -> list[int]:
        return [r for r in range(self.n) if r not in self.crashed]

    def ledger(self, r: int) -> list[bytes]:
        return [d.batch.digest for d in self.delivered[r]]

    def check_agreement(self) -> None:
        live = self.live()
        longest = max(live, key=lambda r: len(self.delivered[r]))
        for r in live:
            k = len(self.delivered[r])
            assert self.ledger(r) == self.ledger(longest)[:k], f"r{r} and r{longest} disagree"

    def executed_requests(self, r: int) -> Counter[tuple[int, int]]:
        return Counter(
            (q.client_id, q.timestamp) for d in self.delivered[r] for q in d.batch.requests
        )


def _pp_instances(actions: list[Any]) -> list[tuple[int, bytes]]:
    return [
        (a.msg.instance, a.msg.batch.digest)
        for a in actions
        if type(a) is Broadcast and type(a.msg) is PrePrepare
    ]


# --- registration, client assignment, routing ---------------------------------------------


def test_registered_with_pbft_reply_quorum() -> None:
    assert registry.get("rcc") is Rcc
    assert Rcc.reply_quorum(4, 1) == 2 and Rcc.reply_quorum(7, 2) == 3
    assert not Rcc.speculative_replies


def test_clients_are_assigned_to_instances_by_id() -> None:
    """§III-C: client c belongs to instance c % m and sends to that instance's primary,
    (c % m + v) % n in the instance's view v (the view of the client's last accepted reply)."""
    assert [Rcc.client_target(0, c, 4, {}) for c in range(4, 12)] == [0, 1, 2, 3] * 2
    assert [Rcc.client_target(0, c, 4, {"rcc_instances": 0}) for c in range(4, 8)] == [0, 1, 2, 3]
    assert [Rcc.client_target(0, c, 7, {"rcc_instances": 2}) for c in range(7, 11)] == [1, 0, 1, 0]
    assert [Rcc.client_target(v, 9, 4, {}) for v in range(5)] == [1, 2, 3, 0, 1]
    assert instance_count(7, {"rcc_instances": 3}) == 3
    for bad in (8, -1):
        with pytest.raises(ValueError):
            instance_count(7, {"rcc_instances": bad})
    with pytest.raises(ValueError):
        RccCluster(4, m=5)


def test_only_instance_primaries_propose() -> None:
    """With m < n, replicas m..n-1 lead no instance in view 0."""
    c = RccCluster(7, m=3)
    assert [r.is_proposer() for r in c.replicas] == [True] * 3 + [False] * 4
    assert c.replicas[5].proposal_room() == 0 and c.replicas[1].proposal_room() > 0
    assert [len(r.instances) for r in c.replicas] == [3] * 7
    assert [p.instance for p in c.replicas[0].instances] == [0, 1, 2]
    assert all(isinstance(lane, RccLane) for lane in c.replicas[0].lanes)


def test_messages_and_timers_are_routed_by_instance() -> None:
    c = RccCluster(4)
    rcc = c.replicas[1]
    req = c.request(c.client_of(2))
    assert rcc.instance_of(req) == 2 and rcc.instance_of_client(req.client_id) == 2
    pp = PrePrepare(3, 0, 1, NULL_BATCH)
    assert rcc.instance_of(pp) == 3
    assert rcc.instance_of(Checkpoint(9, 4, b"d", 0)) == -1  # no such instance
    assert rcc.instance_of(object()) == -1
    assert rcc.timer_instance(("pbft", 2, "request")) == 2
    assert rcc.timer_instance(("rcc", 1, "noop")) == 1
    assert rcc.timer_instance("bogus") == -1 and rcc.timer_instance(("rcc", 4, "noop")) == -1
    assert rcc.receive(0, Checkpoint(9, 4, b"d", 0)) == []
    assert rcc.timeout(("rcc", 7, "watch")) == []
    assert rcc.ignored == {"no_instance": 1, "unknown_timer": 1}
    # a pre-prepare reaches only its instance's PBFT
    c.apply(0, c.replicas[0].propose(make_batch((c.request(c.client_of(0)),))))
    c.run()
    assert [p.last_delivered for p in rcc.instances] == [1, 0, 0, 0]
    # nothing dropped but the prepare that came after the slot prepared (its cert is full)
    assert set(rcc.instances[0].status()["ignored"]) <= {"after_prepared"}


# --- rounds over real PBFT instances ------------------------------------------------------


@pytest.mark.parametrize("n", [4, 7])
def test_one_batch_per_instance_makes_one_round_on_every_replica(n: int) -> None:
    """§III: each instance decides one batch per round; round 1 is executed as m global seqs,
    the same batches in the same order on every replica."""
    c = RccCluster(n)
    batches = [make_batch((c.request(c.client_of(i)),)) for i in range(n)]
    for i, b in enumerate(batches):
        c.propose(i, b)
    c.run()
    c.check_agreement()
    for r in range(n):
        assert [d.seq for d in c.delivered[r]] == list(range(1, n + 1))
        assert sorted(c.ledger(r)) == sorted(b.digest for b in batches)
        assert all(d.view == 0 for d in c.delivered[r])
    assert c.sent["ViewChange"] == 0 and c.sent["Fetch"] == 0
    assert c.sent["PrePrepare"] == n * (n - 1)  # one PBFT normal case per instance


def test_a_round_waits_for_the_slowest_instance() -> None:
    c = RccCluster(4)
    for i in (0, 1, 2):
        c.propose(i, make_batch((c.request(c.client_of(i)),)))
    c.run()
    assert not any(c.delivered)  # instance 3 has not decided round 1
    assert [p.last_delivered for p in c.replicas[0].instances] == [1, 1, 1, 0]
    c.propose(3, make_batch((c.request(c.client_of(3)),)))
    c.run()
    assert all(len(c.delivered[r]) == 4 for r in range(4))


def test_idle_primaries_fill_rounds_with_noops_after_noop_ticks() -> None:
    """An instance whose primary has nothing to propose decides the null batch, after
    rcc_noop_ticks, so the busy instance is not held back; nobody is suspected."""
    c = RccCluster(4, noop_ticks=3)
    busy = [make_batch((c.request(c.client_of(0)),)) for _ in range(2)]
    for b in busy:
        c.propose(0, b)
    c.run()
    assert not any(c.delivered)
    for r in (1, 2, 3):  # each idle primary armed its no-op timer
        assert c.timers[r][("rcc", r, "noop")] == c.now + 3
    c.settle(lambda: all(len(c.delivered[r]) == 8 for r in range(4)))
    c.check_agreement()
    assert c.now == 3  # one no-op period
    digests = c.ledger(0)
    assert sorted(d for d in digests if d != NULL_BATCH.digest) == sorted(b.digest for b in busy)
    assert digests.count(NULL_BATCH.digest) == 6
    st = c.replicas[0].status()
    assert st["views"] == [0, 0, 0, 0] and st["suspicions"] == 0
    assert sum(r.status()["noops_proposed"] for r in c.replicas) == 6
    # quiet again: no timer keeps proposing no-ops for ever
    c.settle(lambda: not any(c.timers[r] for r in range(4)))
    assert all(len(c.delivered[r]) == 8 for r in range(4))


def test_propose_splits_a_batch_by_instance_and_forwards_the_rest() -> None:
    """A proposer orders only its own instances' clients; a request of another instance goes
    to that instance's primary (with PBFT's request timer armed, as a backup does)."""
    c = RccCluster(4)
    mine, theirs = c.request(c.client_of(0)), c.request(c.client_of(1))
    actions = c.replicas[0].propose(make_batch((mine, theirs)))
    assert _pp_instances(actions) == [(0, make_batch((mine,)).digest)]
    assert [a.to for a in actions if type(a) is Send and a.msg == theirs] == [1]
    assert any(type(a) is SetTimer and a.timer == ("pbft", 1, "request") for a in actions)
    assert c.replicas[0].propose(make_batch(())) == []


def test_a_copied_request_of_another_instance_is_executed_once() -> None:
    """A primary that puts a client of another instance into its batch does not get it
    executed twice: the assembler keeps client c's requests to instance c % m."""
    c = RccCluster(4, permute=False)
    own, foreign = c.request(c.client_of(0)), c.request(c.client_of(1))
    rcc0 = c.replicas[0]  # bypass the splitting in Rcc.propose, as a lying primary would
    out: list[Any] = []
    rcc0._collect(0, rcc0.lanes[0].propose(make_batch((own, foreign))), out)
    c.apply(0, out)
    c.propose(1, make_batch((foreign,)))
    for i in (2, 3):
        c.propose(i, make_batch((c.request(c.client_of(i)),)))
    c.run()
    c.check_agreement()
    for r in range(4):
        counts = c.executed_requests(r)
        assert counts[(foreign.client_id, foreign.timestamp)] == 1
        assert counts[(own.client_id, own.timestamp)] == 1
        assert c.delivered[r][0].batch == make_batch((own,))
    assert c.replicas[2].status()["foreign_requests"] == 1


# --- failure of an instance primary (§III-B) -----------------------------------------------


def _busy_rounds(c: RccCluster, rounds: int, skip: int) -> None:
    for _ in range(rounds):
        for i in range(c.m):
            if i != skip:
                c.propose(i, make_batch((c.request(c.client_of(i)),)))


def test_crashed_instance_primary_is_detected_and_replaced_and_rounds_are_filled() -> None:
    """Replica 1 (primary of instance 1) is down: the other instances go on deciding rounds;
    the backups see instance 1 lag, fetch first, then change instance 1's view; the next
    primary (replica 2) fills the missing rounds with no-ops and every round executes."""
    c = RccCluster(4, view_change_ticks=40, noop_ticks=3)
    c.crash(1)
    _busy_rounds(c, 3, skip=1)
    c.run()
    assert not any(c.delivered)
    assert [p.last_delivered for p in c.replicas[0].instances] == [3, 0, 3, 3]
    watch = ("rcc", 1, "watch")
    assert all(c.timers[r][watch] == 20 for r in (0, 2, 3))  # half the view-change timeout
    c.settle(lambda: all(len(c.delivered[r]) == 12 for r in (0, 2, 3)))
    c.check_agreement()
    # two watch periods (fetch, then accuse) plus the new primary's no-op period
    assert c.now <= 2 * 20 + 3 + 5
    for r in (0, 2, 3):
        st = c.replicas[r].status()
        assert st["views"] == [0, 1, 0, 0] and st["primaries"] == [0, 2, 2, 3]
        assert c.new_views[r][-1] == base.ViewEntered(1, 2)
        assert c.ledger(r).count(NULL_BATCH.digest) == 3  # instance 1's three rounds
    first_fetch = c.log.index("r0 Fetch")
    first_vc = c.log.index("r0 ViewChange")
    assert first_fetch < first_vc  # fetch first, accuse after the second strike
    assert sum(c.replicas[r].status()["suspicions"] for r in (0, 2, 3)) >= 2
    # instance 1's clients now go to replica 2 (they learn view 1 from their replies)
    client = c.client_of(1)
    assert Rcc.client_target(1, client, 4, {}) == 2
    req = c.request(client)
    c.client_send(2, req)
    c.settle(lambda: all(len(c.delivered[r]) == 16 for r in (0, 2, 3)))
    c.check_agreement()
    mine = [d for d in c.delivered[0] if d.batch.requests and d.batch.requests[0] == req]
    assert len(mine) == 1 and mine[0].view == 1  # the reply carries instance 1's view


def test_an_instance_lagging_beyond_the_bound_is_suspected_sooner() -> None:
    """The lag bound (rcc_max_lag_rounds, default window/2): once an instance is more than
    that many rounds behind, the watch uses the short grace instead of the long timeout."""
    c = RccCluster(4, watermark_window=8, view_change_ticks=80, noop_ticks=3)
    assert c.replicas[0].max_lag_rounds == 4
    c.crash(1)
    _busy_rounds(c, 6, skip=1)  # lag 6 > 4
    c.run()
    watch = ("rcc", 1, "watch")
    grace = max(2 * 3 + 2, (80 // 2) // 4)
    assert all(c.timers[r][watch] == grace for r in (0, 2, 3))
    c.settle(lambda: c.sent["ViewChange"] > 0)
    assert c.now <= 2 * grace < 80  # accused well before one view-change timeout
    c.settle(lambda: all(len(c.delivered[r]) == 24 for r in (0, 2, 3)))
    c.check_agreement()


def test_a_replica_that_missed_an_instance_catches_up_by_fetch_without_a_view_change() -> None:
    """A replica that lost one instance's messages lags in that instance only; its first watch
    expiry fetches the decided rounds (f+1 matching replies) and nobody is accused."""
    c = RccCluster(4)
    c.drop = lambda src, dst, msg: dst == 3 and getattr(msg, "instance", None) == 2
    _busy_rounds(c, 2, skip=-1)
    c.run()
    assert [len(c.delivered[r]) for r in range(4)] == [8, 8, 8, 0]
    c.drop = None
    c.settle(lambda: len(c.delivered[3]) == 8)
    c.check_agreement()
    assert c.sent["Fetch"] >= 1 and c.sent["ViewChange"] == 0
    assert c.replicas[3].status()["views"] == [0, 0, 0, 0]
    assert c.replicas[3].status()["suspicions"] == 0


def test_a_lane_refuses_stable_checkpoints_far_beyond_the_released_round() -> None:
    """Issue 19 push-back: a lane does not adopt a checkpoint more than max_ahead_rounds
    (PBFT's history) beyond the rounds this replica released, so the other instances cannot
    run ahead of a lagging one without bound; once the released round moves it passes."""
    c = RccCluster(4, watermark_window=8)
    lane = c.replicas[0].lanes[1]
    assert lane.max_ahead_rounds == lane.pbft.history_len == 32
    far = Checkpoint(1, 40, b"s" * 32, 2)
    assert lane.receive(2, far) == [] and lane.far_rounds_refused == 1
    assert c.replicas[0].status()["far_rounds_refused"] == 1
    near = Checkpoint(1, 32, b"s" * 32, 2)
    lane.receive(2, near)  # within the gate: PBFT sees it (and holds the vote)
    assert lane.far_rounds_refused == 1
    lane.observe_rounds(10, 8)  # rounds up to 8 released here: the cap is now 40
    lane.receive(2, far)
    assert lane.far_rounds_refused == 1 and lane.released == 8 and lane.frontier == 10


def test_a_lane_far_behind_fetches_the_state_on_2f_plus_1_far_votes_and_installs_it() -> None:
    """Issue 12: votes beyond the far-round gate are kept aside; 2f+1 matching ones (valid
    signatures, one per replica) make the lane ask for the state at that round's global seq.
    Installing it skips the round coordinator and every lane to that round, certified."""
    c = RccCluster(4, watermark_window=8)
    rcc = c.replicas[0]
    lane = rcc.lanes[1]
    digest = b"s" * 32

    def vote(r: int, round_: int = 40, d: bytes = digest) -> Checkpoint:
        sig = c.replicas[r].verifier.sign(checkpoint_payload(1, round_, r, d))
        return Checkpoint(1, round_, d, r, sig)

    assert lane.receive(1, vote(1)) == []
    assert lane.receive(2, Checkpoint(1, 40, digest, 2, b"forged")) == []  # bad signature
    assert lane.receive(2, vote(2, d=b"t" * 32)) == []  # another digest: no quorum
    assert lane.receive(3, vote(3)) == []  # 2 of 3 for digest s
    out = lane.receive(3, vote(3))  # a duplicate counts once
    assert out == []
    out = rcc.receive(2, vote(2, round_=44))  # a higher round: its own count
    assert not [a for a in out if type(a) is base.FetchState]
    # the third matching vote for round 40 (replica 2 voted t there: one vote per round)
    lane2 = rcc.lanes[2]
    for r in (1, 2, 3):
        sig = c.replicas[r].verifier.sign(checkpoint_payload(2, 40, r, digest))
        out = rcc.receive(r, Checkpoint(2, 40, digest, r, sig))
    fetches = [a for a in out if type(a) is base.FetchState]
    assert len(fetches) == 1 and lane2.state_fetches == 1
    fs = fetches[0]
    assert (fs.seq, fs.digest) == (40 * rcc.m, digest) and len(fs.proof) == 3
    # the execute side installed the image: every instance is at round 40, instance 2 stable
    rcc.state_installed(fs.seq, fs.digest, fs.proof)
    assert rcc.coordinator.released == 40 and rcc.assembler.next_round == 41
    assert all(p.last_delivered == 40 for p in rcc.instances)
    assert rcc.instances[2].low == 40 and all(ln.released == 40 for ln in rcc.lanes)


# --- checkpoints and garbage collection -----------------------------------------------------


def test_checkpoints_every_period_rounds_in_every_instance_move_the_watermarks() -> None:
    """Checkpoints count rounds: after round r (r % period == 0) executes, every instance's
    PBFT checkpoints the global state at seq r; when all are stable the global checkpoint is
    r*m with that state's digest, and the watermarks move so more rounds than one window run."""
    c = RccCluster(4, checkpoint_period=2, watermark_window=4)
    _busy_rounds(c, 10, skip=-1)  # 10 rounds > window 4: needs stable checkpoints
    c.settle(lambda: all(len(c.delivered[r]) == 40 for r in range(4)))
    c.check_agreement()
    for r in range(4):
        seqs = [s.seq for s in c.stable[r]]
        assert seqs == sorted(set(seqs)) and seqs[-1] >= 32
        assert all(s % 8 == 0 for s in seqs)  # period 2 rounds * m=4 seqs
        for s in c.stable[r]:
            assert s.digest == c.heads[r][s.seq]  # the state after that round
        lows = [p.low for p in c.replicas[r].instances]
        assert min(lows) >= 8 and all(low % 2 == 0 for low in lows)
        assert c.replicas[r].status()["stable_seq"] == seqs[-1]
    assert c.sent["ViewChange"] == 0


def test_checkpoint_messages_carry_rounds_and_the_same_digest_in_every_instance() -> None:
    c = RccCluster(4, checkpoint_period=2, watermark_window=4, feed_executed=False)
    _busy_rounds(c, 2, skip=-1)
    c.run()
    rcc = c.replicas[0]
    assert len(c.delivered[0]) == 8
    # executed at seq 8 = end of round 2: every instance broadcasts Checkpoint(seq=2)
    out = rcc.executed(8, b"state-after-round-2")
    cps = [a.msg for a in out if type(a) is Broadcast and type(a.msg) is Checkpoint]
    assert sorted(cp.instance for cp in cps) == [0, 1, 2, 3]
    assert {(cp.seq, cp.state_digest) for cp in cps} == {(2, b"state-after-round-2")}
    assert rcc.executed(7, b"x") == [] and rcc.executed(4, b"x") == []  # mid-round / odd round


# --- the threading seam -----------------------------------------------------------------------


def _crash_and_checkpoint_scenario(workers: int) -> RccCluster:
    c = RccCluster(4, checkpoint_period=2, watermark_window=4, workers=workers)
    c.crash(1)
    _busy_rounds(c, 6, skip=1)
    c.settle(lambda: all(len(c.delivered[r]) == 24 for r in (0, 2, 3)))
    return c


@pytest.mark.parametrize("workers", [2, 4])
def test_lanes_split_over_workers_give_the_same_ledgers(workers: int) -> None:
    """The lanes on 2 (or 4) worker groups with the runtime's glue (fabric.runtime.lanes LaneGroup and
    coordinate, on the one RoundCoordinator) agree exactly with the composite Rcc in one
    thread, through a primary crash, a view change, no-ops and checkpoints."""
    composite = _crash_and_checkpoint_scenario(workers=1)
    split = _crash_and_checkpoint_scenario(workers=workers)
    for r in (0, 2, 3):
        assert split.ledger(r) == composite.ledger(r)
        assert [s.seq for s in split.stable[r]] == [s.seq for s in composite.stable[r]]
        assert split.replicas[r].status()["views"] == [0, 1, 0, 0]
        assert split.replicas[r].status()["workers"] == workers
    assert split.sent == composite.sent
