"""Inspection's rules as pure functions: the plan and its defaults, the articles of ch.6 and
their tiers, escalation, due-process clocks, decision effects, triggers, masking. No I/O.

Citations: seed 001 (Anyang) ch.4 art.3-4 (what and how), ch.5 art.1-5 (plan, "双随机、一公开",
kinds, complaints), ch.6 art.1-4 (the four tiers), art.7-8 (due process); seed 002 §二(三)
(the special governance action and its outcomes).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date

from services.common.vocabulary import CLIENT_ID, CLIENT_ID_HINT, parse_date
from services.common.workdays import WorkdayCalendar

# --- enums as the proto names them -------------------------------------------------------
TIER_NONE = "SANCTION_TIER_UNSPECIFIED"
TIER_1 = "SANCTION_TIER_RESULTS_VOID"
TIER_2 = "SANCTION_TIER_INTERVIEW"
TIER_3 = "SANCTION_TIER_WARNING"
TIER_4 = "SANCTION_TIER_TERMINATION"
TIERS = (TIER_NONE, TIER_1, TIER_2, TIER_3, TIER_4)
TIER_NUMBER = {name: n for n, name in enumerate(TIERS)}

EVALUATION_ORGANISATION = "SUBJECT_KIND_EVALUATION_ORGANISATION"
SUBJECT_KINDS = ("SUBJECT_KIND_EVALUATION_ORGANISATION", "SUBJECT_KIND_TRAINING_INSTITUTION",
                 "SUBJECT_KIND_ONLINE_PLATFORM", "SUBJECT_KIND_UNAPPROVED_CERTIFIER")

KIND_DAILY = "INSPECTION_KIND_DAILY"
KIND_SPECIAL = "INSPECTION_KIND_SPECIAL"
KINDS = (KIND_DAILY, KIND_SPECIAL, "INSPECTION_KIND_ANNUAL_ASSESSMENT",
         "INSPECTION_KIND_PERIODIC_EVALUATION")

ORIGIN_DRAW = "CASE_ORIGIN_RANDOM_DRAW"
ORIGIN_COMPLAINT = "CASE_ORIGIN_COMPLAINT"
ORIGIN_ANOMALY = "CASE_ORIGIN_MONITORING_ANOMALY"
ORIGIN_PLAN = "CASE_ORIGIN_PLAN"
HAND_ORIGINS = (ORIGIN_PLAN, ORIGIN_COMPLAINT, ORIGIN_ANOMALY)

OUTCOMES = ("CASE_OUTCOME_SUBSIDY_RECOVERED", "CASE_OUTCOME_CATALOGUE_REMOVED",
            "CASE_OUTCOME_PROJECT_CATALOGUE_REMOVED", "CASE_OUTCOME_RECTIFICATION_ORDERED",
            "CASE_OUTCOME_ADMINISTRATIVE_PENALTY", "CASE_OUTCOME_CERTIFICATE_DATA_WITHDRAWN",
            "CASE_OUTCOME_TRANSFERRED_TO_JUDICIAL", "CASE_OUTCOME_TRANSFERRED_TO_DISCIPLINE",
            "CASE_OUTCOME_CASE_NOTICE_PUBLISHED")
# Outcomes that carry an amount in fen, an authority, a deadline (seed 002 §二(三)).
OUTCOMES_WITH_AMOUNT = ("CASE_OUTCOME_SUBSIDY_RECOVERED", "CASE_OUTCOME_ADMINISTRATIVE_PENALTY")
OUTCOMES_WITH_AUTHORITY = ("CASE_OUTCOME_TRANSFERRED_TO_JUDICIAL",
                           "CASE_OUTCOME_TRANSFERRED_TO_DISCIPLINE")
OUTCOMES_WITH_DEADLINE = ("CASE_OUTCOME_RECTIFICATION_ORDERED",)

# Case states.
OPEN, INSPECTED, NOTIFIED = "CASE_STATE_OPEN", "CASE_STATE_INSPECTED", "CASE_STATE_NOTIFIED"
AWAITING = "CASE_STATE_AWAITING_DECISION"
DECIDED, UNDER_REVIEW, CLOSED = "CASE_STATE_DECIDED", "CASE_STATE_UNDER_REVIEW", "CASE_STATE_CLOSED"
ACTIVE_STATES = (OPEN, INSPECTED, NOTIFIED, AWAITING)

DELIVERIES = ("DELIVERY_WRITTEN", "DELIVERY_PUBLIC_NOTICE")
UPHELD, OVERTURNED = "REVIEW_OUTCOME_UPHELD", "REVIEW_OUTCOME_OVERTURNED"

RECT_ORDERED, RECT_SUBMITTED = "RECTIFICATION_STATE_ORDERED", "RECTIFICATION_STATE_SUBMITTED"
RECT_ACCEPTED, RECT_OVERDUE = "RECTIFICATION_STATE_ACCEPTED", "RECTIFICATION_STATE_OVERDUE"
RECT_VOID = "RECTIFICATION_STATE_VOID"

# --- the plan (ch.5 art.1-3) -----------------------------------------------------------------
# Sampling ratio of random inspections by integrity grade, basis points (Henan's 2021 risk
# tiers): D 30 %, C 10 %, B 2 %, A 1 %, ungraded 10 %.
DEFAULT_RATIOS_BP = {"D": 3000, "C": 1000, "B": 200, "A": 100, "UNGRADED": 1000}
# At least 5 % of the filed institutions in each half-year: every round drawn reaches it, and
# every half-year has a round.
MINIMUM_BP = 500
# At least 2 inspectors per inspection.
MIN_TEAM_SIZE = 2
MAX_TEAM_SIZE = 5
# An inspector employed by an institution in the last 3 years never inspects it.
FORMER_EMPLOYMENT_YEARS = 3

# --- due process (ch.6 art.7-8) --------------------------------------------------------------
# Working days to state one's case after the notice of the intended decision (configurable).
DEFAULT_STATEMENT_DAYS = 5
# Working days after the written decision to ask for review.
DEFAULT_REVIEW_DAYS = 15
# Working days given to rectify after a warning when the decision names no date (the seed
# names none: about one month).
DEFAULT_RECTIFICATION_DAYS = 20

# --- triggers ----------------------------------------------------------------------------------
# A burst (a digital-monitoring anomaly, ch.6 art.2(5)): one batch of at least this many
# certificates and more than BURST_FACTOR times the institution's average month over the
# months it has issued in (up to 12 before this one). No judgement without a month of history.
DEFAULT_BURST_MIN = 200
DEFAULT_BURST_FACTOR = 5
# Complaints accepted per caller per hour (FileComplaint is public). Anonymous callers share
# one allowance per hour between them (the worker cannot tell them apart; per-address limits
# belong to the ingress in front of the edge).
DEFAULT_COMPLAINTS_PER_HOUR = 5
DEFAULT_ANONYMOUS_COMPLAINTS_PER_HOUR = 200


@dataclass(frozen=True)
class Article:
    citation: str
    tier: str
    summary: str
    invalidation_reason: str = ""


def _articles() -> dict[str, Article]:
    """ch.6 art.1-4 of seed 001 (each item and its tier), and the special action's five
    areas of seed 002 §二(三) (outcomes rather than a tier)."""
    table = {}
    art1 = [("考生资格不符合申报条件", "INVALIDATION_REASON_INELIGIBLE_CANDIDATE"),
            ("考场存在违纪行为", "INVALIDATION_REASON_EXAM_MISCONDUCT"),
            ("阅卷不规范、评分标准不统一", "INVALIDATION_REASON_NON_STANDARD_MARKING"),
            ("试题发生泄露", "INVALIDATION_REASON_QUESTION_LEAK")]
    for n, (text, reason) in enumerate(art1, 1):
        table[f"ch.6 art.1({n})"] = Article(f"ch.6 art.1({n})", TIER_1, text, reason)
    art2 = ["报名资格审核不严,情节轻微", "评价组织管理松懈,情节轻微", "评价档案保存不完整、管理不规范",
            "未安排质量督导或不符合督导规程,情节轻微", "数字化监测提示异常,重点抽查后情况属实",
            "未按规定及时处理违纪违规参评人员", "未按要求使用标准试题资源或拒绝无纸化考试",
            "未按规定公示考生信息和评价结果,或未及时上报证书数据"]
    art3 = ["第二条所列情况,情节严重", "未按规定区域和地点组织评价", "连续6个月无正当理由不开展评价活动",
            "承诺“包过”“保过”等虚假宣传", "违规问题未按期完成整改", "因涉嫌违纪违规违法正在接受调查处理",
            "未按规定接受检查或年检考核不合格", "备案信息变更未及时变更备案"]
    art4 = ["备案申报时提供虚假承诺、虚假资料", "超出备案范围开展评价", "伪造申报资料或纵容违规报名",
            "考场秩序混乱,有组织舞弊", "证书数据造假或贩卖证书", "已被警告,整改后再次违反第三条",
            "连续12个月未开展评价或评价人数低于500人", "设备无法满足评价需要,未按期完成整改",
            "发生重大安全或泄密事故", "其他不履行承诺,造成严重不良社会影响"]
    for art, tier, items in ((2, TIER_2, art2), (3, TIER_3, art3), (4, TIER_4, art4)):
        for n, text in enumerate(items, 1):
            citation = f"ch.6 art.{art}({n})"
            reason = "INVALIDATION_REASON_FRAUD" if (art, n) in ((4, 5), (4, 3)) else (
                "INVALIDATION_REASON_OUT_OF_SCOPE_EVALUATION" if (art, n) == (4, 2) else (
                    "INVALIDATION_REASON_EXAM_MISCONDUCT" if (art, n) == (4, 4) else ""))
            table[citation] = Article(citation, tier, text, reason)
    special = ["政府补贴性培训:虚假培训、骗取补贴", "线上培训:数据造假、刷课",
               "主管部门所属单位:未培训、转包外包", "评价机构:超范围评价、不考试就发证、倒卖证书",
               "未经备案的机构:违规发证或冒用名义"]
    for n, text in enumerate(special, 1):
        citation = f"002 §二(三){n}"
        table[citation] = Article(citation, TIER_NONE, text,
                                  "INVALIDATION_REASON_FRAUD" if n == 4 else "")
    return table


ARTICLES = _articles()
ESCALATION_BASIS = "ch.6 art.4(6)"
OVERDUE_RECTIFICATION = "ch.6 art.3(5)"
LAPSE_ARTICLE = "ch.6 art.3(3)"
TERMINATION_GROUND = "ch.6 art.4(7)"
LATE_REPORTING = "ch.6 art.2(8)"
BURST_ARTICLE = "ch.6 art.2(5)"

_ARTICLE_SHAPE = re.compile(r"^\s*(ch\.6\s*art\.\s*[1-4]\s*\(\s*\d{1,2}\s*\)|002\s*§二\(三\)\s*[1-5])\s*$")


def article(text: str) -> Article | None:
    """The article a citation names ("ch.6 art.3(5)", "002 §二(三)4"), white space forgiven."""
    if not isinstance(text, str) or not _ARTICLE_SHAPE.match(text):
        return None
    compact = re.sub(r"\s+", "", text)
    compact = compact.replace("ch.6art.", "ch.6 art.").replace("002§", "002 §")
    return ARTICLES.get(compact)


def heavier(a: str, b: str) -> str:
    return a if TIER_NUMBER.get(a, 0) >= TIER_NUMBER.get(b, 0) else b


# --- the plan ------------------------------------------------------------------------------------
def check_plan(request: dict, errors: list) -> dict:
    """The plan a CreatePlan request describes, defaults filled in; problems in `errors`."""
    year = request.get("year") or 0
    if not 2000 <= year <= 2100:
        errors.append("year: required, 2000-2100")
    title = (request.get("title") or "").strip()
    if not title:
        errors.append("title: required")
    content = (request.get("content") or "").strip()
    if not content:
        errors.append("content: required (what is supervised, ch.4 art.3)")
    focus = [f.strip() for f in request.get("focus") or [] if f.strip()]
    kinds = list(dict.fromkeys(request.get("kinds") or []))
    if not kinds:
        errors.append("kinds: at least one kind of supervision")
    if any(k not in KINDS for k in kinds):
        errors.append("kinds: must be DAILY, SPECIAL, ANNUAL_ASSESSMENT or PERIODIC_EVALUATION")
    ratios = dict(DEFAULT_RATIOS_BP)
    seen = set()
    for i, entry in enumerate(request.get("ratios") or []):
        name = (entry.get("stratum") or "").strip().upper()
        bp = entry.get("ratio_bp") or 0
        if name not in DEFAULT_RATIOS_BP:
            errors.append(f"ratios[{i}].stratum: must be one of A, B, C, D, UNGRADED")
        elif name in seen:
            errors.append(f"ratios[{i}].stratum: {name} given twice")
        elif not 0 <= bp <= 10_000:
            errors.append(f"ratios[{i}].ratio_bp: must be 0-10000 (basis points)")
        else:
            ratios[name] = bp
            seen.add(name)
    minimum_bp = request.get("minimum_bp") or MINIMUM_BP
    if not MINIMUM_BP <= minimum_bp <= 10_000:
        errors.append(f"minimum_bp: must be {MINIMUM_BP}-10000 (at least 5 % each half-year)")
    team_size = request.get("team_size") or MIN_TEAM_SIZE
    if not MIN_TEAM_SIZE <= team_size <= MAX_TEAM_SIZE:
        errors.append(f"team_size: must be {MIN_TEAM_SIZE}-{MAX_TEAM_SIZE} (at least 2 "
                      "inspectors per inspection)")
    rounds = []
    numbers = set()
    for i, entry in enumerate(request.get("rounds") or []):
        number, half = entry.get("round") or 0, entry.get("half") or 0
        path = f"rounds[{i}]"
        if number < 1 or number in numbers:
            errors.append(f"{path}.round: must be 1 or more, each round once")
        numbers.add(number)
        if half not in (1, 2):
            errors.append(f"{path}.half: must be 1 (January-June) or 2 (July-December)")
        kind = entry.get("kind") or KIND_DAILY
        if kind not in KINDS:
            errors.append(f"{path}.kind: unknown kind")
        start = parse_date(entry.get("window_from"), f"{path}.window_from", errors)
        end = parse_date(entry.get("window_to"), f"{path}.window_to", errors)
        if start and end and half in (1, 2) and 2000 <= year <= 2100:
            first, last = (date(year, 1, 1), date(year, 6, 30)) if half == 1 else (
                date(year, 7, 1), date(year, 12, 31))
            if not first <= start <= end <= last:
                errors.append(f"{path}: the window must lie in half-year {half} of {year}, "
                              "from before to")
        rounds.append({"round": number, "half": half, "kind": kind,
                       "title": (entry.get("title") or "").strip(),
                       "window_from": entry.get("window_from") or "",
                       "window_to": entry.get("window_to") or ""})
    halves = {r["half"] for r in rounds}
    if not {1, 2} <= halves:
        errors.append("rounds: at least one round in each half-year (at least 5 % of the filed "
                      "institutions are inspected every half-year)")
    return {"year": year, "title": title, "content": content, "focus": focus, "kinds": kinds,
            "ratios": ratios, "minimum_bp": minimum_bp, "team_size": team_size,
            "rounds": sorted(rounds, key=lambda r: r["round"])}


def minimum_count(pool_size: int, minimum_bp: int) -> int:
    return math.ceil(pool_size * minimum_bp / 10_000) if pool_size else 0


# --- conflicts (the draw's pool) -------------------------------------------------------------------
def conflicts_of(inspector: dict, institution_ids: set[str], on: date,
                 last_teams: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The (institution, reason) pairs an inspector may not inspect among `institution_ids`:
    the current employer, a declared relation, an employment that ended less than 3 years
    before `on`, or the team that inspected the institution last time."""
    found = {}
    employer = inspector.get("employer_id") or ""
    if employer in institution_ids:
        found[employer] = "EMPLOYER"
    cutoff = _years_before(on, FORMER_EMPLOYMENT_YEARS).isoformat()
    for relation in inspector.get("relations") or []:
        target = relation.get("institution_id")
        if target not in institution_ids or target in found:
            continue
        if relation.get("kind") == "RELATION_KIND_PAST_EMPLOYMENT":
            until = relation.get("until") or ""
            if not until or until >= cutoff:
                found[target] = "FORMER_EMPLOYER"
        else:
            found[target] = "DECLARED_RELATION"
    inspector_id = inspector["inspector_id"]
    for institution_id, team in last_teams.items():
        if inspector_id in team and institution_id in institution_ids \
                and institution_id not in found:
            found[institution_id] = "LAST_TEAM"
    return sorted(found.items())


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def check_relation(entry: dict, path: str, errors: list, today: date) -> dict:
    from services.common.identifiers import uscc_problem

    institution_id = (entry.get("institution_id") or "").strip().upper()
    problem = uscc_problem(institution_id)
    if problem:
        errors.append(f"{path}.institution_id: {problem}")
    kind = entry.get("kind") or "RELATION_KIND_UNSPECIFIED"
    if kind == "RELATION_KIND_UNSPECIFIED":
        errors.append(f"{path}.kind: required (PERSONAL, FINANCIAL, PAST_EMPLOYMENT, OTHER)")
    until = parse_date(entry.get("until"), f"{path}.until", errors, required=False)
    if until and kind != "RELATION_KIND_PAST_EMPLOYMENT":
        errors.append(f"{path}.until: only a past employment ends")
    if until and until > today:
        errors.append(f"{path}.until: in the future; leave it empty while it lasts")
    return {"institution_id": institution_id, "kind": kind,
            "until": until.isoformat() if until else "",
            "note": (entry.get("note") or "").strip(), "declared_on": today.isoformat()}


def check_id(value, path: str, errors: list) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not CLIENT_ID.match(text):
        errors.append(f"{path}: required, {CLIENT_ID_HINT}")
    return text


# --- findings and escalation (ch.6 art.1-4) -----------------------------------------------------
def finding_tier(found: Article, subject_kind: str,
                 accepted_warnings: list[str]) -> tuple[str, str, str]:
    """(tier, escalation basis, the warning it escalates after): a tier-3 act by an
    institution warned before whose rectification was accepted proposes tier 4 (ch.6
    art.4(6)). The ch.6 tiers apply to evaluation organisations only."""
    if found.tier == TIER_3 and accepted_warnings:
        return TIER_4, ESCALATION_BASIS, accepted_warnings[-1]
    return found.tier, "", ""


def article_fits_subject(found: Article, subject_kind: str) -> bool:
    """ch.6 (seed 001) binds filed evaluation organisations; seed 002's items bind all four."""
    return found.citation.startswith("002") or subject_kind == EVALUATION_ORGANISATION


def proposed_tier(findings: list[dict]) -> str:
    tier = TIER_NONE
    for finding in findings:
        tier = heavier(finding.get("tier") or TIER_NONE, tier)
    return tier


# --- due-process clocks ---------------------------------------------------------------------------
def statement_due(calendar: WorkdayCalendar, notified_on: date, days: int):
    """The last day of the statement period: `days` working days after the notice."""
    return calendar.add_working_days(notified_on, days)


def review_due(calendar: WorkdayCalendar, decided_on: date, days: int):
    return calendar.add_working_days(decided_on, days)


def rectification_due(calendar: WorkdayCalendar, decided_on: date, days: int):
    return calendar.add_working_days(decided_on, days)


def may_decide(state: str, waived: bool, due: str, today: date) -> str | None:
    """Why a decision cannot be taken now, or None: only after the statement period ended
    (its last day has passed), or the institution waived it."""
    if state not in (NOTIFIED, AWAITING):
        return "the intended decision has not been notified" if state in (OPEN, INSPECTED) \
            else "the case is already decided"
    if waived or state == AWAITING or today.isoformat() > due:
        return None
    return f"the statement period runs until {due} (ch.6 art.7-8); the institution has not " \
           "waived it"


# --- decision effects (ch.6 art.1-4, seed 002 §二(三)) ----------------------------------------------
def decision_effects(tier: str, subject_kind: str) -> dict:
    """What a decision of this tier does, everywhere: filing's part, grading's, publication."""
    filed = subject_kind == EVALUATION_ORGANISATION
    return {"suspend_filing": tier == TIER_3 and filed,
            "terminate_filing": tier == TIER_4 and filed,
            "integrity_record": tier in (TIER_3, TIER_4),
            "black_list": tier == TIER_4,
            "publish": True}


def check_outcomes(entries: list[dict], errors: list, today: date) -> list[dict]:
    outcomes = []
    for i, entry in enumerate(entries or []):
        path = f"outcomes[{i}]"
        outcome = entry.get("outcome") or "CASE_OUTCOME_UNSPECIFIED"
        if outcome not in OUTCOMES:
            errors.append(f"{path}.outcome: required")
            continue
        amount = int(entry.get("amount_fen") or 0)
        if outcome in OUTCOMES_WITH_AMOUNT and amount <= 0:
            errors.append(f"{path}.amount_fen: required, in fen, above 0")
        elif outcome not in OUTCOMES_WITH_AMOUNT and amount:
            errors.append(f"{path}.amount_fen: only for a subsidy recovered or a penalty")
        authority = (entry.get("authority") or "").strip()
        if outcome in OUTCOMES_WITH_AUTHORITY and not authority:
            errors.append(f"{path}.authority: required (the receiving authority)")
        due = parse_date(entry.get("due_on"), f"{path}.due_on", errors,
                         required=outcome in OUTCOMES_WITH_DEADLINE)
        if due and due < today:
            errors.append(f"{path}.due_on: in the past")
        outcomes.append({"outcome": outcome, "amount_fen": amount, "authority": authority,
                         "due_on": due.isoformat() if due else "",
                         "note": (entry.get("note") or "").strip()})
    return outcomes


# --- triggers: anomalies from other services' events -----------------------------------------------
def month_of(day: str) -> str:
    return (day or "")[:7]


def is_burst(monthly: dict[str, int], month: str, batch_total: int, minimum: int,
             factor: int) -> bool:
    """A batch far above the institution's usual volume: at least `minimum` certificates and
    more than `factor` times its average month, over the (up to 12) months before `month`
    from its first month with certificates."""
    if batch_total < minimum:
        return False
    earlier = sorted(m for m in monthly if m < month)
    if not earlier:
        return False
    months = _months_between(earlier[0], month)[-12:]
    average = sum(monthly.get(m, 0) for m in months) / len(months)
    return batch_total > factor * average


def _months_between(first: str, before: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    out = []
    while f"{year:04d}-{month:02d}" < before:
        out.append(f"{year:04d}-{month:02d}")
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


# --- "一公开": personal data masked -----------------------------------------------------------------
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_PERSON = re.compile(r"([\u4e00-\u9fff])([\u4e00-\u9fff]{1,2})(?=(先生|女士|老师|考生|学员|同志))")


def mask(text: str) -> str:
    """Public text with personal data masked: ID numbers (first 6 and last 4 kept), mobile
    numbers (first 3 and last 4), a person named with a title (张三先生 -> 张*先生)."""
    text = _ID_NUMBER.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text or "")
    text = _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(2), text)
    return _PERSON.sub(lambda m: m.group(1) + "*" * len(m.group(2)), text)
