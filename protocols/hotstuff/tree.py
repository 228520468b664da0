"""The block tree of chained HotStuff (Yin et al. PODC'19 §5): every block a replica knows,
by digest, from its last committed block up, plus the committed blocks it keeps to answer
fetches, and the orphans (blocks whose parent is being fetched).

A block enters the tree only once its parent is in it (so every uncommitted block's chain
reaches the committed block), and only if its height is its parent's plus one. On a commit
the tree forgets every block at or below the committed height that is not on the committed
chain (abandoned forks), and committed blocks older than the kept history. Bounded: at most
``max_uncommitted`` blocks above the committed height and ``max_orphans`` orphans; what
exceeds a bound is refused and counted by the caller.

Must not live here: the safety rules (protocols/hotstuff/safety.py), signatures, IO.
"""

from __future__ import annotations

from collections.abc import Iterator

from protocols.hotstuff.messages import GENESIS, GENESIS_DIGEST, Block


class BlockTree:
    """Blocks by digest; committed heights; orphans waiting for a parent."""

    def __init__(self, max_uncommitted: int, max_orphans: int, history_len: int) -> None:
        self.max_uncommitted = max_uncommitted
        self.max_orphans = max_orphans
        self.history_len = history_len
        self.blocks: dict[bytes, Block] = {GENESIS_DIGEST: GENESIS}
        self.committed: dict[int, bytes] = {0: GENESIS_DIGEST}  # height -> digest (kept history)
        self.committed_height = 0
        self.uncommitted = 0  # blocks above committed_height
        # digest -> (block, sender, direct): ``direct`` when it came as the leader's proposal
        self.orphans: dict[bytes, tuple[Block, int, bool]] = {}
        self.orphans_by_parent: dict[bytes, list[bytes]] = {}

    def __contains__(self, digest: bytes) -> bool:
        return digest in self.blocks

    def get(self, digest: bytes) -> Block | None:
        return self.blocks.get(digest)

    def full(self) -> bool:
        return self.uncommitted >= self.max_uncommitted

    def add(self, digest: bytes, block: Block) -> None:
        """Insert ``block`` (its parent is in the tree, its height above the committed one)."""
        assert block.parent_digest in self.blocks, "a block enters the tree after its parent"
        assert block.height > self.committed_height
        self.blocks[digest] = block
        self.uncommitted += 1

    def ancestors(self, digest: bytes, limit: int) -> Iterator[tuple[bytes, Block]]:
        """``digest``'s block and its ancestors, newest first, at most ``limit`` of them."""
        while limit > 0:
            block = self.blocks.get(digest)
            if block is None:
                return
            yield digest, block
            if block.height == 0:
                return
            digest = block.parent_digest
            limit -= 1

    def branch(self, digest: bytes) -> list[tuple[bytes, Block]]:
        """The uncommitted blocks from ``digest`` down to the committed height, oldest first.
        Raises AssertionError if that chain does not reach the committed block (a fork
        below the commit point: committing it would break safety)."""
        out = []
        block = self.blocks.get(digest)
        while block is not None and block.height > self.committed_height:
            out.append((digest, block))
            digest = block.parent_digest
            block = self.blocks.get(digest)
        assert block is not None and digest == self.committed[self.committed_height], (
            "the chain of a committed block must extend the last committed block (safety)"
        )
        out.reverse()
        return out

    def mark_committed(self, chain: list[tuple[bytes, Block]]) -> None:
        """``chain`` (from ``branch``) is committed: forget forks and old history."""
        if not chain:
            return
        for digest, block in chain:
            self.committed[block.height] = digest
        top = chain[-1][1].height
        self.committed_height = top
        keep_from = top - self.history_len
        on_chain = set(self.committed.values())
        drop = [
            d
            for d, b in self.blocks.items()
            if (b.height <= top and d not in on_chain) or (b.height < keep_from and b.height > 0)
        ]
        for d in drop:
            del self.blocks[d]
        for h in [h for h in self.committed if 0 < h < keep_from]:
            del self.committed[h]
        self.uncommitted = sum(1 for b in self.blocks.values() if b.height > top)
        stale = [d for d, (b, _, _) in self.orphans.items() if b.height <= top]
        for d in stale:
            self.drop_orphan(d)

    def prune_below_lock(self, lock_digest: bytes, lock_view: int, keep: bytes) -> int:
        """Forget the uncommitted blocks that can no longer commit: those whose chain holds
        a block of a view below the locked block's that is not one of its ancestors (a
        committed block is an ancestor of every certified block of a later view, and the
        locked block is certified). ``keep`` and its ancestors stay (the high QC's block:
        the leader extends it). Returns how many were dropped."""
        on_lock: set[bytes] = set()
        for head in (lock_digest, keep):
            for d, b in self.ancestors(head, self.max_uncommitted + 1):
                if b.height <= self.committed_height:
                    break
                on_lock.add(d)
        top = self.committed_height
        doomed: set[bytes] = set()
        for d, b in sorted(self.blocks.items(), key=lambda item: item[1].height):
            if b.height <= top:
                continue
            if b.parent_digest in doomed or (d not in on_lock and b.view < lock_view):
                doomed.add(d)
        for d in doomed:
            del self.blocks[d]
        self.uncommitted -= len(doomed)
        return len(doomed)

    # --- orphans ---------------------------------------------------------------------

    def add_orphan(self, digest: bytes, block: Block, sender: int, direct: bool) -> bool:
        if digest in self.orphans:
            return True
        if len(self.orphans) >= self.max_orphans:
            return False
        self.orphans[digest] = (block, sender, direct)
        self.orphans_by_parent.setdefault(block.parent_digest, []).append(digest)
        return True

    def drop_orphan(self, digest: bytes) -> None:
        entry = self.orphans.pop(digest, None)
        if entry is None:
            return
        siblings = self.orphans_by_parent.get(entry[0].parent_digest)
        if siblings is not None:
            if digest in siblings:
                siblings.remove(digest)
            if not siblings:
                del self.orphans_by_parent[entry[0].parent_digest]

    def children_waiting(self, parent: bytes) -> list[tuple[bytes, Block, int, bool]]:
        """Orphans whose parent is ``parent``, removed from the orphans."""
        out = []
        for d in self.orphans_by_parent.pop(parent, []):
            entry = self.orphans.pop(d, None)
            if entry is not None:
                out.append((d, *entry))
        return out


__all__ = ["BlockTree"]
