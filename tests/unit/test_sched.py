"""run.scheduler (fabric.runtime.sched): the policy reaches the calling thread and every thread
it starts afterwards, and a bad value is refused naming the key."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from fabric.harness.config import ConfigError, load_config
from fabric.runtime import sched

linux_only = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's (os.SCHED_BATCH absent)"
)


def _in_thread(policy: str) -> tuple[str, str]:
    """Apply ``policy`` in a fresh thread; return its policy and its child thread's."""
    seen: dict[str, str] = {}

    def child() -> None:
        seen["child"] = sched.current()

    def parent() -> None:
        sched.apply(policy)
        seen["parent"] = sched.current()
        t = threading.Thread(target=child)
        t.start()
        t.join()

    t = threading.Thread(target=parent)
    t.start()
    t.join()
    return seen["parent"], seen["child"]


@linux_only
def test_batch_reaches_the_thread_and_the_threads_it_starts_not_the_others() -> None:
    before = sched.current()
    assert _in_thread("batch") == ("batch", "batch")
    assert sched.current() == before  # only the calling thread changed
    assert _in_thread("normal") == ("normal", "normal")


def test_an_unknown_policy_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"run\.scheduler: 'fifo' is not one of batch, normal"):
        sched.apply("fifo")


def test_the_config_refuses_a_bad_value_and_defaults_to_batch() -> None:
    cfg = load_config("config/default.yaml")
    assert cfg.run.scheduler == "batch"
    assert cfg.with_overrides(["run.scheduler=normal"]).run.scheduler == "normal"
    with pytest.raises(ConfigError, match=r"run\.scheduler.*allowed: batch \| normal"):
        cfg.with_overrides(["run.scheduler=realtime"])


@pytest.mark.skipif(sys.platform != "linux", reason="the policy is read from /proc")
def test_the_kernel_reports_the_policy_applied() -> None:
    def body(out: list[str]) -> None:
        sched.apply("batch")
        tid = threading.get_native_id()
        with open(f"/proc/self/task/{tid}/sched") as f:
            out.extend(line for line in f if line.startswith("policy"))

    out: list[str] = []
    t = threading.Thread(target=body, args=(out,))
    t.start()
    t.join()
    assert out and out[0].split(":")[1].strip() == str(os.SCHED_BATCH)


def test_pinning_follows_run_cpu_affinity() -> None:
    assert sched.pinning("process", 1) and sched.pinning("process", 4)
    assert sched.pinning("auto", 1) and not sched.pinning("auto", 2)  # engines' threads
    assert not sched.pinning("none", 1)
    with pytest.raises(ValueError, match=r"run\.cpu_affinity: 'all' is not one of"):
        sched.pinning("all", 1)
    cfg = load_config("config/default.yaml")
    assert cfg.run.cpu_affinity == "auto"
    with pytest.raises(ConfigError, match=r"run\.cpu_affinity.*allowed: auto \| process \| none"):
        cfg.with_overrides(["run.cpu_affinity=cores"])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_pin_takes_the_slots_cpu_round_robin_and_threads_started_after_inherit_it() -> None:
    allowed = sorted(os.sched_getaffinity(0))

    def parent(slot: int, seen: dict[str, object]) -> None:
        seen["cpu"] = sched.pin(slot)
        seen["parent"] = sched.cpus()
        t = threading.Thread(target=lambda: seen.update(child=sched.cpus()))
        t.start()
        t.join()

    for slot in range(len(allowed) + 2):
        seen: dict[str, object] = {}
        t = threading.Thread(target=parent, args=(slot, seen))
        t.start()
        t.join()
        cpu = allowed[slot % len(allowed)]
        assert seen == {"cpu": cpu, "parent": [cpu], "child": [cpu]}
    assert sorted(os.sched_getaffinity(0)) == allowed  # the calling thread alone was pinned


def test_each_ssh_node_gets_its_index_among_the_nodes_on_its_host_as_slot() -> None:
    from fabric.harness.hosts import HostSpec, Plan
    from fabric.harness.remote import Launcher

    hosts = tuple(
        HostSpec(f"u@h{i}", "u", f"10.0.0.{i}", 22, "", "python3", "/w", 0) for i in (1, 2)
    )
    launcher = Launcher(load_config("config/default.yaml"), Plan(hosts, (0, 1, 0, 1, 0)))
    launcher.trees = {0: "/w/t", 1: "/w/t"}
    launcher.run_dirs = {0: "/w/r", 1: "/w/r"}
    slots = [
        launcher.command(node, "replica", False).split("--slot ")[1].split()[0] for node in range(5)
    ]
    assert slots == ["0", "0", "1", "1", "2"]
