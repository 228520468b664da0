"""Golden values of the Executor: ledger heads, result digests and state digests of seeded runs,
computed with the code before the execute-path optimisations of issue 16 (commit 11a349a).

Every optimisation of the execute hot path (the element memo of the store accumulator, the
decoder's checks, the serial engine's loop) must leave these bytes unchanged: replicas of
different versions, images and checkpoints taken before, must agree. A deliberate change
of the digest's definition changes these values on purpose (and says so in its commit):
the ledger heads and state digests were re-pinned when the batch digest came to hash each
request's transactions digest instead of its transactions (protocols.common.batch_digest: one
SHA-256 pass over a request per replica); the result digests stayed as they were.
"""

from __future__ import annotations

import hashlib

import pytest

from fabric.runtime.execute import Executor
from fabric.runtime.state_image import StateImage
from protocols.common import Request, make_batch
from workloads.smallbank import SmallbankGenerator
from workloads.txn import encode_txns
from workloads.ycsb import YcsbGenerator, initial_value_fn

RECORDS, VALUE_SIZE, PERIOD = 2_000, 100, 5

GOLDEN = {
    # case: (ledger head, sha256 of every result digest in order, state digest at the end)
    "a": (
        "7ba7f435ce3965bc84f4ee1496f35c4cfc2659f6ecce77b354e94d82ee5ff771",
        "4aca2480b67d456742bbe3cbc8094a71049d8b18dc651bf0bd156419d540a098",
        "5ff036fd448dd0ffabab6243392d4b696b63facc28b97ba8813cf38ad40e9735",
    ),
    "d": (
        "8cfc0aed39755ac254f4c49cd4c1946610491d81539d5ddcb985185f81bf6c46",
        "9048f89f63499cc62318a230c4aa482d2d3b7bc33f2d637a9d0b4df2589cef2c",
        "74246b82bffe117a5aa348bf9a8e183833209446b1f2801d4e552ea0899c1cd1",
    ),
    "e": (
        "ef5ea5440d21abfae009d23be39d40532d0e86c730e147e37bce5e6e61e73dc3",
        "c06b2d3e7f90767aa09d6b8fd603959eff37d484934aba457903b998d524d011",
        "737c8d75b74a05c4164172264bbb6bbc3b0cabf96b3e54df7de5bda4a5976f4a",
    ),
    "f": (
        "ef6135f8aa70109a72e5d86301bfe7f06818fa0ff3d09fefa36c0623f5feadd1",
        "2cfdb3695a9aad2585e6b6fe7e8f5b1b81a0eccb6f1bbdb280f087160487b779",
        "f8abe35495c4fff8efeccfc8c7a2d1f4ae5c799119e146614a160d1e7e7aaa78",
    ),
    "smallbank": (
        "43fdcf34def88f9bd4136f9733bedb94c6af59a80efb0b3ca623ab1a4be084fc",
        "6e401bf8b0aee87f5c82c1d1e8a4c6d13611e4d6d9c17917837bbf7e42bc7373",
        "0f399266e0551242438c1fc46eaed6799e70e0ab49b48526d991bcd4aff8bf3d",
    ),
}


def _requests(case: str, batches: int) -> list[list[Request]]:
    gen = (
        SmallbankGenerator(3, 500, 10, hotspot=0.5)
        if case == "smallbank"
        else YcsbGenerator(seed=3, record_count=RECORDS, value_size=VALUE_SIZE, mix=case)
    )
    out = []
    for s in range(batches):
        # two requests per batch of 50 txns, from three clients, one repeated (a replay)
        reqs = [
            Request(100 + (s + i) % 3, 2 * s + i, encode_txns(gen.next_txns(50)), b"")
            for i in range(2)
        ]
        if s % 7 == 3:
            reqs.append(reqs[0])
        if s % 5 == 1:  # a blob that does not decode: INVALID_RESULT, nothing changes
            reqs.append(Request(104, s, encode_txns([(1, 5, b"x"), (0, -1, None)]), b""))
        out.append(reqs)
    return out


def _run(case: str) -> tuple[str, str, str]:
    """40 batches: speculative ones committed every few, one rollback re-executed, an image
    of a warm store installed first, the state digest at every checkpoint."""
    init = initial_value_fn(VALUE_SIZE)
    ex = Executor(RECORDS, VALUE_SIZE, checkpoint_period=PERIOD, smallbank_accounts=500)
    warm = tuple((k, bytes(reversed(init(k)))) for k in range(0, RECORDS, 3))
    ex.install_image(StateImage(0, hashlib.sha256(b"golden").digest(), warm, ()))
    results = hashlib.sha256()
    digests = hashlib.sha256()
    batches = [make_batch(tuple(r)) for r in _requests(case, 40)]
    seq = 0
    rolled_back = False
    while seq < len(batches):
        seq += 1
        speculative = seq % 4 != 0
        out = ex.apply(seq, batches[seq - 1], speculative)
        if seq == 23 and not rolled_back:  # undo two speculative batches, then redo them
            rolled_back = True
            assert ex.rollback(seq - 2) == 2
            seq -= 2
            continue
        for _, r in out:
            results.update(r)
        if ex.is_checkpoint(seq):
            digests.update(ex.state_digest())
            ex.commit_upto(seq)
    digests.update(ex.state_digest())
    assert ex.state_digest() == ex.export_image().digest()
    return ex.ledger.head.hex(), results.hexdigest(), digests.hexdigest()


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_seeded_run_matches_the_golden_digests(case: str) -> None:
    assert _run(case) == GOLDEN[case]
