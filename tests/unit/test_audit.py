"""fabric.analysis.audit: honest ledgers agree on the common prefix; divergence, gaps and missing ledgers fail."""

from __future__ import annotations

from fabric.analysis.audit import AuditResult, audit_ledgers
from fabric.runtime.execute import Executor
from protocols.common import Request, make_batch
from workloads.txn import UPDATE, encode_txns


def chain_of(batches: list[bytes]) -> list[tuple[int, bytes]]:
    """A real ledger chain: one executor applies one single-request batch per payload."""
    ex = Executor(record_count=10, value_size=8)
    for seq, value in enumerate(batches, 1):
        req = Request(9, seq, encode_txns([(UPDATE, seq % 10, value)]), b"")
        ex.apply(seq, make_batch((req,)))
    return ex.ledger.chain()


VALUES = [b"v%d" % i for i in range(10)]


def test_agreement_with_different_lengths() -> None:
    chains = {
        0: chain_of(VALUES),
        1: chain_of(VALUES),
        2: chain_of(VALUES[:7]),
        3: chain_of(VALUES),
    }
    res = audit_ledgers(chains)
    assert isinstance(res, AuditResult)
    assert res.ok, res.message
    assert res.common_prefix == 7
    assert res.first_divergence is None
    assert res.heads[2] == (7, chains[2][-1][1].hex())
    assert res.heads[0] == (10, chains[0][-1][1].hex())


def test_divergence_located() -> None:
    forked = VALUES[:4] + [b"other"] + VALUES[5:]
    chains = {0: chain_of(VALUES), 1: chain_of(VALUES), 2: chain_of(forked), 3: chain_of(VALUES)}
    res = audit_ledgers(chains)
    assert not res.ok
    assert res.first_divergence is not None
    seq, hashes = res.first_divergence
    assert seq == 5
    assert set(hashes) == {0, 1, 2, 3}
    assert hashes[2] == chains[2][4][1].hex() != hashes[0]
    assert "seq 5" in res.message


def test_divergence_in_the_last_common_block() -> None:
    chains = {0: chain_of(VALUES[:6]), 1: chain_of(VALUES[:5] + [b"x"] + VALUES[6:])}
    res = audit_ledgers(chains)
    assert not res.ok and res.first_divergence is not None and res.first_divergence[0] == 6


def test_longer_ledger_beyond_prefix_is_not_a_divergence() -> None:
    chains = {0: chain_of(VALUES[:5]), 1: chain_of(VALUES[:5] + [b"later", b"more"])}
    res = audit_ledgers(chains)
    assert res.ok and res.common_prefix == 5


def test_gap_caught() -> None:
    good = chain_of(VALUES)
    gapped = good[:3] + good[4:]
    res = audit_ledgers({0: good, 1: gapped, 2: good})
    assert not res.ok
    assert "replica 1" in res.message and "gap" in res.message


def test_chain_must_start_at_seq_one() -> None:
    good = chain_of(VALUES)
    res = audit_ledgers({0: good, 1: good[1:]})
    assert not res.ok and "replica 1" in res.message


def test_duplicate_seq_caught() -> None:
    good = chain_of(VALUES)
    res = audit_ledgers({0: good, 1: good[:3] + [good[2]] + good[3:]})
    assert not res.ok and "replica 1" in res.message


def test_malformed_entry_caught() -> None:
    good = chain_of(VALUES)
    res = audit_ledgers({0: good, 1: good[:2] + [(3, 12345)]})  # type: ignore[list-item]
    assert not res.ok and "replica 1" in res.message


def test_honest_subset_respected() -> None:
    forked = [b"byzantine"] + VALUES[1:]
    good = chain_of(VALUES)
    chains = {0: good, 1: good, 2: good, 3: chain_of(forked)}
    assert not audit_ledgers(chains).ok
    res = audit_ledgers(chains, honest=[0, 1, 2])
    assert res.ok, res.message
    assert 3 in res.heads  # reported, just not judged
    gapped = {0: good, 1: good, 2: good, 3: good[:2] + good[5:]}
    assert audit_ledgers(gapped, honest={0, 1, 2}).ok


def test_honest_replica_without_ledger_fails() -> None:
    good = chain_of(VALUES)
    res = audit_ledgers({0: good, 1: good}, honest=[0, 1, 2])
    assert not res.ok and "replica 2" in res.message


def test_no_honest_ledgers_is_not_ok() -> None:
    assert not audit_ledgers({}).ok
    assert not audit_ledgers({0: chain_of(VALUES)}, honest=[]).ok


def test_empty_ledgers_agree_with_prefix_zero() -> None:
    res = audit_ledgers({0: [], 1: [], 2: chain_of(VALUES[:2])})
    assert res.ok and res.common_prefix == 0 and res.heads[0] == (0, "")


def test_hex_strings_accepted() -> None:
    good = chain_of(VALUES)
    as_hex = [(seq, h.hex()) for seq, h in good]
    assert audit_ledgers({0: good, 1: as_hex}).ok
    bad = as_hex[:3] + [(4, "00" * 32)] + as_hex[4:]
    res = audit_ledgers({0: good, 1: bad})
    assert not res.ok and res.first_divergence is not None and res.first_divergence[0] == 4


def test_hex_case_does_not_matter() -> None:
    good = chain_of(VALUES)
    upper = [(seq, h.hex().upper()) for seq, h in good]
    assert audit_ledgers({0: good, 1: upper}).ok


def test_an_empty_shortest_ledger_is_not_reported_as_all_empty() -> None:
    # the null baseline: only replica 0 executes, the others hold nothing
    chains = {0: [(1, b"\x01" * 32), (2, b"\x02" * 32)], 1: [], 2: []}
    result = audit_ledgers(chains)
    assert result.ok and result.common_prefix == 0
    assert "all empty" not in result.message
    assert "longest holds 2" in result.message
    assert "all empty" in audit_ledgers({0: [], 1: []}).message


# --- a replica installed from a snapshot (state transfer after a restart) ------------------


def test_a_snapshot_replica_is_compared_from_its_base_and_the_message_says_so() -> None:
    good = chain_of(VALUES)
    base_seq, base_hash = good[3]  # its state was installed at seq 4: it holds 5..10 only
    chains = {0: good, 1: good, 2: good[4:], 3: good[:8]}
    res = audit_ledgers(chains, bases={2: (base_seq, base_hash)})
    assert res.ok, res.message
    assert res.common_prefix == 8
    assert "replica 2 compared from seq 4" in res.message and "snapshot" in res.message
    # without its base the same chain is a gap at the start
    assert not audit_ledgers(chains).ok


def test_a_snapshot_whose_base_hash_disagrees_is_a_divergence_at_the_base() -> None:
    good = chain_of(VALUES)
    forked = chain_of(VALUES[:3] + [b"other"] + VALUES[4:])
    res = audit_ledgers({0: good, 1: good, 2: good[4:]}, bases={2: (4, forked[3][1])})
    assert not res.ok and res.first_divergence is not None
    assert res.first_divergence[0] == 4 and "seq 4" in res.message


def test_a_snapshot_replica_that_diverges_later_is_caught() -> None:
    good = chain_of(VALUES)
    forked = chain_of(VALUES[:6] + [b"other"] + VALUES[7:])
    res = audit_ledgers({0: good, 1: good, 2: forked[4:]}, bases={2: good[3]})
    assert not res.ok and res.first_divergence is not None and res.first_divergence[0] == 7


def test_a_snapshot_chain_must_start_right_after_its_base() -> None:
    good = chain_of(VALUES)
    res = audit_ledgers({0: good, 1: good[5:]}, bases={1: good[3]})
    assert not res.ok and "replica 1" in res.message and "not 5" in res.message
