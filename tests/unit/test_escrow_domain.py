"""The escrow rules, pure: the ledger (zero sum, limits, two-phase transfers, ids, replay) and
the prepaid-fee rules (the 60-hour and 3-month caps, the 7-day rule, the refund's lines, the
period figures)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.common.errors import InvalidArgument
from services.escrow.domain import ledger as L
from services.escrow.domain import rules
from services.escrow.settings import EscrowSettings, load_settings

NOW = datetime(2026, 3, 2, 2, tzinfo=timezone.utc)
LEDGER = "91110108MA00000001"
CUSTODY, RELEASED, REFUNDS = L.custody(LEDGER), L.released(LEDGER), L.refunds(LEDGER)
BANK = L.bank(LEDGER, "ICBC")
C1, C2 = L.contract(LEDGER, "HT-1"), L.contract(LEDGER, "HT-2")


def state(**balances) -> L.LedgerState:
    kinds = {CUSTODY: L.CUSTODY, RELEASED: L.RELEASED, REFUNDS: L.REFUNDS, BANK: L.BANK,
             C1: L.CONTRACT, C2: L.CONTRACT}
    accounts = {a: L.AccountState(a, k, bank=BANK if k == L.CONTRACT else "")
                for a, k in kinds.items()}
    return L.LedgerState(LEDGER, 0, accounts)


def run(st, *specs, now=NOW):
    docs, answers = L.plan(st, list(specs), now, "test", advance=True)
    return docs, answers


def pay(tid, contract, amount):
    return L.TransferSpec(tid, L.POSTED, CUSTODY, contract, amount)


def fee(tid, contract, amount, timeout_at=None):
    return L.TransferSpec(tid, L.PENDING, contract, RELEASED, amount, timeout_at=timeout_at)


def balance(st, account):
    return st.accounts[account].balance


def refusal(st, *specs, now=NOW) -> L.Refusal:
    with pytest.raises(L.Refused) as caught:
        L.plan(st, list(specs), now, "test", advance=True)
    return caught.value.refusals[0]


# --- the ledger -------------------------------------------------------------------------------
def test_every_entry_sums_to_zero_posted_and_pending():
    st = state()
    docs, _ = run(st, pay("p", C1, 50_000), fee("f1", C1, 10_000),
                  L.TransferSpec("r", L.POSTED, C1, REFUNDS, 5_000))
    for doc in docs:
        legs = [L.Leg.of(leg) for leg in doc["legs"]]
        assert L.zero_sum_problem(legs) is None
    # the refund left custody through the bank: four legs in one entry
    assert {leg["a"] for leg in docs[2]["legs"]} == {C1, REFUNDS, BANK, CUSTODY}
    assert [d["seq"] for d in docs] == [1, 2, 3]
    assert balance(st, CUSTODY) == L.Balance(d=50_000, c=5_000)
    assert L.zero_sum_problem([L.Leg("a", d=5), L.Leg("b", c=4)]) == "posted debits 5 != credits 4"
    assert "negative" in L.zero_sum_problem([L.Leg("a", d=-5), L.Leg("b", c=-5)])


def test_a_post_of_part_of_a_pending_transfer_returns_the_rest_to_its_source():
    st = state()
    run(st, pay("p", C1, 30_000), fee("f", C1, 10_000))
    assert balance(st, C1) == L.Balance(dp=10_000, c=30_000)
    docs, _ = run(st, L.TransferSpec("post", L.POST_PENDING, pending_id="f", amount=6_000))
    assert balance(st, C1) == L.Balance(dp=0, d=6_000, c=30_000)  # 4,000 back to owed
    assert balance(st, RELEASED) == L.Balance(c=6_000)
    assert balance(st, CUSTODY) == L.Balance(d=30_000, c=6_000)  # paid out through the bank
    assert balance(st, BANK) == L.Balance(d=6_000)
    assert docs[0]["settles"] == f"{LEDGER}/f" and docs[0]["amount"] == 6_000
    r = refusal(st, L.TransferSpec("again", L.VOID_PENDING, pending_id="f"))
    assert (r.kind, r.reason) == ("STATE", "PENDING_TRANSFER_ALREADY_POSTED")


def test_a_post_of_more_than_the_pending_amount_is_refused():
    st = state()
    run(st, pay("p", C1, 30_000), fee("f", C1, 10_000))
    r = refusal(st, L.TransferSpec("post", L.POST_PENDING, pending_id="f", amount=10_001))
    assert r.reason == "EXCEEDS_PENDING_TRANSFER_AMOUNT"


def test_a_void_returns_everything_and_a_voided_transfer_cannot_be_posted():
    st = state()
    run(st, pay("p", C1, 30_000), fee("f", C1, 10_000))
    run(st, L.TransferSpec("v", L.VOID_PENDING, pending_id="f"))
    assert balance(st, C1) == L.Balance(c=30_000) and balance(st, RELEASED) == L.Balance()
    r = refusal(st, L.TransferSpec("post", L.POST_PENDING, pending_id="f"))
    assert (r.kind, r.reason) == ("STATE", "PENDING_TRANSFER_ALREADY_VOIDED")
    assert "is already voided" in r.message


def test_a_pending_transfer_expires_at_its_timeout_and_only_then():
    st = state()
    timeout = NOW + timedelta(days=30)
    run(st, pay("p", C1, 30_000), fee("f", C1, 10_000, timeout_at=timeout))
    early = refusal(st, L.TransferSpec("x", L.EXPIRE_PENDING, pending_id="f"))
    assert early.reason == "PENDING_TRANSFER_NOT_EXPIRED"
    late = timeout + timedelta(seconds=1)
    assert refusal(st, L.TransferSpec("post", L.POST_PENDING, pending_id="f"),
                   now=late).reason == "PENDING_TRANSFER_EXPIRED"
    run(st, L.TransferSpec("x", L.EXPIRE_PENDING, pending_id="f"), now=timeout)
    assert balance(st, C1) == L.Balance(c=30_000)
    assert refusal(st, L.TransferSpec("y", L.EXPIRE_PENDING, pending_id="f"),
                   now=late).reason == "PENDING_TRANSFER_ALREADY_EXPIRED"


def test_a_relative_timeout_counts_from_when_it_is_recorded():
    st = state()
    docs, _ = run(st, pay("p", C1, 1_000),
                  L.TransferSpec("f", L.PENDING, C1, RELEASED, 500, timeout_seconds=60))
    assert docs[1]["timeout_at"] == NOW + timedelta(seconds=60)


def test_a_contract_may_not_go_below_zero_and_the_refusal_says_where_it_would_be():
    st = state()
    run(st, pay("p", C1, 30_000), fee("f", C1, 10_000))
    r = refusal(st, L.TransferSpec("r", L.POSTED, C1, REFUNDS, 25_000))
    assert (r.kind, r.reason, r.would_reach) == ("STATE", "EXCEEDS_CREDITS", -5_000)
    assert "would reach a balance of -5000 fen" in r.message
    # custody may not pay out more than it holds
    r = refusal(st, L.TransferSpec("b", L.POSTED, BANK, CUSTODY, 30_001))
    assert (r.reason, r.would_reach) == ("EXCEEDS_DEBITS", -1)


def test_a_refused_batch_changes_nothing_and_names_every_refusal():
    st = state()
    run(st, pay("p", C1, 10_000))
    with pytest.raises(L.Refused) as caught:
        L.plan(st, [L.TransferSpec("ok", L.POSTED, C1, REFUNDS, 1_000),
                    L.TransferSpec("ghost", L.POSTED, L.contract(LEDGER, "X"), REFUNDS, 1),
                    L.TransferSpec("big", L.POSTED, C1, REFUNDS, 10_000)], NOW, "t",
               advance=True)
    assert [(r.index, r.reason) for r in caught.value.refusals] == [
        (1, "ACCOUNT_NOT_FOUND"), (2, "EXCEEDS_CREDITS")]
    assert balance(st, C1) == L.Balance(c=10_000) and st.head == 1


def test_the_same_id_again_is_the_stored_transfer_other_content_is_refused():
    st = state()
    docs, _ = run(st, pay("p", C1, 10_000))
    st.existing[docs[0]["_id"]] = docs[0]["digest"]
    again, answers = run(st, pay("p", C1, 10_000))
    assert again == [] and answers == [f"{LEDGER}/p"]
    r = refusal(st, pay("p", C1, 10_001))
    assert (r.kind, r.reason) == ("EXISTS", "TRANSFER_EXISTS_WITH_DIFFERENT_CONTENT")
    # within one batch too
    r = refusal(state(), pay("q", C1, 1), pay("q", C1, 2))
    assert r.index == 1 and r.kind == "EXISTS"


def test_a_spec_read_back_from_the_database_has_the_same_digest():
    spec = fee("f", C1, 100, timeout_at=datetime(2026, 6, 1, tzinfo=rules.SHANGHAI))
    stored = L.TransferSpec.of({**spec.as_dict(),
                                "timeout_at": spec.timeout_at.astimezone(timezone.utc)})
    assert stored.digest() == spec.digest()


def test_each_entry_records_when_it_took_effect_and_when_it_was_recorded():
    st = state()
    effective = NOW - timedelta(days=3)
    docs, _ = run(st, L.TransferSpec("p", L.POSTED, CUSTODY, C1, 1, effective_at=effective))
    assert (docs[0]["effective_at"], docs[0]["recorded_at"]) == (effective, NOW)


def test_replaying_the_journal_finds_every_kind_of_damage():
    st = state()
    docs, _ = run(st, pay("p", C1, 30_000), fee("f", C1, 10_000),
                  L.TransferSpec("post", L.POST_PENDING, pending_id="f"),
                  L.TransferSpec("r", L.POSTED, C1, REFUNDS, 5_000))
    kinds = {a: s.kind for a, s in st.accounts.items()}
    clean = L.conservation(L.recompute(docs, kinds), kinds)
    assert clean.conserved and (clean.custody, clean.owed, clean.pending) == (15_000, 15_000, 0)
    assert (clean.released, clean.refunded, clean.paid_out) == (10_000, 5_000, 15_000)
    # an entry edited in place no longer sums to zero, nor matches its stored balances
    tampered = [dict(d) for d in docs]
    tampered[0] = {**docs[0], "legs": [{**docs[0]["legs"][0], "d": 40_000}, docs[0]["legs"][1]]}
    found = L.conservation(L.recompute(tampered, kinds), kinds)
    assert not found.conserved
    assert any("does not" in p or "!=" in p for p in found.problems)
    # an entry missing from the journal
    assert any("sequence" in p for p in L.recompute(docs[:1] + docs[2:], kinds).problems)
    # money out of custody with nobody's claim behind it
    st2 = state()
    more, _ = run(st2, pay("p", C1, 30_000), L.TransferSpec("b", L.POSTED, BANK, CUSTODY, 1_000))
    breach = L.conservation(L.recompute(more, kinds), kinds)
    assert "custody 29000 fen != owed 30000 + pending 0 fen" in breach.problems
    # a cached balance that is not the sum of the entries before it
    cached = {C1: (1, {"c": 29_999})}
    assert any("cached balance" in p for p in L.recompute(docs, kinds, cached).problems)


def test_account_ids():
    assert L.kind_of_local("custody") == L.CUSTODY
    assert L.kind_of_local("contract/HT-2026.01") == L.CONTRACT
    assert L.kind_of_local("bank/ICBC") == L.BANK
    assert L.kind_of_local("wallet") is None and L.kind_of_local("contract/") is None
    assert L.local_id(C1) == "contract/HT-1"


# --- prepaid-fee rules ------------------------------------------------------------------------------
def charge(**overrides) -> dict:
    data = {"scheme_id": "s1", "contract_id": "HT-1", "trainee_id": "t1", "trainee_name": "张三",
            "signed_on": "2026-03-01", "class_hours": 60, "amount_fen": 600_000,
            "bank_reference": "B1", "paid_on": "2026-03-01", "classes_until": "2026-06-01"}
    data.update(overrides)
    return data


def parse(**overrides):
    return rules.parse_charge(charge(**overrides), date(2026, 3, 2), 60, 3, LEDGER)


def test_one_charge_covers_at_most_60_class_hours():
    assert parse().class_hours == 60
    with pytest.raises(InvalidArgument) as caught:
        parse(class_hours=61, amount_fen=610_000)
    assert caught.value.violations == [
        "class_hours: one charge covers 1-60 class hours (got 61)"]
    # configurable
    assert rules.parse_charge(charge(class_hours=80, amount_fen=800_000), date(2026, 3, 2),
                              80, 3, LEDGER).class_hours == 80


def test_one_charge_covers_at_most_3_months_of_classes():
    assert parse(classes_until="2026-06-01").classes_until == date(2026, 6, 1)
    with pytest.raises(InvalidArgument) as caught:
        parse(classes_until="2026-06-02")
    assert "at most 3 months of classes (until 2026-06-01" in caught.value.violations[0]
    assert rules.add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert rules.add_months(date(2027, 11, 30), 3) == date(2028, 2, 29)


def test_a_charge_outside_the_scheme():
    class Scheme:
        price_per_hour_fen, class_hours = 10_000, 100
        valid_from, valid_until = "2026-01-01", "2026-05-31"

    ok = parse(class_hours=10, amount_fen=100_000, classes_until="2026-05-31")
    assert rules.charge_outside_scheme(ok, Scheme, 0) == []
    bad = parse(class_hours=10, amount_fen=100_001)
    problems = rules.charge_outside_scheme(bad, Scheme, 95)
    assert problems == [
        "amount_fen: 100001 fen is not 10 class hours × 10000 fen = 100000 fen",
        "classes_until: after the scheme's validity ends (2026-05-31)",
        "class_hours: the course has 100 class hours; 95 are bought already"]


def test_money_is_positive_integer_fen():
    with pytest.raises(InvalidArgument) as caught:
        parse(amount_fen=-1)
    assert "amount_fen: must be a positive number of fen (got -1)" in caught.value.violations


TERMS = rules.RefundTerms(materials_fee_fen=5_000, handling_fee_bp=1_000,
                          handling_fee_cap_fen=8_000)


def test_the_whole_amount_when_no_lesson_was_taken_within_7_days_of_signing():
    signed = date(2026, 3, 1)
    for day in range(0, 8):
        q = rules.quote_refund(100_000, 0, 10_000, TERMS, signed, signed + timedelta(days=day),
                               100_000)
        assert (q.cooling_off, q.refund_fen, q.deductions_fen) == (True, 100_000, 0), day
    q = rules.quote_refund(100_000, 0, 10_000, TERMS, signed, signed + timedelta(days=8),
                           100_000)
    assert not q.cooling_off and q.refund_fen == 100_000 - 5_000 - 8_000
    # a lesson taken: the deductions apply even on day 1
    q = rules.quote_refund(100_000, 1, 10_000, TERMS, signed, signed + timedelta(days=1),
                           90_000)
    assert not q.cooling_off and q.refund_fen == 90_000 - 5_000 - 8_000
    # configurable
    assert rules.quote_refund(100_000, 0, 10_000, TERMS, signed, signed + timedelta(days=8),
                              100_000, cooling_off_days=14).cooling_off


def test_the_refund_line_by_line():
    q = rules.quote_refund(200_000, 4, 10_000, TERMS, date(2026, 3, 2), date(2026, 3, 20),
                           160_000)
    assert [(c, a) for c, _, a in q.lines] == [
        ("PAID", 200_000), ("CONSUMED", -40_000), ("MATERIALS_FEE", -5_000),
        ("HANDLING_FEE", -8_000), ("REMAINDER", 147_000)]
    assert sum(a for c, _, a in q.lines if c != "REMAINDER") == q.refund_fen
    # never below zero, never more than custody holds
    q = rules.quote_refund(10_000, 3, 10_000, TERMS, date(2026, 3, 2), date(2026, 3, 20), 0)
    assert q.refund_fen == 0
    q = rules.quote_refund(100_000, 0, 10_000, rules.RefundTerms(), date(2026, 3, 2),
                           date(2026, 3, 20), 60_000)
    assert q.refund_fen == 60_000 and q.lines[-2][0] == "CUSTODY_LIMIT"
    # integer arithmetic: 5 % of 33,333 fen is 1,666 fen, rounded down
    q = rules.quote_refund(33_333, 0, 10_000, rules.RefundTerms(handling_fee_bp=500),
                           date(2026, 1, 1), date(2026, 3, 1), 33_333)
    assert q.refund_fen == 33_333 - 1_666


def test_settings_default_to_the_rules_and_refuse_nonsense():
    assert load_settings({}) == EscrowSettings(60, 3, 7, 30)
    assert load_settings({"ESCROW_MAX_HOURS_PER_CHARGE": "40"}).max_hours_per_charge == 40
    with pytest.raises(SystemExit):
        load_settings({"ESCROW_MAX_HOURS_PER_CHARGE": "0"})


def test_personal_data_is_masked_and_yuan_is_exact():
    assert rules.mask_name("张三丰") == "张*丰" and rules.mask_name("李四") == "李*"
    assert rules.mask_phone("13812345678") == "138****5678"
    assert rules.yuan(5_734_000_000) == "57340000.00" and rules.yuan(5) == "0.05"
    assert rules.yuan(-150) == "-1.50"


def test_a_period_and_what_it_is_known_at():
    now = datetime(2026, 4, 2, 2, tzinfo=timezone.utc)
    over = rules.parse_period({"from": "2026-03-01", "to": "2026-03-31"}, now)
    assert over.final and over.as_of == datetime(2026, 4, 1, tzinfo=rules.SHANGHAI)
    running = rules.parse_period({"from": "2026-04-01", "to": "2026-04-30"}, now)
    assert not running.final and running.as_of == now
    given = rules.parse_period({"from": "2026-03-01", "to": "2026-03-31",
                                "as_of": "2026-03-15T12:00:00+08:00"}, now)
    assert given.final and given.as_of.isoformat() == "2026-03-15T12:00:00+08:00"
    for bad, text in [({"from": "2026-03-01"}, "to: required"),
                      ({"from": "2026-03-31", "to": "2026-03-01"}, "before from"),
                      ({"from": "2026-03-01", "to": "2026-03-31", "as_of": "2027-01-01T00:00Z"},
                       "future"),
                      ({"from": "2026-03-01", "to": "2026-03-31", "as_of": "2026-03-01T00:00"},
                       "offset")]:
        with pytest.raises(InvalidArgument) as caught:
            rules.parse_period(bad, now)
        assert any(text in v for v in caught.value.violations), (bad, caught.value.violations)


def test_filings_newest_status_wins_in_any_order():
    assert rules.status_update("InstitutionSuspended", 3, "b", (2, "a")) == "SUSPENDED"
    assert rules.status_update("InstitutionReinstated", 2, "c", (3, "b")) is None
    assert rules.fees_refusal("ACTIVE") is None
    assert rules.fees_refusal("SUSPENDED", "整改") == "the institution's filing is suspended: 整改"
    assert "not filed" in rules.fees_refusal(None)
