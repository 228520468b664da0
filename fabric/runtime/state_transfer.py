"""State transfer, sans-IO: fetch the state image at a certified stable checkpoint from peers,
and answer other replicas' requests from the images this replica keeps.

Both the runtime (the execute stage owns one ``StateTransfer``: it holds the executor whose
images are served and installed) and the simulator (fabric/sim) drive this same class; it
never touches a socket, thread, clock or random number. Calls in, outputs out:

    fetch(seq, digest, proof)   the protocol's FetchState: fetch the image at ``seq`` whose
                                state digest ``digest`` is certified by ``proof`` (a newer
                                fetch replaces an older one; an older one is ignored)
    receive(sender, msg)        a StateRequest (serve it) or a StateChunk (assemble it)
    timeout()                   the retry timer set by the last ``Arm`` fired

    outputs: ``Out(to, msg)`` send a message; ``Arm(ticks)`` (re)arm the one retry timer;
             ``Installed(image, digest, proof)`` the verified image to install

Fetching: peers are asked in turn, the certificate's signers first (they executed up to
``seq``), one peer at a time, at most ``window`` chunk requests outstanding. The assembled
bytes are decoded with the image codec's bounds (fabric.runtime.state_image) and the image's
digest must equal the certified one: a malformed or mismatching image is discarded, counted
(``bad_image`` / ``digest_mismatch``) and the next peer asked; so is a peer that has no image
(``chunks == 0``), sends inconsistent sizes, or sends nothing for a whole retry period.
Memory: one image being assembled (at most ``max_image_bytes``, announced by its first chunk
and checked on every chunk) and ``max_served`` encoded images for serving.

Serving: ``image_at(seq)`` (the owner's: the executor's image at a kept checkpoint, encoded,
with its digest, or None) is asked once per seq and the bytes kept (``max_served``); each
request is answered with one chunk of ``chunk_bytes``. The input stage bounds how often a
peer may ask (protocols.limits.STATE_REQUESTS_PER_SENDER_S).

Must not live here: how an image is built or installed (fabric.runtime.execute), what the
protocol does once it is installed (``Protocol.state_installed``), IO, clocks.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fabric.runtime.state_image import ImageError, StateImage, decode_image
from protocols.limits import (
    MAX_SERVED_IMAGES,
    MAX_STATE_IMAGE_BYTES,
    STATE_CHUNK_BYTES,
    STATE_CHUNKS_IN_FLIGHT,
)
from protocols.state_transfer import StateChunk, StateRequest

#: ticks without a chunk from the current peer before the next peer is asked
DEFAULT_RETRY_TICKS = 20


@dataclass(frozen=True, slots=True)
class Out:
    """Send ``msg`` to replica ``to``."""

    to: int
    msg: Any


@dataclass(frozen=True, slots=True)
class Arm:
    """(Re)arm the transfer's one retry timer for ``ticks`` ticks; call ``timeout()`` then."""

    ticks: int


@dataclass(frozen=True, slots=True)
class Installed:
    """The image at ``image.seq`` arrived and its digest is the certified ``digest``."""

    image: StateImage
    digest: bytes
    proof: tuple[Any, ...]


Output = Out | Arm | Installed
ImageSource = Callable[[int], "tuple[bytes, bytes] | None"]


class StateTransfer:
    """One replica's state transfer: the fetching side and the serving side (module doc)."""

    def __init__(
        self,
        me: int,
        n: int,
        image_at: ImageSource,
        *,
        chunk_bytes: int = STATE_CHUNK_BYTES,
        window: int = STATE_CHUNKS_IN_FLIGHT,
        retry_ticks: int = DEFAULT_RETRY_TICKS,
        max_image_bytes: int = MAX_STATE_IMAGE_BYTES,
        max_served: int = MAX_SERVED_IMAGES,
    ) -> None:
        if not 0 < chunk_bytes <= STATE_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in 1..{STATE_CHUNK_BYTES}")
        if window < 1 or retry_ticks < 1 or max_image_bytes < 1 or max_served < 1:
            raise ValueError("window, retry_ticks, max_image_bytes, max_served must be >= 1")
        self.me = me
        self.n = n
        self.image_at = image_at
        self.chunk_bytes = chunk_bytes
        self.window = window
        self.retry_ticks = retry_ticks
        self.max_image_bytes = max_image_bytes
        self.max_served = max_served
        # fetching
        self.target: tuple[int, bytes, tuple[Any, ...]] | None = None
        self._peers: list[int] = []
        self._peer_index = 0
        self._parts: dict[int, bytes] = {}
        self._chunks = 0  # of the current peer's image (0: not known yet)
        self._total = 0
        self._next = 0  # next chunk to ask for
        self._asked: set[int] = set()
        self._progress = False  # a chunk arrived since the timer was armed
        self._waiting_round = False  # all peers failed once: pausing until the timer
        # serving
        self._served: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self.counts: Counter[str] = Counter()

    # --- status -------------------------------------------------------------------------
    @property
    def fetching(self) -> bool:
        return self.target is not None

    def stats(self) -> dict[str, Any]:
        return {
            "fetching_seq": self.target[0] if self.target else None,
            "served_images": list(self._served),
            **dict(self.counts),
        }

    # --- fetching -----------------------------------------------------------------------
    def fetch(self, seq: int, digest: bytes, proof: Sequence[Any] = ()) -> list[Output]:
        """Start fetching the image at ``seq`` (certified ``digest``); see the module doc."""
        if self.target is not None and seq <= self.target[0]:
            self.counts["fetch_superseded"] += 1
            return []
        self.counts["fetches"] += 1
        self.target = (seq, digest, tuple(proof))
        signers = [getattr(cp, "replica", -1) for cp in proof]
        first = [r for r in dict.fromkeys(signers) if 0 <= r < self.n and r != self.me]
        rest = [r for r in range((self.me + 1) % self.n, self.n) if r not in first]
        rest += [r for r in range(0, self.me) if r not in first and r not in rest]
        self._peers = [r for r in first + rest if r != self.me]
        self._peer_index = 0
        out: list[Output] = []
        self._restart_peer(out)
        return out

    def reached(self, seq: int) -> None:
        """Execution reached ``seq`` by other means: a fetch at or below it is moot."""
        if self.target is not None and self.target[0] <= seq:
            self.cancel()

    def cancel(self) -> None:
        """Stop fetching (the replica reached the target by other means)."""
        if self.target is not None:
            self.counts["fetch_cancelled"] += 1
        self.target = None
        self._reset_parts()

    def timeout(self) -> list[Output]:
        out: list[Output] = []
        if self.target is None:
            return out
        if self._waiting_round:  # the pause between two rounds of peers is over
            self._restart_peer(out)
            return out
        if not self._progress:
            self.counts["peer_timeout"] += 1
            self._next_peer(out)
        else:
            self._progress = False
            out.append(Arm(self.retry_ticks))
        return out

    def _reset_parts(self) -> None:
        self._parts = {}
        self._chunks = 0
        self._total = 0
        self._next = 0
        self._asked = set()

    @property
    def peer(self) -> int:
        return self._peers[self._peer_index % len(self._peers)] if self._peers else -1

    def _restart_peer(self, out: list[Output]) -> None:
        self._reset_parts()
        self._progress = False
        self._waiting_round = False
        if self.target is None or not self._peers:
            return
        seq = self.target[0]
        # the first chunk tells how many there are: ask for it alone
        self._asked.add(0)
        self._next = 1
        self.counts["chunks_asked"] += 1
        out.append(Out(self.peer, StateRequest(seq, 0, self.me)))
        out.append(Arm(self.retry_ticks))

    def _next_peer(self, out: list[Output]) -> None:
        self._peer_index += 1
        if self._peer_index % max(1, len(self._peers)) == 0:
            # every peer asked once without success: wait a retry period before the next
            # round (peers keep images from their stable checkpoint on; a newer FetchState
            # usually arrives meanwhile), never a tight request loop
            self.counts["peer_rounds"] += 1
            self._reset_parts()
            self._waiting_round = True
            out.append(Arm(self.retry_ticks))
            return
        self._restart_peer(out)

    def _fill_window(self, out: list[Output]) -> None:
        assert self.target is not None
        seq = self.target[0]
        while self._next < self._chunks and len(self._asked) < self.window:
            self._asked.add(self._next)
            self.counts["chunks_asked"] += 1
            out.append(Out(self.peer, StateRequest(seq, self._next, self.me)))
            self._next += 1

    def _on_chunk(self, sender: int, m: StateChunk, out: list[Output]) -> None:
        target = self.target
        if target is None or m.seq != target[0] or sender != self.peer or sender != m.replica:
            self.counts["unexpected_chunk"] += 1
            return
        if m.chunks == 0:
            self.counts["peer_has_no_image"] += 1
            self._next_peer(out)
            return
        if self._chunks == 0:  # the first answer fixes the image's size
            expected = -(-m.total_bytes // self.chunk_bytes) if m.total_bytes > 0 else 0
            if not 0 < m.total_bytes <= self.max_image_bytes or m.chunks != expected:
                self.counts["bad_sizes"] += 1
                self._next_peer(out)
                return
            if m.digest != target[1]:  # the peer itself says it holds another state
                self.counts["digest_mismatch"] += 1
                self._next_peer(out)
                return
            self._chunks = m.chunks
            self._total = m.total_bytes
        if (
            m.chunks != self._chunks
            or m.total_bytes != self._total
            or not 0 <= m.chunk < self._chunks
            or m.chunk not in self._asked
            or len(m.data) != min(self.chunk_bytes, self._total - m.chunk * self.chunk_bytes)
        ):
            self.counts["bad_sizes"] += 1
            self._next_peer(out)
            return
        self._asked.discard(m.chunk)
        self._parts[m.chunk] = m.data
        self._progress = True
        self.counts["chunks_received"] += 1
        if len(self._parts) < self._chunks:
            self._fill_window(out)
            return
        data = b"".join(self._parts[i] for i in range(self._chunks))
        self._reset_parts()
        try:
            image = decode_image(data)
        except ImageError:
            self.counts["bad_image"] += 1
            self._next_peer(out)
            return
        if image.seq != target[0] or image.digest() != target[1]:
            self.counts["digest_mismatch"] += 1  # discarded; the next peer is asked
            self._next_peer(out)
            return
        self.counts["images_installed"] += 1
        self.target = None
        out.append(Installed(image, target[1], target[2]))

    # --- serving ------------------------------------------------------------------------
    def _image(self, seq: int) -> tuple[bytes, bytes] | None:
        got = self._served.get(seq)
        if got is None:
            got = self.image_at(seq)
            if got is None:
                return None
            self._served[seq] = got
            self.counts["images_encoded"] += 1
            while len(self._served) > self.max_served:
                self._served.popitem(last=False)
        return got

    def _on_request(self, sender: int, m: StateRequest, out: list[Output]) -> None:
        if sender != m.replica or sender == self.me or not 0 <= sender < self.n:
            self.counts["bad_request"] += 1
            return
        got = self._image(m.seq) if m.seq > 0 else None
        if got is None:
            self.counts["no_image_for_request"] += 1
            out.append(Out(sender, StateChunk(m.seq, m.chunk, 0, 0, b"", b"", self.me)))
            return
        data, digest = got
        chunks = -(-len(data) // self.chunk_bytes)
        if not 0 <= m.chunk < chunks:
            self.counts["bad_request"] += 1
            return
        start = m.chunk * self.chunk_bytes
        piece = data[start : start + self.chunk_bytes]
        self.counts["chunks_served"] += 1
        out.append(
            Out(sender, StateChunk(m.seq, m.chunk, chunks, len(data), digest, piece, self.me))
        )

    def forget_served_below(self, seq: int) -> None:
        """Drop the encoded images of checkpoints before ``seq`` (a newer one is stable)."""
        for s in [s for s in self._served if s < seq]:
            del self._served[s]

    # --- dispatch -----------------------------------------------------------------------
    def receive(self, sender: int, msg: Any) -> list[Output]:
        out: list[Output] = []
        t = type(msg)
        if t is StateRequest:
            self._on_request(sender, msg, out)
        elif t is StateChunk:
            self._on_chunk(sender, msg, out)
        else:
            self.counts["unknown_message"] += 1
        return out


def executor_images(executor: Any) -> ImageSource:
    """``image_at`` for a ``StateTransfer`` serving ``executor``'s kept checkpoint images."""

    def image_at(seq: int) -> tuple[bytes, bytes] | None:
        digest = executor.image_digest(seq)
        if digest is None:
            return None
        return executor.export_image(seq).encode(), digest

    return image_at


__all__ = ["Arm", "Installed", "Out", "StateTransfer", "executor_images"]
