"""Chained HotStuff's protocol parameters (keys ``hotstuff_*`` of config/default.yaml's
protocol section), declared once.

Must not live here: bounds that are not tuning knobs (protocols/limits.py), protocol logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.params import build, param

PREFIX = "hotstuff_"


@dataclass(frozen=True, slots=True)
class HotStuffParams:
    """HotStuff's knobs; ``from_params`` builds them (ValueError naming a bad or unknown key)."""

    batches_per_block: int = param(
        4,
        "client batches (of batching.batch_size requests) a leader merges into one block: "
        "one block per view, so this is how much a view carries",
        minimum=1,
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> HotStuffParams:
        return build(cls, params, PREFIX)


__all__ = ["PREFIX", "HotStuffParams"]
