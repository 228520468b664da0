"""Chained HotStuff catch-up: fetching missing blocks by digest (the paper assumes a
replica "fetches" a node it lacks, Yin et al. PODC'19 §4.2; here FETCH-BLOCKS).

A replica asks for a block it lacks when a checked block's parent is unknown (the block
waits as an orphan, protocols/hotstuff/tree.py; for a leader's proposal only if the parent
is still missing ``FETCH_LATER_TICKS`` later: proposals overtake each other), when a
verified QC names an unknown block, and (at the next leader, also ``FETCH_LATER_TICKS``
later) when a validly signed vote names a block it has not received: an equivocating leader
may have sent the voter a block, and a QC inside it, that it did not send us. It asks the sender of what named the block first, and everyone on the ``fetch`` timer
while blocks are still missing, at most ``MAX_ASKS`` times per digest. A digest asked for is named by a verified QC or a signed
vote, so one answer whose block hashes to it is enough: no quorum of answers is needed (a
fetched block is checked like a proposal but for client signatures: it commits only once
certified, and n-f voters, f+1 of them honest, checked those when it was proposed).
A replica answers from its tree (uncommitted blocks and ``HISTORY_WINDOWS`` windows of
committed ones) with the block and up to ``MAX_FETCH_BLOCKS - 1`` ancestors, so a lagging
replica walks back a window in a few round trips and commits the chain in order.

``HotStuffCatchUp`` is a mixin of ``HotStuff`` (replica.py). Must not live here: block
checks (normal.py), IO.
"""

from __future__ import annotations

import struct

from protocols.base import Action, Broadcast, Send
from protocols.hotstuff.messages import Blocks, FetchBlocks, block_digest
from protocols.hotstuff.normal import _valid_batch
from protocols.limits import FETCH_LATER_TICKS, MAX_FETCH_BLOCKS, MAX_WANTED_BLOCKS

#: missing digests re-asked per fetch timer expiry (the oldest first)
_REASK = 4
#: times one missing digest is asked for before it is given up (its block may be gone
#: everywhere: a fork dropped, or history older than the peers keep), so the bounded set of
#: wanted digests does not fill with hopeless ones
MAX_ASKS = 8


class HotStuffCatchUp:
    """FETCH-BLOCKS / BLOCKS."""

    def _want(self, digest: bytes, sender: int | None, out: list[Action]) -> None:
        if digest in self.tree or digest in self.wanted:
            return
        if len(self.wanted) >= MAX_WANTED_BLOCKS:
            self._ignore("wanted_full")
            return
        self.wanted[digest] = 1
        msg = FetchBlocks(digest, MAX_FETCH_BLOCKS, self.id)
        if sender is not None and 0 <= sender < self.n and sender != self.id:
            out.append(Send(sender, msg))
        else:
            out.append(Broadcast(msg))
        self.fetches_sent += 1
        if self.t_fetch not in self.armed:
            self._set_timer(self.t_fetch, self.fetch_ticks, out)

    def _on_fetch_timer(self, out: list[Action]) -> None:
        for d in [d for d in self.wanted if d in self.tree]:
            del self.wanted[d]
        if not self.wanted:
            return
        for d in list(self.wanted)[:_REASK]:
            asks = self.wanted.pop(d) + 1
            if asks > MAX_ASKS:
                self.waiting_qcs.pop(d, None)
                self._ignore("fetch_given_up")
                continue
            self.wanted[d] = asks  # to the back: the others get their turn
            out.append(Broadcast(FetchBlocks(d, MAX_FETCH_BLOCKS, self.id)))
            self.fetches_sent += 1
        if self.wanted:
            self._set_timer(self.t_fetch, self.fetch_ticks, out)

    def _fetch_soon(self, digest: bytes, holder: int, out: list[Action]) -> None:
        """Fetch ``digest`` from ``holder`` if it is still missing FETCH_LATER_TICKS from now."""
        if digest in self.tree or digest in self.wanted:
            return
        if digest not in self.fetch_later and len(self.fetch_later) >= MAX_WANTED_BLOCKS:
            self._ignore("wanted_full")
            return
        self.fetch_later.setdefault(digest, holder)
        if self.t_fetch_later not in self.armed:
            self._set_timer(self.t_fetch_later, FETCH_LATER_TICKS, out)

    def _on_fetch_later_timer(self, out: list[Action]) -> None:
        """Blocks learnt of FETCH_LATER_TICKS ago and still missing: fetch them now."""
        for digest, voter in self.fetch_later.items():
            if digest not in self.tree:
                self._want(digest, voter, out)
        self.fetch_later.clear()

    def _on_fetch_blocks(self, sender: int, m: FetchBlocks, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        count = max(1, min(m.count, MAX_FETCH_BLOCKS))
        blocks = tuple(b for _, b in self.tree.ancestors(m.block_digest, count) if b.height > 0)
        if blocks:
            out.append(Send(sender, Blocks(blocks, self.id)))

    def _on_blocks(self, sender: int, m: Blocks, out: list[Action]) -> None:
        if sender != m.replica or not 0 <= sender < self.n or sender == self.id:
            self._ignore("wrong_replica_field")
            return
        for block in m.blocks:  # newest first: each one's parent is the next wanted
            try:
                digest = block_digest(block)
            except (struct.error, OverflowError):
                self._ignore("bad_block")
                return
            if digest not in self.wanted:
                self._ignore("unneeded_block")
                continue
            if not self._well_formed(block) or not _valid_batch(block):
                self._ignore("bad_block")
                return
            if not self._valid_qc(block.justify):
                self._ignore("bad_qc")
                return
            del self.wanted[digest]
            self._add_block(digest, block, sender, False, out)


__all__ = ["HotStuffCatchUp"]
