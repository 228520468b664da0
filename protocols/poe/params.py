"""PoE's protocol parameters (keys ``poe_*`` of config/default.yaml's protocol section),
declared once.

Must not live here: bounds that are not tuning knobs (protocols/limits.py), protocol logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.params import build, param

PREFIX = "poe_"
CERTIFICATE_MODES = ("signatures", "macs")


@dataclass(frozen=True, slots=True)
class PoeParams:
    """PoE's knobs; ``from_params`` builds them (ValueError naming a bad or unknown key)."""

    certificate: str = param(
        "signatures",
        "signatures: n-f Ed25519 shares per batch, linear SUPPORT; macs: all-to-all SUPPORT, "
        "no signature per batch, the view change counts signed claims",
        choices=CERTIFICATE_MODES,
    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PoeParams:
        return build(cls, params, PREFIX)


__all__ = ["CERTIFICATE_MODES", "PREFIX", "PoeParams"]
