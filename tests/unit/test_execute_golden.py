"""Golden values of the Executor: ledger heads, result digests and state digests of seeded runs,
computed with the code before the execute-path optimisations of issue 16 (commit 11a349a).

Every optimisation of the execute hot path (the element memo of the store accumulator, the
decoder's checks, the serial engine's loop) must leave these bytes unchanged: replicas of
different versions, images and checkpoints taken before, must agree. A deliberate change
of the digest's definition changes these values on purpose (and says so in its commit).
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
        "eb15591314a27a50a08fb60a279cd493888b22ff6bc8fe47a8cd1bf477f8d942",
        "4aca2480b67d456742bbe3cbc8094a71049d8b18dc651bf0bd156419d540a098",
        "3762fe7792838c9fd1a69b6fd7d1a98ceda0e86cf72dcd33b12cd786280c954c",
    ),
    "d": (
        "17ceb4c111d3c342651685523dd5074d4ed24f66c9afac63f8fd48330551b9ff",
        "9048f89f63499cc62318a230c4aa482d2d3b7bc33f2d637a9d0b4df2589cef2c",
        "ffcee4006e1b94ca5c0fba96c3f5456d768a73454319e0c39ae72551f862bfe0",
    ),
    "e": (
        "491939e2f0d950d72bd97ee740bc3e08877e9b6346d21314bf644e3f557e23cc",
        "c06b2d3e7f90767aa09d6b8fd603959eff37d484934aba457903b998d524d011",
        "2841995179598a239cd0324ce7489adce6a70ee50cce4d11df1149e25473bcd9",
    ),
    "f": (
        "6f951a8d33b4d196dbb8804616b7fcc2f871a02f5c24db9481bfc8224c431949",
        "2cfdb3695a9aad2585e6b6fe7e8f5b1b81a0eccb6f1bbdb280f087160487b779",
        "5085bfa4c6c4ec21f8170260531bb57918a8052a5f08711dc1f04a6ed26ced8a",
    ),
    "smallbank": (
        "04bb27eeadda754eb0215f367873b5c3d4c7181bdbd1bd621726826d80e30d32",
        "6e401bf8b0aee87f5c82c1d1e8a4c6d13611e4d6d9c17917837bbf7e42bc7373",
        "850aa4464c521425a620778407cc73c90939f9642edb0779fb62ba1a32872a5a",
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
