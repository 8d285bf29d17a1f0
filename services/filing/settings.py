"""Filing's configuration: the city's areas, the province code, the working-day calendar,
the quotas and the urgently needed occupations. Read once when the worker starts, so a bad
value stops it there rather than at the first call."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from services.common.config import setting, setting_int
from services.common.workdays import WorkdayCalendar, load_calendar
from services.filing import domain


@dataclass(frozen=True)
class FilingSettings:
    # GB/T 2260 code -> (name, "district" | "county")
    areas: dict = field(default_factory=lambda: dict(domain.ANYANG_AREAS))
    province_code: str = "41"     # first two digits of GB/T 2260, e.g. "41" Henan
    calendar: WorkdayCalendar = field(default_factory=WorkdayCalendar)
    # City-wide quota per year (ch.6 art.5, "adjusted yearly"); "default" for other years.
    city_quotas: dict = field(default_factory=lambda: {"default": domain.CITY_QUOTA_DEFAULT})
    district_quota: int = domain.DISTRICT_QUOTA
    county_quota: int = domain.COUNTY_QUOTA
    # Urgently needed occupations (急需紧缺): relaxed conditions, first in selection.
    urgent_occupations: frozenset = frozenset()
    urgent_min_years: int = domain.URGENT_MIN_HISTORY_YEARS
    urgent_min_person_times: int = domain.URGENT_MIN_PERSON_TIMES_3Y

    def city_quota(self, year: int) -> int:
        return int(self.city_quotas.get(str(year), self.city_quotas.get(
            "default", domain.CITY_QUOTA_DEFAULT)))

    def quota_limit(self, area: str) -> int:
        return domain.quota_limit(area, self.district_quota, self.county_quota)


def load_areas(path: str | None) -> dict:
    """A JSON file {"410502": ["文峰区", "district"], ...} replaces the Anyang default."""
    if not path:
        return dict(domain.ANYANG_AREAS)
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    areas = {}
    for code, (name, kind) in raw.items():
        if kind not in ("district", "county"):
            raise ValueError(f"area {code}: kind must be district or county, not {kind!r}")
        areas[str(code)] = (name, kind)
    return areas


def parse_city_quotas(value) -> dict:
    """40, "40", or {"default": 40, "2026": 42} (JSON text or a dict)."""
    if value is None or value == "":
        return {"default": domain.CITY_QUOTA_DEFAULT}
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, int):
        value = {"default": value}
    quotas = {str(k): int(v) for k, v in dict(value).items()}
    if any(v < 1 for v in quotas.values()):
        raise ValueError("FILING_CITY_QUOTA: quotas must be positive")
    quotas.setdefault("default", domain.CITY_QUOTA_DEFAULT)
    return quotas


def parse_codes(value) -> frozenset:
    """A list, or comma-separated text, of occupation codes."""
    if not value:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(str(i).strip() for i in items if str(i).strip())


def load_settings(config: dict) -> FilingSettings:
    province = str(setting(config, "PROVINCE_CODE") or "41")
    if not re.fullmatch(r"\d{2}", province):
        raise ValueError(f"PROVINCE_CODE must be 2 digits, not {province!r}")
    return FilingSettings(
        areas=load_areas(setting(config, "FILING_AREAS_FILE")),
        province_code=province, calendar=load_calendar(),
        city_quotas=parse_city_quotas(setting(config, "FILING_CITY_QUOTA")),
        district_quota=setting_int(config, "FILING_DISTRICT_QUOTA", domain.DISTRICT_QUOTA,
                                   minimum=0),
        county_quota=setting_int(config, "FILING_COUNTY_QUOTA", domain.COUNTY_QUOTA, minimum=0),
        urgent_occupations=parse_codes(setting(config, "FILING_URGENT_OCCUPATIONS")),
        urgent_min_years=setting_int(config, "FILING_URGENT_MIN_YEARS",
                                     domain.URGENT_MIN_HISTORY_YEARS, minimum=0),
        urgent_min_person_times=setting_int(config, "FILING_URGENT_MIN_PERSON_TIMES",
                                            domain.URGENT_MIN_PERSON_TIMES_3Y, minimum=0))
