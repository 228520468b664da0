"""A durable ledger on a real cluster (issue 12 items 2 and 6, "Bad input"): every replica's
file recovers to the chain it executed, a full ledger file fails the run loudly naming the
replica, and a replica whose ledger was corrupted refuses to start, naming file and block.

Each cluster runs a few seconds on free loopback ports (tests/conftest.py); every process the
runner starts is gone when the test ends (the ``spawned`` fixture, tests/integration/conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fabric.harness import runner
from fabric.harness.config import dump_config, load_config
from fabric.harness.paths import RunPaths
from fabric.runtime import replica as replica_process
from fabric.runtime.execute import Executor
from fabric.runtime.stages.persist import decode_proof
from fabric.runtime.storage import ledger_file, open_store
from fabric.runtime.storage.recovery import recover_into

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _config(base_port: int, *extra: str):
    return load_config(
        None,
        [f"transport.base_port={base_port}", "run.duration_s=4", "run.warmup_s=1", *extra],
    )


def test_every_replica_ledger_file_recovers_the_chain_it_executed(base_port, tmp_path, spawned):
    cfg = _config(base_port, "ledger.storage=sqlite", "ledger.sync=batch")
    outcome = runner.run_experiment(cfg, tmp_path, label="sqlite", report=False)
    assert outcome.ok, outcome.reason
    paths = RunPaths(outcome.folder)
    for i in cfg.replica_ids:
        stats = json.loads(paths.replica_stats(i).read_text())
        persist = stats["persist"]
        assert persist["storage"] == "sqlite" and persist["persisted_seq"] > 0
        assert stats["recovered"] == {"seq": 0, "blocks": 0, "base_seq": 0, "checkpoint_seq": None}
        assert any(t["role"] == "persist" for t in stats["threads"])  # its idleness line
        store = open_store("sqlite", ledger_file(paths.replica_dir(i), "sqlite"))
        ex = Executor(cfg.workload.record_count, cfg.workload.value_size)
        got = recover_into(ex, store)
        store.close()
        chain = [[s, h.hex()] for s, h in ex.ledger.chain()]
        # a clean stop persists everything executed (or all but the chunk in hand at the stop)
        assert got.seq == persist["persisted_seq"] >= stats["executed_seq"] - 128
        assert chain == stats["ledger"][: got.seq]
        assert got.checkpoint is not None and got.checkpoint.seq <= got.seq
        votes = decode_proof(got.checkpoint.proof)  # the certificate: 2f+1 signed votes
        assert len(votes) == 2 * cfg.f + 1 and len({v.replica for v in votes}) == len(votes)
        assert all(
            (v.seq, v.state_digest) == (got.checkpoint.seq, got.checkpoint.digest) for v in votes
        )


def test_a_full_ledger_file_fails_the_run_naming_the_replica(base_port, tmp_path, spawned):
    cfg = _config(base_port, "ledger.storage=lmdb", "ledger.max_file_mb=1", "run.duration_s=15")
    outcome = runner.run_experiment(cfg, tmp_path, label="full", report=False)
    assert not outcome.ok
    named = re.search(r"replica (\d) stage failed: persist: \S*StorageFullError", outcome.reason)
    assert named, outcome.reason
    victim = int(named.group(1))
    path = ledger_file(RunPaths(outcome.folder).replica_dir(victim), "lmdb")
    assert f"{path}: ledger.max_file_mb (1 MiB) full" in outcome.reason
    summary = json.loads(RunPaths(outcome.folder).summary.read_text())
    assert summary["run"]["status"] == "failed"


def test_a_corrupt_ledger_refuses_the_start_naming_file_and_block(
    base_port, tmp_path, capsys
) -> None:
    cfg = _config(base_port, "ledger.storage=sqlite")
    run_dir = tmp_path / "run"
    path = ledger_file(RunPaths(run_dir).replica_dir(1), "sqlite")
    store = open_store("sqlite", path)
    ex = Executor(100, 8, record_changes=True)
    from fabric.runtime.stages.persist import block_record
    from protocols.common import Request, make_batch
    from workloads.txn import UPDATE, encode_txns

    for seq in range(1, 21):
        ex.apply(seq, make_batch((Request(9, seq, encode_txns([(UPDATE, seq, b"v")]), b""),)))
    store.write([block_record((0, *e)) for e in ex.take_final()])
    store.close()
    victim = ex.ledger.recent_blocks()[11]  # block 12
    data = bytearray(Path(path).read_bytes())
    at = data.find(victim.batch_digest)  # unique to block 12
    assert at >= 0
    data[at] ^= 1
    Path(path).write_bytes(bytes(data))
    config_path = tmp_path / "config.yaml"
    dump_config(cfg, config_path)
    code = replica_process.main(
        ["--config", str(config_path), "--id", "1", "--run-dir", str(run_dir), "--restart"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"replica 1: cannot start: {path}: ledger refused at block 12" in err, err


# sqlite only on a cluster (13 s): both backends survive a SIGKILL mid-write in
# tests/unit/test_storage.py::test_a_writer_killed_mid_write_leaves_a_ledger_that_recovers
@pytest.mark.parametrize("storage", ["sqlite"])
def test_a_restarted_backup_reloads_its_ledger_then_its_file_holds_the_cluster_chain(
    base_port, tmp_path, spawned, storage
):
    """failure kind restart with a durable ledger: the second life starts from what the first
    persisted (recovered seq > 0), catches up (block fetch or a snapshot, which the store
    then keeps as its base), the run is OK, and after the run its file recovers exactly the
    primary's chain from its base on."""
    cfg = _config(
        base_port,
        f"ledger.storage={storage}",
        "run.duration_s=9",
        "failures=[{replica: 2, at_s: 2, kind: restart, down_s: 2}]",
    )
    outcome = runner.run_experiment(cfg, tmp_path, label=f"restart-{storage}", report=False)
    assert outcome.status == "ok", f"{outcome.status}: {outcome.reason}"
    paths = RunPaths(outcome.folder)
    second = json.loads(paths.replica_stats(2).read_text())  # the second life's stats
    assert second["restarted"] and second["recovered"]["seq"] > 0
    assert second["executed_seq"] > second["recovered"]["seq"]
    primary = json.loads(paths.replica_stats(0).read_text())
    store = open_store(storage, ledger_file(paths.replica_dir(2), storage))
    ex = Executor(cfg.workload.record_count, cfg.workload.value_size)
    got = recover_into(ex, store)
    store.close()
    assert got.seq == second["persist"]["persisted_seq"] > second["recovered"]["seq"]
    chain = [[s, h.hex()] for s, h in ex.ledger.chain()]
    assert chain == primary["ledger"][got.base_seq : got.seq]
