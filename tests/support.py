"""Test data builders shared by unit, integration and e2e tests (no broker, no grpc here)."""
from __future__ import annotations

import hashlib
from datetime import date, timedelta

from services.common.auth import PARTY_ROLES, issue_token
from services.common.identifiers import id_check_character, uscc_check_character

SIX_MATERIALS = (
    "MATERIAL_KIND_BASIC_INFORMATION",
    "MATERIAL_KIND_WORK_PLAN",
    "MATERIAL_KIND_PREMISES_AND_EQUIPMENT",
    "MATERIAL_KIND_CREDIT_REPORT",
    "MATERIAL_KIND_EVALUATION_HISTORY",
    "MATERIAL_KIND_AUTHENTICITY_PLEDGE",
)


def uscc(n: int) -> str:
    """A valid unified social credit code, distinct for each n (Henan Anyang registration)."""
    first17 = f"52410502MJ{n:07d}"
    return first17 + uscc_check_character(first17)


def resident_id(i: int) -> str:
    """A valid GB 11643 ID number (Anyang), distinct for each i below 10,000,000: born
    i // 1000 days after 1980-01-01, sequence i % 1000."""
    born = date(1980, 1, 1) + timedelta(days=i // 1000)
    first17 = f"410502{born:%Y%m%d}{i % 1000:03d}"
    return first17 + id_check_character(first17)


def write_xlsx(path, header: list, rows: list, title: str | None = None):
    """A workbook as a clerk's spreadsheet program saves one: a header row, then the rows."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title)
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def material(kind: str) -> dict:
    return {"kind": kind, "document_uri": f"s3://vocreg-docs/{kind.lower()}.pdf",
            "sha256": hashlib.sha256(kind.encode()).hexdigest()}


def application_request(n: int = 1, request_id: str | None = None, materials=SIX_MATERIALS,
                        district_code: str = "410502", name: str | None = None) -> dict:
    return {
        "request_id": request_id or f"req-{n}",
        "institution": {
            "institution_id": uscc(n),
            "name": name or f"安阳市第{n}职业技能培训评价中心",
            "legal_representative": "张三",
            "address": "河南省安阳市文峰区中华路100号",
            "district_code": district_code,
            "contact_phone": "0372-5123456",
        },
        "scope": [{"occupation_code": "4-10-01-02", "occupation_name": "育婴员",
                   "skill_levels": [5, 4, 3]}],
        "materials": [material(k) for k in materials],
    }


def token(role: str, institution_n: int | None = None, sub: str | None = None,
          party_id: str | None = None) -> str:
    """A bearer token; party roles (provider, employer, ...) get a party id if none is given."""
    institution_id = uscc(institution_n) if institution_n is not None else None
    if role in PARTY_ROLES and party_id is None:
        party_id = f"{role}-{institution_n or 0}"
    return issue_token(role, sub or f"{role}-{institution_n or 0}", institution_id,
                       party_id=party_id)


PASSED_EVALUATION = {"materials_check_passed": True, "expert_review_passed": True,
                     "site_visit_passed": True, "notes": "all three steps passed"}


def conditions(since: str = "2024-01-01", person_times: int = 800,
               occupations: tuple[str, ...] = ("4-10-01-02",)) -> dict:
    """A declaration of the seven applicant conditions (seed 001 ch.2 art.2): every yes/no
    condition met; the evaluation history and the person-times per occupation as given."""
    return {
        "registered_legal_person": True, "good_credit": True, "dedicated_unit": True,
        "management_rules": True, "not_for_profit_pledge": True,
        "evaluation_history_since": since,
        "occupations": [{"occupation_code": code, "premises_fit": True,
                         "video_surveillance": True, "premises_in_registered_area": True,
                         "staff_examiners_supervisors_experts": True, "question_bank": True,
                         "person_times_last_3_years": person_times} for code in occupations]}
