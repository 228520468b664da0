"""The Linux scheduling policy every replica and client process runs under (``run.scheduler``).

``batch`` (the default) puts the process, and so every thread it starts afterwards, ZeroMQ's
I/O threads included, under SCHED_BATCH; ``normal`` leaves SCHED_OTHER. Under SCHED_BATCH a
thread that is woken does not preempt the thread that woke it (sched(7): "this policy will
cause the scheduler to always assume that the thread is CPU-intensive ... mildly disfavored
in scheduling decisions", CFS skips the wake-up preemption for it). That matters for a pipeline
of Python threads: a stage that hands a ring item to a parked peer wakes it while holding the
GIL; under SCHED_OTHER the peer, just woken, often takes the CPU at once, finds the GIL held,
and sleeps again, and the waker waits for the CPU back with the GIL in its hand (measured:
20-40 µs of wall time per wake-up inside ``Ring._wake_consumer``, 4-5 µs of its CPU). Under
SCHED_BATCH the waker runs on until it blocks and the peer then takes a free GIL. The README's
"Scheduling policy" paragraph has the A/B. Priorities are unchanged: SCHED_BATCH is a normal,
unprivileged policy with nice 0.

Must not live here: thread counts, CPU affinity, anything a run's figures are computed from.
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
