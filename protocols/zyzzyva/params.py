"""Zyzzyva's protocol parameters (keys ``zyzzyva_*`` of config/default.yaml's protocol
section), declared once.

``zyzzyva_commit_wait_ms`` is the config's form of ``zyzzyva_commit_wait_ticks`` (the
runtime converts it with protocol.tick_ms); protocol and client read the ticks only
(protocols.params.SHARED_KEYS).

Must not live here: bounds that are not tuning knobs (protocols/limits.py), protocol logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.params import build, param

PREFIX = "zyzzyva_"


@dataclass(frozen=True, slots=True)
class ZyzzyvaParams:
    """Zyzzyva's knobs; ``from_params`` builds them (ValueError naming a bad or unknown key)."""

    commit_wait_ticks: int = param(
        20,
        "ticks a client waits for 3f+1 matching speculative replies before it sends the "
        "commit certificate of 2f+1 (the slow path, SOSP'07 §3.2)",
        minimum=1,
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ZyzzyvaParams:
        return build(cls, params, PREFIX)


__all__ = ["PREFIX", "ZyzzyvaParams"]
