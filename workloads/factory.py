"""Which generator a ``workload:`` section asks for (``workload.kind: ycsb | smallbank``).

Must not live here: the generators themselves (workloads.ycsb, workloads.smallbank).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workloads.smallbank import SmallbankGenerator
from workloads.ycsb import YcsbGenerator

WORKLOAD_KINDS = ("ycsb", "smallbank")


def make_generator(
    workload_cfg: Any, seed: int, insert_lane: int = 0, insert_lanes: int = 1
) -> YcsbGenerator | SmallbankGenerator:
    """A seeded generator for the section's ``kind`` (YCSB when the section names none).

    ``insert_lane`` of ``insert_lanes`` only matters to YCSB (SmallBank never inserts).
    """
    if isinstance(workload_cfg, Mapping):
        kind = workload_cfg.get("kind", "ycsb")
    else:
        kind = getattr(workload_cfg, "kind", "ycsb")
    if kind == "ycsb":
        return YcsbGenerator.from_config(workload_cfg, seed, insert_lane, insert_lanes)
    if kind == "smallbank":
        return SmallbankGenerator.from_config(workload_cfg, seed)
    raise ValueError(f"unknown workload kind {kind!r}: {' | '.join(WORKLOAD_KINDS)}")
