"""The registry's configuration."""
from __future__ import annotations

from dataclasses import dataclass

from services.certificates import domain
from services.common.config import setting_int


@dataclass(frozen=True)
class CertificatesSettings:
    # Reported later than this many days after the assessment: flagged as late reporting.
    late_days: int = domain.DEFAULT_LATE_REPORT_DAYS
    # An operation still PENDING this long after it started was cut short (a crash): the
    # sweep finishes it from what was written. Far above the seconds a 10,000-row batch takes.
    stale_operation_seconds: int = 600


def load_settings(config: dict) -> CertificatesSettings:
    return CertificatesSettings(
        late_days=setting_int(config, "CERT_LATE_REPORT_DAYS", domain.DEFAULT_LATE_REPORT_DAYS,
                              minimum=0))
