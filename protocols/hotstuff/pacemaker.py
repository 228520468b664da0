"""Chained HotStuff's pacemaker (Yin et al. PODC'19 §6, Algorithm 5): views, the rotating
leader, view timeouts in ticks, NEW-VIEW, and when a leader proposes.

- Leader of view v: replica ``v % n`` (a new leader every view, §5).
- A replica is in view v after voting in v-1, after seeing a QC of view v-1, after its view
  timer for v-1 fired, or after n-f NEW-VIEWs for v (at v's leader).
- View timer (``hotstuff.view``): armed in each view while there is work (pending requests
  here, a non-empty block not yet committed everywhere, or a WAKE); base
  ``protocol.view_change_timeout_ms`` in ticks, doubled per n views since the high QC's
  view (at most ``MAX_BACKOFF_EXP`` times): replicas that know the same QC wait alike. On expiry the replica
  gives up view v, enters v+1 and sends NEW-VIEW(v+1, high QC, last vote).
- NEW-VIEW goes to every replica (the paper: to the next leader): f+1 of them for views
  past ours make a replica give up its view too, so timers that drift apart still meet.
- A leader is ready in view v with a QC of view v-1, or once n-f replicas left v-1 (a
  NEW-VIEW for v or later, or a vote in v-1 that formed no QC): it then extends the highest
  QC it knows; NEW-VIEWs' last votes may complete the QC of v-1 whose collector crashed. Ready and with work, it proposes once (normal.py).
- Idle: with nothing to commit and no requests, leaders do not propose and timers stay
  off. A replica whose requests arrive into an idle chain broadcasts WAKE once per view:
  every replica then counts work for its view timer and the leader proposes (an empty
  block, if it has nothing itself), so the chain moves round to the waker's view.

``HotStuffPacemaker`` is a mixin of ``HotStuff`` (replica.py). Must not live here: the
vote and commit rules (safety.py), block checks (normal.py), IO.
"""

from __future__ import annotations

from protocols.base import Action, Broadcast, ViewEntered
from protocols.hotstuff.messages import NewView, Wake
from protocols.limits import MAX_BACKOFF_EXP, MAX_VIEWS_AHEAD

#: blocks from the tip whose payload still needs a proposal above it (the three-chain:
#: a block commits at the others when a block carrying the QC two above it arrives)
_PROPAGATE = 3


class HotStuffPacemaker:
    """Views, the view timer, NEW-VIEW, WAKE and the leader's readiness (§6)."""

    def leader_of(self, view: int) -> int:
        return view % self.n

    def _enter_view(self, view: int, out: list[Action], timed_out: bool) -> None:
        if view <= self.view:
            return
        self.view = view
        for d in [d for d in self.fetch_later if d in self.tree]:
            del self.fetch_later[d]
        if timed_out:
            out.append(ViewEntered(view, self.leader_of(view)))
        self._check_ready()
        held = self.held_proposals.pop(view, None)
        for w in [w for w in self.held_proposals if w < view]:
            del self.held_proposals[w]
        if held is not None and held[0] in self.tree:
            self._consider_vote(held[0], held[1], out)

    # --- work ---------------------------------------------------------------------------

    def _dirty(self) -> bool:
        """A non-empty block on the tip's branch is uncommitted here, or within the last
        three blocks (others commit it only once a block above it carries their QC)."""
        for i, (_, block) in enumerate(self.tree.ancestors(self._tip, self.tree.max_uncommitted)):
            if i >= _PROPAGATE and block.height <= self.last_delivered:
                return False
            if block.batch.requests:
                return True
        return False

    def _has_work(self) -> bool:
        if len(self.mempool) or self._dirty():
            return True
        if self.wakers:
            for r in [r for r, w in self.wakers.items() if w + self.n < self.view]:
                del self.wakers[r]  # its turn passed
        return bool(self.wakers)

    def _ready(self) -> bool:
        return self.high_qc.view == self.view - 1 or self.nv_ready_view == self.view

    def _timed_out_into(self, view: int) -> bool:
        """Some replica gave up a view to enter ``view`` or later: it had work, so the
        leader proposes (perhaps an empty block) even if it sees none itself."""
        return any(nv.view >= view for nv in self.nv_latest.values())

    def _after(self, out: list[Action]) -> None:
        """After every input: propose if due, wake an idle chain, keep the timer right."""
        if (
            self.leader_of(self.view) == self.id
            and self.proposed_view < self.view
            and self._ready()
            and self.high_qc.block_digest in self.tree
            and (self._has_work() or self._timed_out_into(self.view))
        ):
            self._propose_now(out)
        if len(self.mempool) and self.wake_view < self.view and not self._dirty():
            if self.leader_of(self.view) != self.id:
                self.wake_view = self.view
                out.append(Broadcast(Wake(self.view, self.id)))
        if self.timer_view != self.view and self._has_work():
            self.timer_view = self.view
            # the exponent counts the leader rotations since the high QC's view: replicas
            # that know the same QC wait alike in a view (a per-replica count of its own
            # timeouts drifts apart), and one dead leader per rotation costs no doubling
            since = max(0, self.view - self.high_qc.view - 1)
            self.backoff_exp = min(since // self.n, MAX_BACKOFF_EXP)
            self._set_timer(self.t_view, self.base_ticks << self.backoff_exp, out)

    # --- timeouts and NEW-VIEW ----------------------------------------------------------

    def _on_view_timer(self, out: list[Action]) -> None:
        if self.timer_view != self.view:
            return  # a view we left: _after arms the timer for this one
        if not self._has_work():
            self.timer_view = -1  # idle: armed again when work appears
            return
        self.timeouts += 1
        self._leave_for(self.view + 1, out)

    def _leave_for(self, view: int, out: list[Action]) -> None:
        """Give up the current view: enter ``view`` and broadcast NEW-VIEW for it (the
        paper sends it to the leader only; everyone hearing it lets f+1 of them pull a
        replica whose timer is slower into the same view, as PBFT's view change does)."""
        self._enter_view(view, out, timed_out=True)
        nv = NewView(view, self.high_qc, self.last_vote, self.id)
        out.append(Broadcast(nv))
        self._count_new_view(nv, out)

    def _on_new_view(self, sender: int, m: NewView, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        latest = self.nv_latest.get(sender)
        if m.view < self.view or (latest is not None and m.view <= latest.view):
            self._ignore("old_view")
            return
        if m.view > self.view + MAX_VIEWS_AHEAD:
            self._ignore("too_far_ahead")
            return
        vote = m.last_vote
        if m.high_qc.view >= m.view or (
            vote is not None and (vote.replica != sender or vote.view >= m.view)
        ):
            self._ignore("bad_new_view")
            return
        if not self._valid_qc(m.high_qc):
            self._ignore("bad_qc")
            return
        if vote is not None and not self._valid_vote_signature(
            vote.view, vote.replica, vote.block_digest, vote.signature
        ):
            self._ignore("bad_signature")
            return
        self._on_qc(m.high_qc, out)
        self._count_new_view(m, out)

    def _count_new_view(self, m: NewView, out: list[Action]) -> None:
        """A checked NEW-VIEW (or our own). Its last vote may complete the QC whose
        collector (the leader of the view after it) crashed. f+1 replicas past our view
        pull us after them; n-f at or past the view we lead make us ready to propose."""
        vote = m.last_vote
        if vote is not None and vote.view > self.high_qc.view:
            by_view = self.votes.get(vote.view)
            if by_view is None or vote.replica not in by_view:
                self._count_vote(vote, out)
        self.nv_latest[m.replica] = m
        views = sorted((x.view for x in self.nv_latest.values()), reverse=True)
        if len(views) > self.f and views[self.f] > self.view:
            self._leave_for(views[self.f], out)  # f+1 left: one of them is honest
            return
        self._check_ready()

    def _check_ready(self) -> None:
        """Leader of the current view v: ready once n-f replicas left view v-1, by a
        NEW-VIEW for v or later or by a vote in v-1 (sent to us: a replica that voted for
        a block only some received does not time out in v-1, yet it left it)."""
        v = self.view
        if self.leader_of(v) != self.id or self.nv_ready_view == v:
            return
        left = {r for r, nv in self.nv_latest.items() if nv.view >= v}
        left.update(self.votes.get(v - 1, ()))
        if len(left) >= self.quorum:
            self.nv_ready_view = v

    def _on_wake(self, sender: int, m: Wake, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        if m.view + self.n < self.view or m.view > self.view + MAX_VIEWS_AHEAD:
            self._ignore("old_view")
            return
        self.wakers[sender] = max(self.wakers.get(sender, 0), m.view)


__all__ = ["HotStuffPacemaker"]
