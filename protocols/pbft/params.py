"""PBFT's protocol parameters (keys ``pbft_*`` of config/default.yaml's protocol section),
declared once; RCC's instances read them too.

Must not live here: bounds that are not tuning knobs (protocols/limits.py), protocol logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.params import build, param

PREFIX = "pbft_"


@dataclass(frozen=True, slots=True)
class PbftParams:
    """PBFT's knobs; ``from_params`` builds them (ValueError naming a bad or unknown key)."""

    signed_votes: bool = param(
        True,
        "Ed25519-sign pre-prepares and prepares so view-change certificates are transferable; "
        "false: MAC-only votes, the view change counts signed claims (TOCS'02 4.5)",
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PbftParams:
        return build(cls, params, PREFIX)


__all__ = ["PREFIX", "PbftParams"]
