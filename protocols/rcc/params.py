"""RCC's protocol parameters (keys ``rcc_*`` of config/default.yaml's protocol section),
declared once. Its PBFT instances read PBFT's (protocols/pbft/params.py) from the same map.

``rcc_noop_timeout_ms`` is the config's form of ``rcc_noop_ticks`` (the runtime converts
it with protocol.tick_ms); the protocol reads the ticks only (protocols.params.SHARED_KEYS).

Must not live here: bounds that are not tuning knobs (protocols/limits.py), protocol logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.params import build, param

PREFIX = "rcc_"
#: rcc_noop_ticks = 0: a no-op after the view-change timeout divided by this (at least 1)
NOOP_TICKS_DIVISOR = 20
#: rcc_max_lag_rounds = 0: rounds an instance may lag are the watermark window divided by this
LAG_ROUNDS_DIVISOR = 2


@dataclass(frozen=True, slots=True)
class RccParams:
    """RCC's knobs; ``from_params`` builds them (ValueError naming a bad or unknown key)."""

    instances: int = param(0, "concurrent PBFT instances m, 1..n; 0 = n", minimum=0)
    permute_rounds: bool = param(
        True, "permute the instances' order per round (against ordering attacks)"
    )
    noop_ticks: int = param(
        0,
        "ticks an instance primary with nothing to propose waits before a no-op; "
        "0 = view-change timeout / 20",
        minimum=0,
    )
    max_lag_rounds: int = param(
        0, "rounds an instance may lag the others before it is suspected; 0 = window / 2", minimum=0
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RccParams:
        return build(cls, params, PREFIX)


__all__ = ["LAG_ROUNDS_DIVISOR", "NOOP_TICKS_DIVISOR", "PREFIX", "RccParams"]
