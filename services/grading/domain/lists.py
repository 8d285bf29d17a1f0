"""The red and black lists, credit repair and the rewards of the integrity file.

- Seed 000: "对评估结果为A类的培训机构 ... 予以激励,包括组织公开宣传、向政府相关部门推荐评优表彰、支持并
  推荐申请教育培训类财政性资金和项目、支持并推荐与社会组织开展商务合作": grade A is the red list,
  with those four incentives recorded; "严重违法 ... 予以公开曝光" and seed 003's 红黑榜: a serious
  violation (a tier-4 sanction, a decision asking for it, or a direct-D offence) is the black list.
- The black list's publication (the project's default after NDRC Order 58 on serious untrustworthiness): at least
  3 months, at most 3 years from the decision; credit repair (信用修复, seed 000) may be applied
  for after the minimum, with proof of rectification; approved, the entry leaves publication
  and the integrity file keeps everything.
- Seed 001 ch.7 art.1: praised three years running (1); over 4,000 person-times in one
  occupation in a year, or over 10,000 certificates in a year (2). The platform counts
  certificates issued (CertificatesIssued) as the person-times evaluated: a certificate is an
  evaluation passed, the only count the registry reports, so the reward is never given on
  evaluations the platform cannot see. (3) and (4) are entered by the regulator.
"""
from __future__ import annotations

import calendar
from datetime import date

__all__ = [
    "RED_INCENTIVES", "BLACK_MIN_MONTHS", "BLACK_MAX_MONTHS", "BLACK_DEFAULT_MONTHS",
    "add_months", "publish_until", "repair_from", "repair_refusal", "serious",
    "REWARD_CERTIFICATES", "REWARD_OCCUPATION", "rewards_due", "praised_running",
    "PRAISED_YEARS", "RED", "BLACK", "LISTED", "REMOVED",
]

RED, BLACK = "RED", "BLACK"
LISTED, REMOVED = "LISTING_STATE_LISTED", "LISTING_STATE_REMOVED"

RED_INCENTIVES = (
    "公开宣传 (publicity)",
    "向政府相关部门推荐评优表彰 (recommendation for awards)",
    "支持并推荐申请教育培训类财政性资金和项目 (recommendation for public funds and projects)",
    "支持并推荐与社会组织开展商务合作 (recommendation for business cooperation)",
)

BLACK_MIN_MONTHS = 3
BLACK_MAX_MONTHS = 36
# Published for the longest period unless the regulator's configuration says otherwise
# (GRADING_BLACK_LIST_MONTHS): serious untrustworthiness is published up to 3 years.
BLACK_DEFAULT_MONTHS = 36

# 001 ch.7 art.1(2): "单一职业(工种)认定超4000人次,年认定取证超10000人次" (strictly over).
REWARD_OCCUPATION = 4000
REWARD_CERTIFICATES = 10000
# 001 ch.7 art.1(1): "连续三年被通报表扬".
PRAISED_YEARS = 3


def add_months(start: date, months: int) -> date:
    """The same day `months` later (the month's last day when it has no such day)."""
    month = start.month - 1 + months
    year, month = start.year + month // 12, month % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def publish_until(decided_on: date, months: int = BLACK_DEFAULT_MONTHS) -> date:
    months = min(max(months, BLACK_MIN_MONTHS), BLACK_MAX_MONTHS)
    return add_months(decided_on, months)


def repair_from(decided_on: date) -> date:
    return add_months(decided_on, BLACK_MIN_MONTHS)


def repair_refusal(state: str, listed_on: date, today: date, pending: bool) -> str | None:
    """Why credit repair cannot be applied for now, or None."""
    if state != LISTED:
        return "the entry is no longer published"
    if pending:
        return "an application for this entry is pending"
    earliest = repair_from(listed_on)
    if today < earliest:
        return (f"credit repair may be applied for from {earliest.isoformat()} "
                f"({BLACK_MIN_MONTHS} months after the decision of {listed_on.isoformat()})")
    return None


def serious(tier: str, black_list: bool) -> bool:
    """A sanction that puts the institution on the black list: tier 4 (filing terminated) or
    a decision that asks for it."""
    return black_list or tier == "SANCTION_TIER_TERMINATION"


def rewards_due(year: int, total: int, by_occupation: dict[str, int]) -> list[tuple[str, str]]:
    """(key, summary) of the ch.7 art.1(2) rewards a year's certificate counts earn."""
    due = []
    for occupation, count in sorted(by_occupation.items()):
        if count > REWARD_OCCUPATION:
            due.append((f"occupation:{year}:{occupation}",
                        f"{count} certificates in occupation {occupation} in {year} (over "
                        f"{REWARD_OCCUPATION}: 001 ch.7 art.1(2))"))
    if total > REWARD_CERTIFICATES:
        due.append((f"certificates:{year}", f"{total} certificates in {year} (over "
                    f"{REWARD_CERTIFICATES}: 001 ch.7 art.1(2))"))
    return due


def praised_running(years: set[int], year: int) -> bool:
    """Commended in `year` and each of the two before it."""
    return all(y in years for y in range(year - PRAISED_YEARS + 1, year + 1))
