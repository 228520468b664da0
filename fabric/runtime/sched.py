"""How the kernel schedules every replica and client process: its policy (``run.scheduler``)
and the CPU it is pinned to (``run.cpu_affinity``).

``batch`` (the default) puts the process, and so every thread it starts afterwards, ZeroMQ's
I/O threads included, under SCHED_BATCH; ``normal`` leaves SCHED_OTHER. Under SCHED_BATCH a
thread that is woken does not preempt the thread that woke it (sched(7): "this policy will
cause the scheduler to always assume that the thread is CPU-intensive ... mildly disfavored
in scheduling decisions", CFS skips the wake-up preemption for it). That matters for a pipeline
of Python threads: a stage that hands a ring item to a parked peer wakes it while holding the
GIL; under SCHED_OTHER the peer, just woken, often takes the CPU at once, finds the GIL held,
and sleeps again, and the waker waits for the CPU back with the GIL in its hand (measured:
20-40 µs of wall time per wake-up inside ``Ring._wake_consumer``, 4-5 µs of its CPU). Under
SCHED_BATCH the waker runs on until it blocks and the peer then takes a free GIL. Priorities
are unchanged: SCHED_BATCH is a normal, unprivileged policy with nice 0.

``run.cpu_affinity: process`` pins each process, with every thread it starts, to one CPU: the
GIL runs one of its threads at a time anyway, and a hand-off between two of them then wakes a
thread on the CPU it is running on instead of an idle one (an inter-processor interrupt: on a
VM a world switch, ~30 µs of CPU per park and wake-up measured here, ``python -m bench floor``).
The node's slot on its machine (its id on one machine; its index among the nodes placed on
its SSH host) picks the CPU, round-robin over those the process may use. ``auto`` (the
default) is ``process`` unless the engines run several threads (``execution.threads`` > 1),
whose GIL-free work needs CPUs of its own. Pinning under SCHED_OTHER is worse than no pinning
(the woken peer preempts the GIL holder on their shared CPU); the two go together. The README's
"Scheduling" paragraph has the measurements.

Must not live here: thread counts, anything a run's figures are computed from.
"""

from __future__ import annotations

import os

#: run.scheduler's values -> the os module's policy constant name
POLICIES = {"batch": "SCHED_BATCH", "normal": "SCHED_OTHER"}


def apply(policy: str) -> None:
    """Put the calling thread (so every thread it starts from now on) under ``policy``.

    Raises ``ValueError`` for a policy not in ``POLICIES`` and ``OSError`` (naming
    run.scheduler) where the platform has no such policy or refuses it."""
    if policy not in POLICIES:
        raise ValueError(f"run.scheduler: {policy!r} is not one of {', '.join(POLICIES)}")
    constant = getattr(os, POLICIES[policy], None)
    setter = getattr(os, "sched_setscheduler", None)
    if constant is None or setter is None:
        if policy == "normal":
            return  # the platform's default is what was asked for
        raise OSError(f"run.scheduler: {policy} needs Linux's {POLICIES[policy]}; use normal here")
    try:
        setter(0, constant, os.sched_param(0))
    except OSError as exc:
        raise OSError(f"run.scheduler: cannot set {POLICIES[policy]}: {exc}") from None


#: run.cpu_affinity's values
AFFINITIES = ("auto", "process", "none")


def pinning(affinity: str, execution_threads: int) -> bool:
    """Whether ``affinity`` (run.cpu_affinity) pins a process to one CPU."""
    if affinity not in AFFINITIES:
        raise ValueError(f"run.cpu_affinity: {affinity!r} is not one of {', '.join(AFFINITIES)}")
    return affinity == "process" or (affinity == "auto" and execution_threads <= 1)


def pin(slot: int) -> int | None:
    """Pin the calling thread (so every thread it starts from now on) to the CPU of ``slot``:
    the slot-th, round-robin, of the CPUs it may use now. Returns that CPU (None where the
    platform cannot pin)."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        return None
    cpus = sorted(getter(0))
    cpu = cpus[slot % len(cpus)]
    try:
        setter(0, {cpu})
    except OSError as exc:
        raise OSError(f"run.cpu_affinity: cannot pin to CPU {cpu}: {exc}") from None
    return cpu


def cpus() -> list[int]:
    """The CPUs the calling thread may run on (empty where the platform does not say)."""
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter is not None else []


def current() -> str:
    """The calling thread's policy as a run.scheduler value ('other:N' for any other)."""
    getter = getattr(os, "sched_getscheduler", None)
    if getter is None:
        return "normal"
    policy = getter(0)
    for name, constant in POLICIES.items():
        if getattr(os, constant, None) == policy:
            return name
    return f"other:{policy}"
