"""The indicator system (诚信等级评估指标体系) as versioned data, and the one check every version
passes: the built-in default catalogue and a committee's draft alike.

Seed 000: "诚信与守法、培训条件与质量、社会评价调查三个主要方面,由21项一级指标、49项二级指标、
58项三级指标组成,面向社会公开发布". A version is a tree dimension -> first level -> second level
-> third level (the leaves, which are scored); each leaf has its maximum points, its scoring
rule, the evidence it needs and whether the platform computes it. The version also holds the
grade thresholds and the direct-D offences with their legal basis. The seeds give no points,
thresholds or offences: they are data of the version, with the defaults below (the project's defaults where the seeds give no
number).

Points are integers in hundredths (centipoints): the leaves of a version sum to exactly 10000.
A published version never changes; its canonical hash (SHA-256 of its RFC 8785 JSON, defaults
left out as proto3 leaves them out) is recorded with every grade computed from it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import rfc8785

from services.common.vocabulary import CLIENT_ID, CLIENT_ID_HINT

__all__ = [
    "TOTAL_CENTI", "DEFAULT_THRESHOLDS", "DEFAULT_OFFENCES", "DEFAULT_SYSTEM_ID",
    "POINTS", "DEDUCTION", "RATE", "RULE_KINDS", "FACT_KINDS", "MAX_OCCURRENCES", "MAX_RATE_BP",
    "Leaf", "Offence", "Thresholds", "IndicatorSystem", "parse_system", "canonical_hash",
    "default_system", "DEFAULT_CATALOGUE_PATH", "SHAPE",
]

TOTAL_CENTI = 10000  # 100 points
# Seed 000: the published shape (dimensions, first-, second-, third-level indicators).
SHAPE = (3, 21, 49, 58)
DEFAULT_SYSTEM_ID = "default"
DEFAULT_CATALOGUE_PATH = Path(__file__).resolve().parents[1] / "catalogue" / "default.json"

POINTS = "SCORING_RULE_KIND_POINTS"
DEDUCTION = "SCORING_RULE_KIND_DEDUCTION"
RATE = "SCORING_RULE_KIND_RATE"
# The proto enum numbers: the scoring arrays carry these.
RULE_KINDS = {POINTS: 1, DEDUCTION: 2, RATE: 3}
MAX_OCCURRENCES = 10000
MAX_RATE_BP = 10000

FACT_KINDS = (
    "FACT_KIND_SANCTION", "FACT_KIND_CERTIFICATE_INVALIDATION",
    "FACT_KIND_LATE_CERTIFICATE_REPORTING", "FACT_KIND_FILING_VIOLATION",
    "FACT_KIND_REFUND_COMPLAINT", "FACT_KIND_COURSE_CHEATING", "FACT_KIND_FILING_TERMINATED",
    "FACT_KIND_BLACK_LISTED")
INVALIDATION_REASONS = (
    "INVALIDATION_REASON_INELIGIBLE_CANDIDATE", "INVALIDATION_REASON_EXAM_MISCONDUCT",
    "INVALIDATION_REASON_NON_STANDARD_MARKING", "INVALIDATION_REASON_QUESTION_LEAK",
    "INVALIDATION_REASON_OUT_OF_SCOPE_EVALUATION", "INVALIDATION_REASON_FRAUD",
    "INVALIDATION_REASON_DATA_WITHDRAWN")

# The tax credit rating's bands (the project's default): A >= 90, B >= 70, C >= 40, D below. A
# version that states none gets these.
DEFAULT_THRESHOLDS = {"a_centi": 9000, "b_centi": 7000, "c_centi": 4000}

# The project's defaults: the direct-D offences of a version that states none, each with its basis.
DEFAULT_OFFENCES = (
    {"id": "D1", "title": "备案在评估年度内被终止 (filing terminated in the year)",
     "legal_basis": "001 ch.6 art.4", "triggers": [{"fact": "FACT_KIND_FILING_TERMINATED"}]},
    {"id": "D2", "title": "列入黑名单 (black-listed)",
     "legal_basis": "003 (red and black lists); NDRC Order 58",
     "triggers": [{"fact": "FACT_KIND_BLACK_LISTED"}]},
    {"id": "D3", "title": "证书数据造假或贩卖证书 (certificate fraud or sale)",
     "legal_basis": "001 ch.6 art.4(5)",
     "triggers": [{"fact": "FACT_KIND_SANCTION", "basis_prefix": "001 ch.6 art.4(5)"},
                  {"fact": "FACT_KIND_CERTIFICATE_INVALIDATION",
                   "invalidation_reason": "INVALIDATION_REASON_FRAUD"}]},
    {"id": "D4", "title": "考场秩序混乱,有组织舞弊 (organised cheating)",
     "legal_basis": "001 ch.6 art.4(4)",
     "triggers": [{"fact": "FACT_KIND_SANCTION", "basis_prefix": "001 ch.6 art.4(4)"}]},
    {"id": "D5", "title": "拒绝接受监督检查 (refusing an inspection)",
     "legal_basis": "001 ch.6 art.3(7)",
     "triggers": [{"fact": "FACT_KIND_SANCTION", "basis_prefix": "001 ch.6 art.3(7)"}]},
)

_NODE_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_NODE_ID_HINT = "1-32 of A-Z a-z 0-9 . _ -"


@dataclass(frozen=True)
class Leaf:
    id: str
    name: str
    max_centi: int
    kind: str
    per_occurrence_centi: int = 0
    floor_centi: int = 0
    evidence: tuple[str, ...] = ()
    platform_source: str = ""
    path: tuple[str, str, str] = ("", "", "")  # dimension, first-level, second-level ids

    def to_dict(self) -> dict:
        rule = {"kind": self.kind}
        if self.per_occurrence_centi:
            rule["per_occurrence_centi"] = self.per_occurrence_centi
        if self.floor_centi:
            rule["floor_centi"] = self.floor_centi
        data = {"id": self.id, "name": self.name, "max_centi": self.max_centi, "rule": rule}
        if self.evidence:
            data["evidence"] = list(self.evidence)
        if self.platform_source:
            data["platform_source"] = self.platform_source
        return data


@dataclass(frozen=True)
class Offence:
    id: str
    title: str
    legal_basis: str
    triggers: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        data = {"id": self.id, "title": self.title, "legal_basis": self.legal_basis}
        if self.triggers:
            data["triggers"] = [dict(t) for t in self.triggers]
        return data


@dataclass(frozen=True)
class Thresholds:
    a: int
    b: int
    c: int

    def band(self, total: int) -> int:
        """The grade the points alone give: 1 A, 2 B, 3 C, 4 D (the proto Grade numbers)."""
        return 1 + (total < self.a) + (total < self.b) + (total < self.c)

    def to_dict(self) -> dict:
        return {"a_centi": self.a, "b_centi": self.b, "c_centi": self.c}


@dataclass(frozen=True)
class IndicatorSystem:
    """One version, checked. `tree` is its dimension/first/second structure (names and ids);
    `leaves` its third-level indicators in the order of the tree: the scoring arrays' columns."""

    system_id: str
    version: str
    title: str
    label: str
    tree: tuple
    leaves: tuple[Leaf, ...]
    thresholds: Thresholds
    offences: tuple[Offence, ...]
    counts: tuple[int, int, int, int]
    index: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        self.index.update({leaf.id: i for i, leaf in enumerate(self.leaves)})
        # The rule columns for the vectorised scoring (services/grading/domain/scoring.py).
        object.__setattr__(self, "max", np.array([lf.max_centi for lf in self.leaves], np.int64))
        object.__setattr__(self, "kinds", np.array([RULE_KINDS[lf.kind] for lf in self.leaves],
                                                   np.int64))
        object.__setattr__(self, "per", np.array([lf.per_occurrence_centi for lf in self.leaves],
                                                 np.int64))
        object.__setattr__(self, "floor", np.array([lf.floor_centi for lf in self.leaves],
                                                   np.int64))

    def leaf(self, leaf_id: str) -> Leaf | None:
        i = self.index.get(leaf_id)
        return None if i is None else self.leaves[i]

    def offence(self, offence_id: str) -> Offence | None:
        return next((o for o in self.offences if o.id == offence_id), None)

    def platform_columns(self) -> dict[str, list[int]]:
        """Fact kind -> the columns of the leaves computed from it."""
        columns: dict[str, list[int]] = {}
        for i, leaf in enumerate(self.leaves):
            if leaf.platform_source:
                columns.setdefault(leaf.platform_source, []).append(i)
        return columns

    def to_dict(self) -> dict:
        """The version as the IndicatorSystem message's JSON (proto field names, defaults left
        out): what is stored, answered and hashed."""
        dimensions = []
        for dim_id, dim_name, firsts in self.tree:
            dim = {"id": dim_id, "name": dim_name, "children": []}
            for first_id, first_name, seconds in firsts:
                first = {"id": first_id, "name": first_name, "children": []}
                for second_id, second_name, leaf_ids in seconds:
                    first["children"].append({
                        "id": second_id, "name": second_name,
                        "leaves": [self.leaves[self.index[i]].to_dict() for i in leaf_ids]})
                dim["children"].append(first)
            dimensions.append(dim)
        data = {"system_id": self.system_id, "version": self.version, "title": self.title,
                "label": self.label, "dimensions": dimensions,
                "thresholds": self.thresholds.to_dict(),
                "direct_d_offences": [o.to_dict() for o in self.offences]}
        return {k: v for k, v in data.items() if v not in ("", [], None)}

    @property
    def canonical_hash(self) -> str:
        return canonical_hash(self.to_dict())


def canonical_hash(data: dict) -> str:
    """SHA-256 (hex) of the RFC 8785 canonical JSON of `data`."""
    return hashlib.sha256(rfc8785.dumps(data)).hexdigest()


# --- the one check ------------------------------------------------------------------------------
def _text(data: dict, key: str, path: str, errors: list, hi: int = 200,
          required: bool = True) -> str:
    value = data.get(key)
    value = value.strip() if isinstance(value, str) else ""
    if not value and required:
        errors.append(f"{path}: required")
    elif len(value) > hi:
        errors.append(f"{path}: at most {hi} characters")
    return value


def _int(data: dict, key: str) -> int:
    value = data.get(key) or 0
    return int(value) if isinstance(value, int | str) and str(value).lstrip("-").isdigit() else 0


def _children(data: dict, key: str, path: str, errors: list, what: str) -> list:
    children = data.get(key) or []
    if not isinstance(children, list) or not children:
        errors.append(f"{path}.{key}: at least one {what}")
        return []
    return [c if isinstance(c, dict) else {} for c in children]


def parse_system(data: dict, path: str = "system", reserved_ids: tuple = ()) -> IndicatorSystem:
    """Check a version and return it; InvalidArgument-style violations ("path: problem") for
    everything wrong with it at once, raised as ValueError(list) (the handler turns it into
    INVALID_ARGUMENT). Thresholds and offences left out take the defaults."""
    errors: list[str] = []
    data = data if isinstance(data, dict) else {}
    system_id = _text(data, "system_id", f"{path}.system_id", errors, 64)
    if system_id and not CLIENT_ID.match(system_id):
        errors.append(f"{path}.system_id: {CLIENT_ID_HINT}")
    elif system_id in reserved_ids:
        errors.append(f"{path}.system_id: {system_id!r} is reserved for the built-in catalogue")
    version = _text(data, "version", f"{path}.version", errors, 32)
    title = _text(data, "title", f"{path}.title", errors, 200)
    label = _text(data, "label", f"{path}.label", errors, 500, required=False)

    seen: dict[str, str] = {}

    def node_id(node: dict, node_path: str) -> str:
        value = _text(node, "id", f"{node_path}.id", errors, 32)
        if value and not _NODE_ID.match(value):
            errors.append(f"{node_path}.id: {_NODE_ID_HINT}")
        elif value in seen:
            errors.append(f"{node_path}.id: duplicate id {value!r} (also at {seen[value]})")
        elif value:
            seen[value] = node_path
        return value

    tree, leaves, counts = [], [], [0, 0, 0, 0]
    for d, dim in enumerate(_children(data, "dimensions", path, errors, "dimension")):
        dpath = f"{path}.dimensions[{d}]"
        dim_id, dim_name = node_id(dim, dpath), _text(dim, "name", f"{dpath}.name", errors)
        counts[0] += 1
        firsts = []
        for f, first in enumerate(_children(dim, "children", dpath, errors, "first-level indicator")):
            fpath = f"{dpath}.children[{f}]"
            first_id, first_name = node_id(first, fpath), _text(first, "name", f"{fpath}.name",
                                                                errors)
            counts[1] += 1
            seconds = []
            for s, second in enumerate(_children(first, "children", fpath, errors,
                                                 "second-level indicator")):
                spath = f"{fpath}.children[{s}]"
                second_id = node_id(second, spath)
                second_name = _text(second, "name", f"{spath}.name", errors)
                counts[2] += 1
                leaf_ids = []
                for n, leaf in enumerate(_children(second, "leaves", spath, errors,
                                                   "third-level indicator")):
                    lpath = f"{spath}.leaves[{n}]"
                    parsed = _leaf(leaf, lpath, node_id(leaf, lpath), errors,
                                   (dim_id, first_id, second_id))
                    counts[3] += 1
                    leaves.append(parsed)
                    leaf_ids.append(parsed.id)
                seconds.append((second_id, second_name, tuple(leaf_ids)))
            firsts.append((first_id, first_name, tuple(seconds)))
        tree.append((dim_id, dim_name, tuple(firsts)))

    total = sum(leaf.max_centi for leaf in leaves)
    if leaves and total != TOTAL_CENTI:
        errors.append(f"{path}.dimensions: the leaves' points must sum to 100.00, "
                      f"not {total / 100:.2f}")
    thresholds = _thresholds(data.get("thresholds"), f"{path}.thresholds", errors)
    offences = _offences(data.get("direct_d_offences"), f"{path}.direct_d_offences", errors)
    if errors:
        raise ValueError(errors)
    return IndicatorSystem(system_id, version, title, label, tuple(tree), tuple(leaves),
                           thresholds, offences, tuple(counts))


def _leaf(data: dict, path: str, leaf_id: str, errors: list, where: tuple) -> Leaf:
    name = _text(data, "name", f"{path}.name", errors)
    max_centi = _int(data, "max_centi")
    if not 0 < max_centi <= TOTAL_CENTI:
        errors.append(f"{path}.max_centi: must be 1-10000 (centipoints)")
    rule = data.get("rule") if isinstance(data.get("rule"), dict) else {}
    kind = rule.get("kind") or ""
    per, floor = _int(rule, "per_occurrence_centi"), _int(rule, "floor_centi")
    if kind not in RULE_KINDS:
        errors.append(f"{path}.rule: a leaf needs a scoring rule (POINTS, DEDUCTION or RATE)")
    elif kind == DEDUCTION:
        if per <= 0:
            errors.append(f"{path}.rule.per_occurrence_centi: a deduction must be > 0")
        if not 0 <= floor <= max(max_centi, 0):
            errors.append(f"{path}.rule.floor_centi: must be 0 up to the leaf's maximum")
    elif per or floor:
        errors.append(f"{path}.rule: per_occurrence_centi and floor_centi belong to DEDUCTION")
    evidence = data.get("evidence") or []
    if not isinstance(evidence, list) or any(not isinstance(e, str) or not e.strip()
                                             for e in evidence):
        errors.append(f"{path}.evidence: each item is a non-empty description")
        evidence = []
    source = data.get("platform_source") or ""
    if source in ("FACT_KIND_UNSPECIFIED",):
        source = ""
    if source and source not in FACT_KINDS:
        errors.append(f"{path}.platform_source: unknown fact kind {source!r}")
    elif source and kind in RULE_KINDS and kind != DEDUCTION:
        errors.append(f"{path}.platform_source: a leaf computed from platform facts counts "
                      "them as occurrences: its rule must be DEDUCTION")
    return Leaf(leaf_id, name, max_centi, kind, per, floor,
                tuple(e.strip() for e in evidence), source, where)


def _thresholds(data, path: str, errors: list) -> Thresholds:
    values = dict(DEFAULT_THRESHOLDS)
    if isinstance(data, dict) and any(data.get(k) for k in values):
        values = {k: _int(data, k) for k in values}
    a, b, c = values["a_centi"], values["b_centi"], values["c_centi"]
    if not 0 < c < b < a <= TOTAL_CENTI:
        errors.append(f"{path}: must be 0 < c_centi < b_centi < a_centi <= 10000")
    return Thresholds(a, b, c)


def _offences(data, path: str, errors: list) -> tuple[Offence, ...]:
    items = data if isinstance(data, list) and data else list(DEFAULT_OFFENCES)
    offences, ids = [], set()
    for i, item in enumerate(items):
        item = item if isinstance(item, dict) else {}
        opath = f"{path}[{i}]"
        offence_id = _text(item, "id", f"{opath}.id", errors, 32)
        if offence_id and not _NODE_ID.match(offence_id):
            errors.append(f"{opath}.id: {_NODE_ID_HINT}")
        elif offence_id in ids:
            errors.append(f"{opath}.id: duplicate offence id {offence_id!r}")
        ids.add(offence_id)
        title = _text(item, "title", f"{opath}.title", errors)
        basis = _text(item, "legal_basis", f"{opath}.legal_basis", errors)
        triggers = []
        for t, trigger in enumerate(item.get("triggers") or []):
            trigger = trigger if isinstance(trigger, dict) else {}
            tpath = f"{opath}.triggers[{t}]"
            fact = trigger.get("fact") or ""
            if fact not in FACT_KINDS:
                errors.append(f"{tpath}.fact: one of the FactKind values")
            reason = (trigger.get("invalidation_reason") or "").strip()
            if reason and (fact != "FACT_KIND_CERTIFICATE_INVALIDATION"
                           or reason not in INVALIDATION_REASONS):
                errors.append(f"{tpath}.invalidation_reason: a certificates InvalidationReason, "
                              "with fact FACT_KIND_CERTIFICATE_INVALIDATION only")
            prefix = (trigger.get("basis_prefix") or "").strip()
            triggers.append({k: v for k, v in (("fact", fact), ("basis_prefix", prefix),
                                               ("invalidation_reason", reason)) if v})
        offences.append(Offence(offence_id, title, basis, tuple(triggers)))
    return tuple(offences)


@cache
def default_system() -> IndicatorSystem:
    """The built-in default catalogue (services/grading/catalogue/default.json), checked by
    the same parse_system as a committee's version; a broken file stops the worker at start."""
    with open(DEFAULT_CATALOGUE_PATH, encoding="utf-8") as fh:
        data = json.load(fh)
    try:
        return parse_system(data, "catalogue/default.json")
    except ValueError as exc:
        raise SystemExit(f"the default indicator catalogue is malformed: {exc}") from None
