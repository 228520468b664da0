"""The wire messages of state transfer (fabric.runtime.state_transfer): a replica that cannot
reach a stable checkpoint by replaying batches asks a peer for the state image at that
checkpoint, one bounded chunk at a time.

STATE-REQUEST asks ``chunk`` of the image at ``seq``; STATE-CHUNK answers with the bytes
of that chunk, how many chunks and bytes the whole image has, and the image's state digest
as the sender claims it (the requester trusts only the digest certified by 2f+1 signed
checkpoints, never this claim: it lets a requester drop a wrong peer early). ``chunks == 0``
says the sender keeps no image at ``seq``. Bounds: protocols/limits.py (STATE_*).

Kinds 200-201 (runtime control, 200-255): state transfer belongs to no one protocol.
Must not live here: the transfer's logic (fabric.runtime.state_transfer), IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from protocols.codec import Max, message
from protocols.common import Digest
from protocols.limits import STATE_CHUNK_BYTES

KIND_STATE_REQUEST = 200
KIND_STATE_CHUNK = 201


@message(KIND_STATE_REQUEST)
@dataclass(frozen=True, slots=True)
class StateRequest:
    """``replica`` asks for chunk ``chunk`` of the state image at checkpoint ``seq``."""

    IS_STATE: ClassVar[bool] = True  # the runtime routes these to the execute stage

    seq: int
    chunk: int
    replica: int


@message(KIND_STATE_CHUNK)
@dataclass(frozen=True, slots=True)
class StateChunk:
    """Chunk ``chunk`` of ``chunks`` of the image at ``seq`` (``total_bytes`` in all)."""

    IS_STATE: ClassVar[bool] = True
    CATCH_UP: ClassVar[bool] = True  # a catch-up answer: the runtime sheds these first

    seq: int
    chunk: int
    chunks: int
    total_bytes: int
    digest: Digest
    data: Annotated[bytes, Max(STATE_CHUNK_BYTES)]
    replica: int


__all__ = ["KIND_STATE_CHUNK", "KIND_STATE_REQUEST", "StateChunk", "StateRequest"]
