"""The escrow service's configuration, read once when the worker starts (a bad value stops it
there). Every default is a rule of the prepaid-fee defaults (seed 000), pinned by a test."""
from __future__ import annotations

from dataclasses import dataclass

from services.common.config import setting_int
from services.escrow.domain import rules


@dataclass(frozen=True)
class EscrowSettings:
    # One charge covers at most this many class hours ...
    max_hours_per_charge: int = rules.MAX_HOURS_PER_CHARGE
    # ... and at most this many months of classes.
    max_months_per_charge: int = rules.MAX_MONTHS_PER_CHARGE
    # The whole amount back when no lesson was taken within this many days of signing.
    cooling_off_days: int = rules.COOLING_OFF_DAYS
    # A money movement still PENDING this long after it started, its worker gone, is finished
    # by the sweep (from the transfers it wrote down first).
    stale_op_seconds: int = 30


def load_settings(config: dict) -> EscrowSettings:
    return EscrowSettings(
        max_hours_per_charge=setting_int(config, "ESCROW_MAX_HOURS_PER_CHARGE",
                                         rules.MAX_HOURS_PER_CHARGE, minimum=1),
        max_months_per_charge=setting_int(config, "ESCROW_MAX_MONTHS_PER_CHARGE",
                                          rules.MAX_MONTHS_PER_CHARGE, minimum=1),
        cooling_off_days=setting_int(config, "ESCROW_COOLING_OFF_DAYS", rules.COOLING_OFF_DAYS,
                                     minimum=0),
        stale_op_seconds=setting_int(config, "ESCROW_STALE_OP_SECONDS", 30, minimum=1))
