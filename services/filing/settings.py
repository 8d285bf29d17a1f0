"""Filing's configuration: the city's areas, the province code, the working-day calendar."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from nameko.extensions import DependencyProvider

from services.common.workdays import WorkdayCalendar, load_calendar
from services.filing.domain import ANYANG_AREAS


@dataclass(frozen=True)
class FilingSettings:
    areas: dict            # GB/T 2260 code -> (name, "district" | "county")
    province_code: str     # first two digits of GB/T 2260, e.g. "41" Henan
    calendar: WorkdayCalendar


def load_areas(path: str | None) -> dict:
    """A JSON file {"410502": ["文峰区", "district"], ...} replaces the Anyang default."""
    if not path:
        return dict(ANYANG_AREAS)
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    areas = {}
    for code, (name, kind) in raw.items():
        if kind not in ("district", "county"):
            raise ValueError(f"area {code}: kind must be district or county, not {kind!r}")
        areas[str(code)] = (name, kind)
    return areas


def load_settings(config: dict) -> FilingSettings:
    province = str(config.get("PROVINCE_CODE") or "41")
    if not re.fullmatch(r"\d{2}", province):
        raise ValueError(f"PROVINCE_CODE must be 2 digits, not {province!r}")
    return FilingSettings(areas=load_areas(config.get("FILING_AREAS_FILE")),
                          province_code=province, calendar=load_calendar())


class SettingsProvider(DependencyProvider):
    def setup(self):
        self.settings = load_settings(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.settings
